"""An artist's first hour with the pack, walked in the real page (issue 12), one screenshot per step kept in
out/test-artifacts/first_hour/ (or $ANIMEREWARD_TEST_ARTIFACTS/first_hour):

template browser (titles, thumbnails, "no model needed") → open the synthetic example (framed, with its note)
→ run it (tables on the nodes, no blank file entries in the queue) → switch tabs and back (tables kept) →
reload (tables kept) → a failed run (the failed node's table cleared) → a node's help page → the Wan
example without its files (the validation dialog names the missing reward weights folder beside the
missing core files, before anything runs).
Every wait is on a condition in the page, never a fixed sleep.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from animereward_testkit.browser import comfy_page
from animereward_testkit.comfy_paths import REPO_ROOT
from animereward_testkit.templates import TEMPLATE_TITLES

pytestmark = [pytest.mark.browser, pytest.mark.comfy]

SCORED = "['AnimeRewardScore', 'AnimeRewardBestOfN']"
TABLES = f"""() => window.app.graph._nodes.filter(n => {SCORED}.includes(n.type))
    .map(n => [n.type, n.animerewardScores ? n.animerewardScores.clips.length : 0])"""
BOTH_TABLES = f"""() => {{ const ns = window.app.graph._nodes.filter(n => {SCORED}.includes(n.type));
    return ns.length === 2 && ns.every(n => n.animerewardScores); }}"""
SAVED = """() => window.app.graph._nodes.filter(n => n.type.startsWith('Save'))
    .every(n => window.app.nodeOutputs[String(n.id)]?.images?.length)"""
# every node lies inside the canvas the user sees (the page fitted the view when the example opened)
FRAMED = """() => { const c = window.app.canvas, r = c.canvas.getBoundingClientRect(), ns = window.app.graph._nodes;
    if (!ns.length) return false;
    return ns.every(n => { const [x0, y0] = c.ds.convertOffsetToCanvas([n.pos[0], n.pos[1] - 30]);
        const [x1, y1] = c.ds.convertOffsetToCanvas([n.pos[0] + n.size[0], n.pos[1] + n.size[1]]);
        return x0 >= 0 && y0 >= 0 && x1 <= r.width && y1 <= r.height; }); }"""


@pytest.fixture(scope="module")
def shots():
    folder = Path(os.environ.get("ANIMEREWARD_TEST_ARTIFACTS", REPO_ROOT / "out" / "test-artifacts")) / "first_hour"
    folder.mkdir(parents=True, exist_ok=True)
    for old in folder.glob("*.png"):
        old.unlink()
    return folder


def _shot(pg, folder: Path, name: str) -> None:
    # two animation frames: the canvas has drawn the state the test just waited for
    pg.evaluate("() => new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)))")
    path = folder / f"{name}.png"
    pg.screenshot(path=str(path))
    assert path.stat().st_size > 10_000


def _open_template(pg, title: str) -> None:
    pg.locator("nav, aside, .side-tool-bar-container").get_by_text("Templates", exact=True).first.click()
    pg.get_by_text("ComfyUI-AnimeReward", exact=True).first.click()
    pg.locator("[role=dialog]").get_by_text(title, exact=True).first.click()
    pg.wait_for_function("t => window.app.extensionManager.workflow.activeWorkflow?.filename === t", arg=title)


def test_the_first_hour(comfy_server, shots):
    with comfy_page(comfy_server.url) as (pg, errors):
        # 1. The template browser: every example with its title, description and a real thumbnail.
        pg.locator("nav, aside, .side-tool-bar-container").get_by_text("Templates", exact=True).first.click()
        pg.get_by_text("ComfyUI-AnimeReward", exact=True).first.click()
        dialog = pg.locator("[role=dialog]")
        for title in TEMPLATE_TITLES.values():
            dialog.get_by_text(title, exact=True).first.wait_for()
        pg.wait_for_function("n => [...document.querySelectorAll('[role=dialog] img')]"
                             ".filter(i => i.complete && i.naturalWidth >= 256).length >= n",
                             arg=len(TEMPLATE_TITLES))
        assert "no model needed" in dialog.inner_text()
        _shot(pg, shots, "01_template_browser")

        # 2. The synthetic example opens framed, with its note.
        title = TEMPLATE_TITLES["synthetic_best_of_n"]
        dialog.get_by_text(title, exact=True).first.click()
        pg.wait_for_function("t => window.app.extensionManager.workflow.activeWorkflow?.filename === t", arg=title)
        pg.wait_for_function(FRAMED)
        note = pg.evaluate("() => window.app.graph._nodes.find(n => n.type === 'MarkdownNote')?.widgets[0].value")
        assert "no model needed" in note and "Run" in note
        _shot(pg, shots, "02_example_opened_framed")

        # 3. Run it from the Run button: both nodes draw their tables, without the five "not loaded" models.
        pg.get_by_role("button", name="Run", exact=True).first.click()
        pg.wait_for_function(BOTH_TABLES, timeout=180_000)
        best = pg.evaluate("() => window.app.graph._nodes.find(n => n.type === 'AnimeRewardBestOfN').animerewardScores")
        assert best["order"][0] == 2 and best["skipped"] == []
        pg.wait_for_function(SAVED, timeout=180_000)  # the job is over: every save node shows its file
        _shot(pg, shots, "03_scores_after_run")
        # the queue lists the job's files only: no blank "animereward" entries
        pg.locator("nav, aside, .side-tool-bar-container").get_by_text("Queue", exact=True).first.click()
        pg.wait_for_function("() => [...document.querySelectorAll('img')].some(i => i.src.includes('/view?') "
                             "&& i.closest('.p-scrollpanel, .sidebar-content-container, [class*=sidebar]'))",
                             timeout=30_000)
        assert pg.locator(".pi-file").count() == 0
        assert pg.get_by_text("animereward", exact=True).count() == 0
        _shot(pg, shots, "04_queue_without_ghost_entries")
        pg.locator("nav, aside, .side-tool-bar-container").get_by_text("Queue", exact=True).first.click()

        # 4. Another tab and back: the tables come back with the graph.
        pg.evaluate("window.app.extensionManager.command.execute('Comfy.NewBlankWorkflow')")
        pg.wait_for_function("t => window.app.extensionManager.workflow.activeWorkflow?.filename !== t", arg=title)
        assert pg.evaluate(TABLES) == []
        _shot(pg, shots, "05_other_tab")
        pg.locator(".workflow-tabs, .workflow-tabs-container, [class*=workflow-tab]").get_by_text(
            title, exact=True).first.click()
        pg.wait_for_function(BOTH_TABLES)
        _shot(pg, shots, "06_back_to_the_tab_tables_kept")

        # 5. Reload: the tables are still there.
        pg.reload()
        pg.wait_for_function("window.app && window.app.graph && window.LiteGraph", timeout=90_000)
        pg.wait_for_function(BOTH_TABLES, timeout=30_000)
        _shot(pg, shots, "07_after_reload_tables_kept")

        # 6. A run where Best-of-N fails (one candidate): its old table goes, the error names the input.
        pg.evaluate("""() => { const n = window.app.graph._nodes.find(n => n.type === 'AnimeRewardSyntheticClips');
            n.widgets.find(w => w.name === 'defects').value = 'clean'; }""")
        pg.get_by_role("button", name="Run", exact=True).first.click()
        pg.get_by_text("best-of-N needs 2 or more").first.wait_for(timeout=60_000)
        pg.wait_for_function("""() => !window.app.graph._nodes.find(n => n.type === 'AnimeRewardBestOfN')
            .animerewardScores""")
        _shot(pg, shots, "08_failed_run_table_cleared")
        pg.keyboard.press("Escape")

        # 7. A node's help: the page loads web/docs/AnimeRewardBestOfN.md from the pack.
        pg.evaluate("""() => { const n = window.app.graph._nodes.find(n => n.type === 'AnimeRewardBestOfN');
            window.app.canvas.deselectAll(); window.app.canvas.selectNode(n); window.app.canvas.setDirty(true, true); }""")
        pg.locator("[data-testid=info-button]").first.click()
        pg.get_by_text("Scores N generated candidates").first.wait_for(timeout=30_000)
        pg.get_by_text("frames_per_clip").first.wait_for()
        _shot(pg, shots, "09_node_help_page")

        # 8. The Wan example on a machine without its files: the dialog lists them all before the run,
        # the AnimeReward weights folder included.
        _open_template(pg, TEMPLATE_TITLES["wan_i2v_best_of_n"])
        pg.wait_for_function(FRAMED)
        pg.get_by_role("button", name="Run", exact=True).first.click()
        pg.get_by_text("AnimeReward Loader").last.wait_for(timeout=30_000)
        page_text = pg.locator("body").inner_text()
        assert "wan2.1_i2v_480p_14B_fp16.safetensors" in page_text and "'anisora'" in page_text
        _shot(pg, shots, "10_wan_without_files_validation")
        # the refused prompt is logged by the page (PromptExecutionError, through our queue wrapper): expected
        assert not [e for e in errors if "animereward" in e.lower() and "PromptExecutionError" not in e]
