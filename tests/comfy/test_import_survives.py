"""A real ComfyUI server started over a models/animereward full of malformed files still imports the pack,
lists the healthy folders (and the broken ones, which name their broken file when used), and keeps serving.

Malformed files of every kind the layout and the loaders read (shard index, configs, tokenizer files,
safetensors and .pth checkpoints): animereward_testkit.hostile_folders. Its own server and base directory,
since the point is what happens at start-up.
"""

from __future__ import annotations

import json
import shutil

import pytest
from animereward_testkit import comfy_paths, hostile_folders
from animereward_testkit.reward_workflows import capture, loader, score, synthetic
from animereward_testkit.server import ComfyServer

pytestmark = pytest.mark.comfy


def _loader_options(server: ComfyServer) -> list[str]:
    status, info = server.request("GET", "/object_info/AnimeRewardLoader")
    assert status == 200, info
    spec = info["AnimeRewardLoader"]["input"]["required"]["weights"]
    return spec[1]["options"] if spec[0] == "COMBO" else spec[0]


@pytest.fixture(scope="module")
def hostile_server(comfy_dir, tmp_path_factory):
    base = comfy_paths.make_base_dir(tmp_path_factory.mktemp("hostile_base"))
    hostile_folders.plant(base / "models" / "animereward")
    server = ComfyServer(comfy_dir, base, base / "server.log")
    try:
        yield server.start()
    finally:
        server.stop()


def test_the_pack_imports_and_lists_every_folder_but_system_links(hostile_server):
    log = hostile_server.log_tail(200_000)
    pack = [line for line in log.splitlines() if "ComfyUI-AnimeReward" in line]
    assert pack and not any("IMPORT FAILED" in line or "Cannot import" in line for line in pack), pack
    options = _loader_options(hostile_server)
    assert "healthy" in options and all(c.folder in options for c in hostile_folders.CASES)
    assert "link_to_root" not in options and "link_to_etc" not in options


def test_a_folder_broken_while_the_server_runs_breaks_nothing(hostile_server):
    models = hostile_server.base_dir / "models" / "animereward"
    late = models / "late_broken_index"
    shutil.copytree(models / "healthy", late)
    index = late / "weights" / "mantis-8b-idefics2-video-eval-24frame-quality_4096_regression" / \
        "checkpoint-final" / "model.safetensors.index.json"
    index.write_text(json.dumps({"weight_map": ["not", "a", "map"]}))
    assert "late_broken_index" in _loader_options(hostile_server)
    status, body = hostile_server.queue(_graph("late_broken_index"))
    assert status == 200, body  # validation passes; the Loader names the file when it runs
    entry = hostile_server.wait(body["prompt_id"])
    err = next(d for e, d in entry["status"]["messages"] if e == "execution_error")
    assert err["node_type"] == "AnimeRewardLoader"
    assert "model.safetensors.index.json" in err["exception_message"]
    assert "'weight_map' is a list" in err["exception_message"]


def _graph(folder: str, dimension: str = "visual_appeal") -> dict:
    return {"1": synthetic("clean", frames=9, width=64, height=48),
            "10": loader(folder, enabled=(dimension, "flow_smoothness"), skip_missing=False),
            "2": score(frames=["1", 0], prompt="a girl waves"), "c": capture(float=["2", 0])}


@pytest.mark.parametrize("case", list(hostile_folders.CASES), ids=[c.folder for c in hostile_folders.CASES])
def test_each_broken_file_is_named_when_its_folder_is_used(hostile_server, case):
    status, body = hostile_server.queue(_graph(case.folder, case.dimension))
    assert status == 200, body
    entry = hostile_server.wait(body["prompt_id"])
    assert entry["status"]["status_str"] == "error"
    err = next(d for e, d in entry["status"]["messages"] if e == "execution_error")
    for needle in case.needles:
        assert needle in err["exception_message"], err["exception_message"]


def test_the_healthy_folder_scores_after_all_of_that(hostile_server):
    entry = hostile_server.run(_graph("healthy"))
    assert entry["status"]["status_str"] == "success"
    assert 0.0 <= entry["outputs"]["c"]["captured"][0]["float"] <= 1.0
