"""A clip without a character, in the real page: the Score node's table shows character consistency as "n/a"
with the reason as a note, and the total over the other dimensions; the canvas draws it without an error.

The character folder (small random models of the real classes, a detector that detects nothing) is written by
the test into the live server's models folder; the graph is queued from the page as the Queue button does.
A screenshot is kept in out/test-artifacts/ (or $ANIMEREWARD_TEST_ARTIFACTS).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from animereward_testkit.browser import comfy_page
from animereward_testkit.character_weights import write_character_root
from animereward_testkit.comfy_paths import REPO_ROOT
from animereward_testkit.reward_workflows import loader, score, synthetic

pytestmark = [pytest.mark.browser, pytest.mark.comfy]

C = "character_consistency"


def test_no_character_shows_na_and_the_reason(comfy_server) -> None:
    folder = comfy_server.base_dir / "models" / "animereward" / "characters_blank_page"
    if not folder.exists():
        write_character_root(folder, blank=True)
    graph = {"1": synthetic("clean", frames=8, width=96, height=64, seed=7),
             "10": loader(folder.name, enabled=(C, "flow_motion"), skip_missing=False),
             "2": score(frames=["1", 0])}
    with comfy_page(comfy_server.url) as (pg, errors):
        pg.evaluate("wf => window.app.loadApiJson(wf, 'character')", graph)
        pg.wait_for_function("() => window.app.graph._nodes.some(n => n.type === 'AnimeRewardScore')",
                             timeout=30_000)
        pg.evaluate("window.app.queuePrompt(0, 1)")
        pg.wait_for_function("""() => window.app.graph._nodes
            .find(n => n.type === 'AnimeRewardScore').animerewardScores""", timeout=180_000)
        table = pg.evaluate("""async () => {
            const mod = await import('/extensions/ComfyUI-AnimeReward/js/animereward.js');
            const node = window.app.graph._nodes.find(n => n.type === 'AnimeRewardScore');
            window.app.canvas.draw(true, true);  // the table widget draws "n/a" rows
            return {rows: mod.rowsOf(node.animerewardScores), notes: mod.notesOf(node.animerewardScores)};
        }""")
        rows = {r["label"]: r["value"] for r in table["rows"]}
        assert rows["character"] is None and isinstance(rows["total"], float)
        assert rows["total"] == pytest.approx(rows["flow-motion"])
        assert any(n.startswith("character: no score (no character detected") for n in table["notes"])
        shots = Path(os.environ.get("ANIMEREWARD_TEST_ARTIFACTS", REPO_ROOT / "out" / "test-artifacts"))
        shots.mkdir(parents=True, exist_ok=True)
        pg.screenshot(path=str(shots / "character_no_score_table.png"))
        assert not [e for e in errors if "animereward" in e.lower() or "toFixed" in e]
