"""The Loader's batch_size reaches the library's chunking, and scores do not depend on it."""

from __future__ import annotations

import importlib
import json
import sys

import pytest
from animereward_testkit.graph import Graph
from animereward_testkit.reward_workflows import best_of_n, capture, captured, loader, synthetic

pytestmark = pytest.mark.comfy


def _pack_module(suffix: str):
    """The pack's own copy of a module, as ComfyUI imports it (not the tests' `animereward`): the pack is a
    package named after its folder's path; its library modules are imported when a node first runs."""
    packs = [n[: -len(".nodes.loader_node")] for n in sys.modules
             if n.endswith("ComfyUI-AnimeReward.nodes.loader_node")]
    assert len(packs) == 1, packs
    return importlib.import_module(packs[0] + suffix)


def _run(comfy, batch_size: int | None) -> dict:
    g = Graph()
    clips = g.add(**synthetic("flicker, clean, jitter, freeze", frames=9, width=96, height=64))
    spec = loader()
    if batch_size is not None:
        spec["inputs"]["batch_size"] = batch_size
    reward = g.add(**spec)
    best = g.add(**best_of_n(clips["images"], clips["frames_per_clip"], reward=reward["reward"]))
    c = g.add(**capture(string=best["scores_json"]))
    return json.loads(captured(comfy.run(g.prompt()), c)["string"])


def test_batch_size_sets_the_chunks_and_leaves_the_scores(comfy, monkeypatch):
    reward_module = _pack_module(".animereward.reward")
    seen: list[int] = []
    real = reward_module.run_chunks

    def spy(*args, **kwargs):
        seen.append(kwargs["batch_size"])
        return real(*args, **kwargs)

    monkeypatch.setattr(reward_module, "run_chunks", spy)
    default = _run(comfy, None)  # an API prompt without the input: the default
    one = _run(comfy, 1)
    three = _run(comfy, 3)
    assert seen == [_pack_module(".animereward.scorer_protocol").DEFAULT_BATCH_SIZE, 1, 3]
    assert default["order"] == one["order"] == three["order"]
    for a, b in ((default, one), (default, three)):
        for x, y in zip(a["clips"], b["clips"], strict=True):
            assert x["scores"] == pytest.approx(y["scores"], abs=1e-6)


def test_loader_offers_batch_size_with_the_library_default(comfy):
    info = comfy.node_classes["AnimeRewardLoader"].INPUT_TYPES()
    spec = info["optional"]["batch_size"]
    assert spec[0] == "INT" and spec[1]["default"] == 8 and spec[1]["min"] == 1 and "tooltip" in spec[1]


def test_working_memory_asked_follows_the_chunk(comfy):
    """Model management is asked for memory from the chunk's shape (the hook's BatchShape), not a constant."""
    import torch

    handle = _pack_module(".nodes.reward_handle")
    shape = _pack_module(".animereward.hooks").BatchShape
    one, eight = shape(1, 24, 480, 832), shape(8, 24, 480, 832)
    fp32 = [handle.activation_bytes(s, torch.float32) for s in (one, eight)]
    assert fp32[1] > fp32[0] > 0
    assert fp32[1] - fp32[0] == 7 * 24 * handle.ACTIVATION_BYTES_PER_FRAME  # linear in the frames read
    assert handle.activation_bytes(eight, torch.bfloat16) < fp32[1]
