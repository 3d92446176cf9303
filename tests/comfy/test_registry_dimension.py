"""A dimension registered in a test reaches every layer: the loader's inputs, the weights node, the Score
node's outputs, the scores JSON and the page's score table (whose labels come from the server).

The dimension is registered inside a ComfyUI server of its own by a test-only custom-node folder
(animereward_testkit/dummy_dimension_node), which touches nothing but the registry: no other line of the pack
names it.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from animereward_testkit import comfy_paths
from animereward_testkit.dummy_dimension import DEFAULT_WEIGHT, DIMENSION, SHORT_LABEL
from animereward_testkit.reward_workflows import FLOW_DIMS, WEIGHTED_DIMS, capture, score, synthetic
from animereward_testkit.server import ComfyServer

from animereward import dimensions as registry

pytestmark = pytest.mark.comfy

NODE_DIR = Path(comfy_paths.__file__).resolve().parent / "dummy_dimension_node"
# Score outputs in registry order, except dimensions added after workflows were saved (after json)
APPENDED = tuple(d for d in (*WEIGHTED_DIMS, *FLOW_DIMS) if registry.DIMENSIONS[d].appended)
LEADING = tuple(d for d in (*WEIGHTED_DIMS, *FLOW_DIMS) if d not in APPENDED)


@pytest.fixture(scope="module")
def server(comfy_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ComfyServer]:
    base = comfy_paths.make_base_dir(tmp_path_factory.mktemp("comfy_registry"))
    (base / "custom_nodes" / "animereward_dummy_dimension").symlink_to(NODE_DIR, target_is_directory=True)
    srv = ComfyServer(comfy_dir, base, base / "server.log")
    try:
        yield srv.start()
    finally:
        srv.stop()


def _graph(seed: int = 0) -> dict:
    """Numeric node ids, as the page gives them (the score table finds its node by execution id). Another
    seed for each run: the server would serve an identical prompt from its cache, sending no scores."""
    enabled = {d: d in FLOW_DIMS for d in (*WEIGHTED_DIMS, *FLOW_DIMS)} | {DIMENSION: True}
    return {
        "1": synthetic("clean", frames=9, seed=seed),
        "10": {"class_type": "AnimeRewardLoader",
               "inputs": {"weights": "none (flow metrics only)", "skip_missing": True, "dtype": "fp32",
                          "quantization": "none", **enabled}},
        "11": {"class_type": "AnimeRewardWeights",
              "inputs": {d: 1.0 for d in (*WEIGHTED_DIMS, *FLOW_DIMS)} | {DIMENSION: DEFAULT_WEIGHT}},
        "2": score(frames=["1", 0], weights=["11", 0]),
        # outputs: total, one float per offered dimension (the dummy last), json, then the appended dimensions
        "3": capture(float=["2", 1 + len(LEADING)], string=["2", 2 + len(LEADING)]),
    }


def test_registered_dimension_reaches_nodes_json(server: ComfyServer) -> None:
    info = server.get("/object_info")
    loader = info["AnimeRewardLoader"]["input"]["required"]
    assert loader[DIMENSION][0] == "BOOLEAN" and "Dummy brightness" in loader[DIMENSION][1]["tooltip"]
    weights = info["AnimeRewardWeights"]["input"]["required"]
    assert weights[DIMENSION][1]["default"] == DEFAULT_WEIGHT
    names = info["AnimeRewardScore"]["output_name"]
    assert names[names.index("json") - 1] == DIMENSION and names[names.index("json") + 1:] == list(APPENDED)

    entry = server.run(_graph())
    got = entry["outputs"]["3"]["captured"][0]
    data = json.loads(got["string"])
    assert set(data["scores"]) == {*FLOW_DIMS, DIMENSION}
    assert data["scores"][DIMENSION] == pytest.approx(got["float"]) and 0.0 < got["float"] < 1.0
    assert data["weights"][DIMENSION] == pytest.approx(DEFAULT_WEIGHT / (DEFAULT_WEIGHT + len(FLOW_DIMS)))


@pytest.mark.browser
def test_page_shows_the_label_the_server_sends(server: ComfyServer) -> None:
    from animereward_testkit.browser import comfy_page

    with comfy_page(server.url) as (pg, errors):
        pg.evaluate("wf => window.app.loadApiJson ? window.app.loadApiJson(wf, 'registry') : null", _graph(seed=1))
        pg.wait_for_function("() => window.app.graph._nodes.some(n => n.type === 'AnimeRewardScore')",
                             timeout=30_000)
        time.sleep(1)  # let the page settle the new workflow tab before queueing from it
        pg.evaluate("window.app.queuePrompt(0, 1)")
        pg.wait_for_function("""() => window.app.graph._nodes
            .find(n => n.type === 'AnimeRewardScore').animerewardScores""", timeout=180_000)
        rows = pg.evaluate("""async () => {
            const mod = await import('/extensions/ComfyUI-AnimeReward/js/animereward.js');
            const node = window.app.graph._nodes.find(n => n.type === 'AnimeRewardScore');
            return mod.rowsOf(node.animerewardScores).map(r => r.label);
        }""")
        assert SHORT_LABEL in rows and "total" in rows
        assert not [e for e in errors if "animereward" in e.lower()]
