"""The example workflows in the real ComfyUI page (headless Chromium): they load with every node known, and
the runnable ones queue from the page and draw their scores on the nodes."""

from __future__ import annotations

import json
import time

import pytest
from animereward_testkit.browser import comfy_page
from animereward_testkit.comfy_paths import REPO_ROOT
from animereward_testkit.templates import TEMPLATE_DIR, TEMPLATE_TITLES

pytestmark = [pytest.mark.browser, pytest.mark.comfy]

UI_WORKFLOWS = sorted((REPO_ROOT / "workflows" / "ui").glob("*.json"))


@pytest.fixture(scope="module")
def page(comfy_server):
    with comfy_page(comfy_server.url) as (pg, errors):
        yield pg, errors


def _load(pg, path):
    pg.evaluate("wf => window.app.loadGraphData(wf)", json.loads(path.read_text()))
    time.sleep(0.5)


def test_every_example_has_a_ui_and_an_api_twin():
    names = {p.stem for p in UI_WORKFLOWS}
    apis = {p.stem for p in (REPO_ROOT / "workflows" / "api").glob("*.json")}
    assert names == apis and len(names) >= 3
    # each template is its UI twin under its title, with a thumbnail
    titles = {v: k for k, v in TEMPLATE_TITLES.items()}
    templates = sorted(TEMPLATE_DIR.glob("*.json"))
    assert {p.stem for p in templates} == set(titles)
    for p in templates:
        assert (REPO_ROOT / "workflows" / "ui" / f"{titles[p.stem]}.json").read_text() == p.read_text()
        assert p.with_suffix(".jpg").stat().st_size > 5_000
    # ComfyUI lists */workflows/*.json as templates too: the twins live one level down so only
    # example_workflows/ shows in the template browser
    assert not list((REPO_ROOT / "workflows").glob("*.json"))


@pytest.mark.parametrize("path", UI_WORKFLOWS, ids=lambda p: p.name)
def test_ui_workflow_loads_with_every_node_known(page, path):
    pg, errors = page
    errors.clear()
    _load(pg, path)
    unknown = pg.evaluate("""() => window.app.graph._nodes
        .filter(n => !window.LiteGraph.registered_node_types[n.type]).map(n => n.type)""")
    assert unknown == []
    count = pg.evaluate("window.app.graph._nodes.length")
    assert count == len(json.loads(path.read_text())["nodes"])
    # the frontend reports schema problems and missing node types in dialogs over the canvas
    assert pg.locator("text=/Invalid workflow/i").count() == 0
    assert pg.locator("text=/missing node types|nodes are missing/i").count() == 0
    assert not [e for e in errors if "AnimeReward" in e or "animereward" in e]


def test_example_queues_from_the_page_and_the_nodes_show_scores(page, comfy_server):
    pg, errors = page
    _load(pg, REPO_ROOT / "workflows" / "ui" / "synthetic_best_of_n.json")
    # the page turns the graph into a prompt and POSTs it, as the Queue button does
    pg.evaluate("window.app.queuePrompt(0, 1)")
    pg.wait_for_function("""() => window.app.graph._nodes
        .filter(n => n.type === 'AnimeRewardBestOfN' || n.type === 'AnimeRewardScore')
        .every(n => n.animerewardScores)""", timeout=180_000)
    best = pg.evaluate("""() => window.app.graph._nodes.find(n => n.type === 'AnimeRewardBestOfN')
        .animerewardScores""")
    assert best["order"][0] == 2 and len(best["clips"]) == 4  # candidate 2 is the clean one
    score = pg.evaluate("""() => window.app.graph._nodes.find(n => n.type === 'AnimeRewardScore')
        .animerewardScores""")
    assert set(score["clips"][0]["scores"]) == {"flow_smoothness", "flow_motion"}
    # the score table is a canvas widget that the node's layout makes room for
    heights = pg.evaluate("""() => window.app.graph._nodes
        .filter(n => n.type === 'AnimeRewardBestOfN' || n.type === 'AnimeRewardScore')
        .map(n => n.widgets.find(w => w.name === 'animereward_scores').computeSize(n.size[0])[1])""")
    assert heights and all(h >= 3 * 16 for h in heights)
    assert pg.locator("text=/Invalid workflow/i").count() == 0
    shot = comfy_server.base_dir / "page_after_run.png"
    pg.screenshot(path=str(shot))
    assert shot.stat().st_size > 10_000
    assert not [e for e in errors if "animereward" in e.lower()]
