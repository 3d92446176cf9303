"""The ranking panel in the real ComfyUI page (headless Chromium): open the sidebar tab, rank seeded groups
with the keyboard, by clicking and by dragging, skip one, clear a saved ranking and a skip; the rankings are
read back from disk. A screenshot of the panel is kept in out/test-artifacts/ (or $ANIMEREWARD_TEST_ARTIFACTS)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from animereward_testkit.browser import comfy_page
from animereward_testkit.collect_workflows import datasets_root, seed_group
from animereward_testkit.comfy_paths import REPO_ROOT

from gapo_trainer.store import PreferenceStore

pytestmark = [pytest.mark.browser, pytest.mark.comfy]

PANEL = ".animereward-ranking-panel"


def _artifacts() -> Path:
    path = Path(os.environ.get("ANIMEREWARD_TEST_ARTIFACTS", REPO_ROOT / "out" / "test-artifacts"))
    path.mkdir(parents=True, exist_ok=True)
    return path


def _open_panel(pg, dataset: str, cards: int) -> None:
    pg.locator('.side-bar-button[aria-label="AnimeReward ranking"]').first.click()
    pg.wait_for_selector(f"{PANEL} select option[value='{dataset}']", state="attached", timeout=30_000)
    pg.select_option(f"{PANEL} select", dataset)
    pg.wait_for_function(f"""() => document.querySelectorAll('{PANEL} .ar-card img').length === {cards}
        && [...document.querySelectorAll('{PANEL} .ar-card img')].every(i => i.complete && i.naturalWidth > 0)""",
                         timeout=30_000)
    pg.focus(PANEL)


def _status(pg) -> str:
    return pg.locator(f"{PANEL} .ar-status").inner_text()


def _wait_status(pg, *parts: str) -> None:
    cond = " && ".join(f"t.includes({p!r})" for p in parts)
    pg.wait_for_function(f"() => {{ const t = document.querySelector('{PANEL} .ar-status').textContent; "
                         f"return {cond}; }}", timeout=15_000)


def test_rank_with_keyboard_clicks_drag_and_skip(comfy_server, comfy_base_dir):
    store = PreferenceStore(datasets_root(comfy_base_dir))
    a = seed_group(store, "panel", [0.3, 0.8, 0.5], prompt="a girl with a red ribbon waves")
    b = seed_group(store, "panel", [0.6, 0.4, 0.2], prompt="a boy runs through the rain")
    c = seed_group(store, "panel", [0.5, 0.5], prompt="a cat sleeps")
    with comfy_page(comfy_server.url) as (pg, errors):
        _open_panel(pg, "panel", 3)
        assert "group 1 of 3" in pg.locator(f"{PANEL} .ar-pos").inner_text()
        assert "reward 0.800" in pg.locator(f"{PANEL} .ar-card").nth(1).inner_text()
        # group A with the keyboard: 3 then 1 (the last one places itself), Enter saves
        pg.keyboard.press("3")
        pg.keyboard.press("1")
        assert pg.locator(f"{PANEL} .ar-card .ar-rank").all_inner_texts() == ["#2", "#3", "#1"]
        pg.screenshot(path=str(_artifacts() / "ranking_panel.png"))
        pg.keyboard.press("Enter")
        _wait_status(pg, a.group_id, "saved")
        assert store.read_meta("panel", a.group_id).human_ranking == [2, 0, 1]
        # the saved group leaves the unranked list: B is shown now; rank it by clicks, then drag 3 to the front
        assert "group 1 of 2" in pg.locator(f"{PANEL} .ar-pos").inner_text()
        assert "boy runs" in pg.locator(f"{PANEL} .ar-prompt").inner_text()
        pg.locator(f"{PANEL} .ar-card").nth(1).click()
        pg.locator(f"{PANEL} .ar-card").nth(0).click()
        assert pg.locator(f"{PANEL} .ar-chip").all_inner_texts() == ["2", "1", "3"]
        pg.drag_and_drop(f"{PANEL} .ar-chip[data-candidate='2']", f"{PANEL} .ar-chip[data-candidate='1']")
        assert pg.locator(f"{PANEL} .ar-chip").all_inner_texts() == ["3", "2", "1"]
        assert _status(pg) == ""  # the last save's message goes once the next group is worked on
        pg.locator(f"{PANEL} button.ar-save").click()
        _wait_status(pg, b.group_id, "saved")
        assert store.read_meta("panel", b.group_id).human_ranking == [2, 1, 0]
        # C: Enter before ranking is refused with a message; S skips
        pg.focus(PANEL)
        pg.keyboard.press("Enter")
        assert "Rank all 2" in _status(pg)
        pg.keyboard.press("s")
        _wait_status(pg, c.group_id, "skipped")
        meta = store.read_meta("panel", c.group_id)
        assert meta.skipped and meta.human_ranking is None
        assert "Every group" in pg.locator(PANEL).inner_text()
        # arrows move between groups (all groups, ranked ones included)
        pg.locator(f"{PANEL} #ar-unranked").uncheck()
        pg.wait_for_function(f"() => document.querySelector('{PANEL} .ar-pos')?.textContent.includes('group 1 of 3')")
        pg.focus(PANEL)
        pg.keyboard.press("ArrowRight")
        assert "group 2 of 3" in pg.locator(f"{PANEL} .ar-pos").inner_text()
        assert "ranked 3 > 2 > 1" not in pg.locator(f"{PANEL} .ar-pos").inner_text()  # indices are 0-based
        assert "ranked 2 > 1 > 0" in pg.locator(f"{PANEL} .ar-pos").inner_text()
        pg.keyboard.press("ArrowLeft")
        assert "group 1 of 3" in pg.locator(f"{PANEL} .ar-pos").inner_text()
        pg.screenshot(path=str(_artifacts() / "ranking_panel_all.png"))
        assert not [e for e in errors if "animereward" in e.lower() or "ranking" in e.lower()]
    assert (_artifacts() / "ranking_panel.png").stat().st_size > 10_000


def _pos(pg) -> str:
    return pg.locator(f"{PANEL} .ar-pos").inner_text()


def _wait_pos(pg, text: str) -> None:
    pg.wait_for_function(f"() => document.querySelector('{PANEL} .ar-pos')?.textContent.includes({text!r})",
                         timeout=15_000)


def test_clear_forgets_a_saved_ranking_or_skip(comfy_server, comfy_base_dir):
    """A ranked group cleared with the button and a skipped one cleared with C are unranked again, in the page
    and on disk, and the "unranked only" list counts them as groups never ranked."""
    store = PreferenceStore(datasets_root(comfy_base_dir))
    a = seed_group(store, "panel_clear", [0.3, 0.8, 0.5], prompt="a girl jumps over a puddle")
    b = seed_group(store, "panel_clear", [0.6, 0.4, 0.2], prompt="a boy flies a kite")
    with comfy_page(comfy_server.url) as (pg, errors):
        _open_panel(pg, "panel_clear", 3)
        assert "C clear saved" in pg.locator(f"{PANEL} .ar-help").inner_text()
        assert pg.locator(f"{PANEL} button.ar-clear").count() == 0  # nothing saved: nothing to clear
        for key in ("3", "1", "Enter"):
            pg.keyboard.press(key)
        _wait_status(pg, a.group_id, "saved")
        assert store.read_meta("panel_clear", a.group_id).human_ranking == [2, 0, 1]
        # all groups: A shows its ranking and a Clear button; the button forgets it
        pg.locator(f"{PANEL} #ar-unranked").uncheck()
        _wait_pos(pg, "group 1 of 2")
        assert "ranked 2 > 0 > 1" in _pos(pg)
        clear = pg.locator(f"{PANEL} button.ar-clear")
        assert clear.get_attribute("title") == ("Forget the saved ranking or skip: the reward's order counts "
                                                "again (C)")
        clear.click()
        _wait_status(pg, a.group_id, "cleared the ranking 2 > 0 > 1", "reward's order counts again")
        assert _pos(pg).endswith("unranked") and "ranked 2" not in _pos(pg)
        assert pg.locator(f"{PANEL} button.ar-clear").count() == 0
        meta = PreferenceStore(datasets_root(comfy_base_dir)).read_meta("panel_clear", a.group_id)  # from disk
        assert meta.human_ranking is None and not meta.skipped and not meta.ranked
        # B: C on an unranked group says there is nothing to clear; S skips it, C clears the skip
        pg.focus(PANEL)
        pg.keyboard.press("ArrowRight")
        _wait_pos(pg, "group 2 of 2")
        pg.keyboard.press("c")
        _wait_status(pg, b.group_id, "no saved ranking or skip")
        pg.keyboard.press("s")
        _wait_status(pg, b.group_id, "skipped")
        assert _pos(pg).endswith("skipped") and pg.locator(f"{PANEL} button.ar-clear").count() == 1
        assert store.read_meta("panel_clear", b.group_id).skipped
        pg.keyboard.press("c")
        _wait_status(pg, b.group_id, "cleared the skip")
        assert _pos(pg).endswith("unranked") and pg.locator(f"{PANEL} button.ar-clear").count() == 0
        meta = store.read_meta("panel_clear", b.group_id)
        assert meta.human_ranking is None and not meta.skipped
        # unranked only: both groups are listed and counted again, as if never ranked
        pg.locator(f"{PANEL} #ar-unranked").check()
        _wait_pos(pg, "group 1 of 2")
        assert "girl jumps" in pg.locator(f"{PANEL} .ar-prompt").inner_text()
        pg.focus(PANEL)
        pg.keyboard.press("ArrowRight")
        _wait_pos(pg, "group 2 of 2")
        assert "boy flies" in pg.locator(f"{PANEL} .ar-prompt").inner_text()
        assert store.list_groups("panel_clear", unranked_only=True).total == 2
        assert not [e for e in errors if "animereward" in e.lower() or "ranking" in e.lower()]


def test_a_waiting_collect_opens_the_panel_on_its_group_and_goes_on_when_ranked(comfy_server, comfy_base_dir):
    """Queued from the page with wait_for_ranking: the panel opens on the new group, the artist ranks it with
    the keyboard, and the workflow finishes with that ranking (the route wakes the waiting node)."""
    from animereward_testkit.collect_workflows import cheap_group
    from animereward_testkit.reward_workflows import capture

    store = PreferenceStore(datasets_root(comfy_base_dir))
    wf = cheap_group("panel_wait", n=3, wait_for_ranking=True, timeout_seconds=120)
    wf["c"] = capture(string=["30", 1])
    with comfy_page(comfy_server.url) as (pg, errors):
        pg.evaluate("wf => window.app.loadApiJson(wf, 'wait.json')", wf)
        pg.evaluate("window.app.queuePrompt(0, 1)")
        pg.wait_for_selector(f"{PANEL} .ar-waiting", timeout=60_000)
        pg.wait_for_function(f"""() => document.querySelectorAll('{PANEL} .ar-card img').length === 3
            && [...document.querySelectorAll('{PANEL} .ar-card img')].every(i => i.complete && i.naturalWidth > 0)""",
                             timeout=30_000)
        (gid,) = [g.group_id for g in store.list_groups("panel_wait", unranked_only=True).groups]
        assert gid in pg.locator(f"{PANEL} .ar-waiting").inner_text()
        pg.focus(PANEL)
        for key in ("2", "3", "Enter"):
            pg.keyboard.press(key)
        _wait_status(pg, gid, "saved")
        def ours() -> list[dict]:
            return [e for e in comfy_server.get("/history").values()
                    if e["prompt"][2].get("30", {}).get("inputs", {}).get("dataset") == "panel_wait"
                    and e.get("status", {}).get("completed") is not None]

        for _ in range(120):
            if ours():
                break
            pg.wait_for_timeout(500)
        (entry,) = ours()
        assert entry["outputs"]["c"]["captured"][0]["string"] == "1,2,0"
        assert pg.locator(f"{PANEL} .ar-waiting").count() == 0
        assert not [e for e in errors if "animereward" in e.lower()]
    assert store.read_meta("panel_wait", gid).human_ranking == [1, 2, 0]
