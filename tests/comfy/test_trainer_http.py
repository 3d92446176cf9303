"""The GAPO LoRA Trainer through ComfyUI's real HTTP server: queue a training run, watch its progress
messages arrive on the websocket, press Cancel (POST /interrupt), and the server keeps answering; the run
left a resumable checkpoint."""

from __future__ import annotations

import asyncio
import json
import time
import uuid

import pytest
from animereward_testkit.collect_workflows import datasets_root
from animereward_testkit.tiny_models import TINY_WAN

pytestmark = pytest.mark.comfy

DATASET = "trainer_http"


def _seed_dataset(base) -> None:
    import torch

    from gapo_trainer.store import CandidateMeta, PreferenceStore

    store = PreferenceStore(datasets_root(base))
    if DATASET in store.datasets():
        return
    g = torch.Generator().manual_seed(0)
    store.add_group(DATASET, latents=torch.randn(3, 16, 3, 8, 8, generator=g),
                    positive=[[torch.randn(1, 8, 4096, generator=g) * 0.1, {}]], negative=[],
                    candidates=[CandidateMeta(index=i, total=t) for i, t in enumerate([0.9, 0.5, 0.1])],
                    previews=[], preview_ext="webp", model_name=TINY_WAN, model_hash=None)


def _workflow(lora_name: str) -> dict:
    return {
        "1": {"class_type": "UNETLoader", "inputs": {"unet_name": TINY_WAN, "weight_dtype": "default"}},
        "2": {"class_type": "AnimeRewardGAPOTrainer", "inputs": {
            "model": ["1", 0], "dataset": DATASET, "steps": 500, "learning_rate": 1e-3, "rank": 4, "alpha": 4.0,
            "beta": 0.0, "objective": "gapo", "gap_function": "pow2", "pair_mode": "all", "min_gap": 0.0,
            "pairs_per_step": 1, "gradient_accumulation": 1, "seed": 0, "gradient_checkpointing": False,
            "save_every": 0, "lora_name": lora_name, "resume": False}},
        "3": {"class_type": "PreviewAny", "inputs": {"source": ["2", 1]}},
    }


async def _watch_and_cancel(url: str, prompt: dict) -> list[tuple[str, dict]]:
    import aiohttp

    client_id = str(uuid.uuid4())
    seen: list[tuple[str, dict]] = []
    ws_url = f"{url.replace('http', 'ws')}/ws?clientId={client_id}"
    async with aiohttp.ClientSession() as session, session.ws_connect(ws_url) as ws:
        async with session.post(f"{url}/prompt", json={"prompt": prompt, "client_id": client_id}) as r:
            assert r.status == 200, await r.text()
            prompt_id = (await r.json())["prompt_id"]
        interrupted = False
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline:
            msg = await ws.receive(timeout=60)
            if msg.type != aiohttp.WSMsgType.TEXT:
                continue
            data = json.loads(msg.data)
            seen.append((data["type"], data.get("data", {})))
            steps = [d for t, d in seen if t == "animereward.training" and "metrics" in d]
            if len(steps) >= 2 and not interrupted:
                async with session.post(f"{url}/interrupt", json={}) as r:
                    assert r.status == 200
                interrupted = True
            if data["type"] in ("execution_interrupted", "execution_error", "execution_success") and \
                    data.get("data", {}).get("prompt_id") == prompt_id:
                break
    return seen


def test_training_over_http_progress_and_cancel(comfy_server, comfy_base_dir, tiny_models):
    _seed_dataset(comfy_base_dir)
    seen = asyncio.run(_watch_and_cancel(comfy_server.url, _workflow("tests/http_run")))
    kinds = [t for t, _ in seen]
    points = [d for t, d in seen if t == "animereward.training" and "metrics" in d]
    assert points and [p["step"] for p in points] == list(range(1, len(points) + 1))
    assert {"loss", "implicit_accuracy", "margin"} <= set(points[0]["metrics"]) and points[0]["total"] == 500
    assert all(p["node"] == "2" for p in points)
    assert "progress" in kinds  # ComfyUI's own progress bar, one update per step
    assert kinds[-1] == "execution_interrupted"
    assert len(points) < 500
    # the server keeps answering, and the cancelled run left a checkpoint to resume from
    assert comfy_server.get("/system_stats")["system"]
    ckpts = sorted((comfy_base_dir / "output" / "animereward_training" / "tests" / "http_run").glob("step-*"))
    assert ckpts and int(ckpts[-1].name.split("-")[1]) >= 2
    # and it trains again right after: a short run to the end
    wf = _workflow("tests/http_short")
    wf["2"]["inputs"]["steps"] = 2
    entry = comfy_server.run(wf)
    assert entry["status"]["status_str"] == "success"
