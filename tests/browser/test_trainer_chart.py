"""The live training chart in the real ComfyUI page (headless Chromium): the tiny training example queued
from the page draws points on the trainer node while it runs, fed by the server's progress messages."""

from __future__ import annotations

import json
import time

import pytest
from animereward_testkit.browser import comfy_page
from animereward_testkit.collect_workflows import datasets_root
from animereward_testkit.comfy_paths import REPO_ROOT
from animereward_testkit.tiny_models import TINY_WAN

pytestmark = [pytest.mark.browser, pytest.mark.comfy]

DATASET = "tiny_wan_rankings"  # the dataset the tiny example trains on
RUN = """() => {
  const n = window.app.graph._nodes.find((x) => x.type === "AnimeRewardGAPOTrainer");
  const r = n && n.animerewardRun;
  return r ? {points: r.points.map((p) => [p.step, p.loss, p.implicit_accuracy, p.margin]), total: r.total,
              done: r.done, lora: r.lora, widget: n.widgets.some((w) => w.name === "animereward_training_chart"),
              height: n.size[1]} : null;
}"""


def _seed(base) -> None:
    import torch

    from gapo_trainer.store import CandidateMeta, PreferenceStore

    store = PreferenceStore(datasets_root(base))
    if DATASET in store.datasets() and store.count(DATASET):
        return
    g = torch.Generator().manual_seed(1)
    store.add_group(DATASET, latents=torch.randn(3, 16, 3, 8, 8, generator=g),
                    positive=[[torch.randn(1, 8, 4096, generator=g) * 0.1, {}]], negative=[],
                    candidates=[CandidateMeta(index=i, total=t) for i, t in enumerate([0.8, 0.4, 0.2])],
                    previews=[], preview_ext="webp", model_name=TINY_WAN, model_hash=None)


def test_live_chart_shows_points_while_training(comfy_server, comfy_base_dir, tiny_models):
    _seed(comfy_base_dir)
    wf = json.loads((REPO_ROOT / "workflows" / "ui" / "tiny_wan_train_gapo_lora.json").read_text())
    trainer = next(n for n in wf["nodes"] if n["type"] == "AnimeRewardGAPOTrainer")
    trainer["widgets_values"][1] = 30  # steps: long enough to watch it grow
    trainer["widgets_values"][16] = "animereward_tiny/browser_chart"  # lora_name
    with comfy_page(comfy_server.url) as (pg, errors):
        pg.evaluate("wf => window.app.loadGraphData(wf)", wf)
        time.sleep(0.5)
        assert pg.evaluate(RUN) is None  # nothing before the run
        pg.evaluate("window.app.queuePrompt(0, 1)")
        first = None
        deadline = time.time() + 180
        while time.time() < deadline:
            run = pg.evaluate(RUN)
            if run and run["points"]:
                if first is None:
                    first = run
                elif len(run["points"]) >= len(first["points"]) + 2:
                    break
            time.sleep(0.2)
        else:
            pytest.fail(f"no live points on the trainer node; console errors: {errors[-5:]}")
        assert first["widget"] and first["total"] == 30 and not first["done"]  # drawn while it runs
        steps = [p[0] for p in run["points"]]
        assert steps == list(range(1, len(steps) + 1))
        assert all(isinstance(p[1], float) for p in run["points"])
        pg.screenshot(path=str(comfy_base_dir / "trainer_live_chart.png"))
        # Cancel from the page's API, and the page hears the run end
        pg.evaluate("fetch('/interrupt', {method: 'POST'})")
        deadline = time.time() + 120
        while time.time() < deadline and comfy_server.get("/queue")["queue_running"]:
            time.sleep(0.5)
        assert not comfy_server.get("/queue")["queue_running"]
        assert not [e for e in errors if "gapo_chart" in e or "AnimeReward" in e]
