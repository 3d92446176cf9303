"""The reward nodes through ComfyUI's real executor, with the weight-free flow metrics.

Graphs are built with `graph.Graph`: node ids are given out by the builder and outputs are named.
"""

from __future__ import annotations

import json

import pytest
from animereward_testkit.graph import Graph
from animereward_testkit.inprocess import WorkflowError
from animereward_testkit.reward_workflows import (
    FLOW_DIMS,
    best_of_n,
    capture,
    captured,
    example,
    example_node,
    loader,
    saved,
    score,
    synthetic,
)
from PIL import Image

pytestmark = pytest.mark.comfy


def _score_graph(**clip):
    g = Graph()
    clips = g.add(**synthetic("clean", **clip))
    reward = g.add(**loader())
    return g, clips, reward


def test_score_node_outputs_and_ui(comfy):
    g, clips, reward = _score_graph()
    s = g.add(**score(frames=clips["images"], reward=reward["reward"]))
    total = g.add(**capture(float=s["total"], string=s["json"]))
    flow = g.add(**capture(float=s["flow_smoothness"]))
    unscored = g.add(**capture(float=s["visual_smoothness"]))  # not loaded: blocks this node, with a message
    with pytest.raises(WorkflowError, match="blocked") as err:
        comfy.run(g.prompt())
    assert "'visual_smoothness'" in str(err.value) and "not found" in str(err.value) and "Fix:" in str(err.value)
    g.remove(unscored)
    out = comfy.run(g.prompt())
    data = json.loads(captured(out, total)["string"])
    assert set(data["scores"]) == set(FLOW_DIMS)
    assert 0.0 <= captured(out, total)["float"] <= 1.0
    assert captured(out, total)["float"] == pytest.approx(data["total"])
    assert captured(out, flow)["float"] == pytest.approx(data["scores"]["flow_smoothness"])
    ui = comfy.shown_scores(s.id)
    assert ui["clips"][0]["total"] == pytest.approx(data["total"])
    assert "visual_smoothness" in ui["skipped"]  # the loader had no weights folder


def test_score_node_takes_a_video_like_frames(comfy):
    g, clips, reward = _score_graph(frames=9)
    video = g.add("CreateVideo", images=clips["images"], fps=12.0)
    from_video = g.add(**score(video=video["VIDEO"], reward=reward["reward"]))
    from_frames = g.add(**score(frames=clips["images"], reward=reward["reward"]))
    c = g.add(**capture(float=from_video["total"]))
    d = g.add(**capture(float=from_frames["total"]))
    out = comfy.run(g.prompt())
    assert captured(out, c)["float"] == pytest.approx(captured(out, d)["float"], abs=1e-6)


def _best_of_n_graph(defects, frames=13, seed=0, **extra):
    g = Graph()
    clips = g.add(**synthetic(defects, frames=frames, seed=seed))
    reward = g.add(**loader())
    best = g.add(**best_of_n(clips["images"], clips["frames_per_clip"], reward=reward["reward"], **extra))
    return g, clips, best


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_best_of_n_picks_the_clean_candidate(comfy, seed):
    g = Graph()
    clips = g.add(**synthetic("flicker, jitter, clean, freeze", seed=seed))
    reward = g.add(**loader())
    weights = g.add("AnimeRewardWeights", {"visual_smoothness": 1.0, "visual_motion": 1.0, "visual_appeal": 1.0,
                                           "text_video_consistency": 1.0, "image_video_consistency": 1.0,
                                           "flow_smoothness": 1.0, "flow_motion": 0.0})
    best = g.add(**best_of_n(clips["images"], clips["frames_per_clip"], reward=reward["reward"],
                             weights=weights["weights"]))
    c = g.add(**capture(int=best["best_index"], string=best["order"], image=best["best"]))
    d = g.add(**capture(image=best["top_k_clips"]))
    e = g.add(**capture(image=best["contact_sheet"]))
    f = g.add(**capture(image=clips["images"]))
    out = comfy.run(g.prompt())
    got = captured(out, c)
    assert got["int"] == 2 and got["string"].split(",")[0] == "2"
    assert sorted(map(int, got["string"].split(","))) == [0, 1, 2, 3]
    assert got["image"]["shape"] == [13, 96, 160, 3]
    all_frames = captured(out, f)["image"]["per_item_sum"]
    assert got["image"]["per_item_sum"] == pytest.approx(all_frames[2 * 13:3 * 13])  # the clean clip's frames
    assert captured(out, d)["image"]["shape"][0] == 2 * 13  # top_k = 2 clips
    sheet = captured(out, e)["image"]["shape"]
    assert sheet[0] == 1 and sheet[1] >= 4 * 96 * 0.9  # one row per candidate
    ui = comfy.shown_scores(best.id)
    assert ui["order"][0] == 2 and len(ui["clips"]) == 4


def test_example_synthetic_workflow_saves_best_and_contact_sheet(comfy, comfy_base_dir):
    wf = example("synthetic_best_of_n")
    out = comfy.run(wf)
    best_node = comfy.shown_scores(example_node(wf, "AnimeRewardBestOfN"))
    assert best_node["order"][0] == 2 and not best_node["skipped"]  # the five model dimensions are off
    saved_files = {p.name.split("_0")[0]: p for n in wf if wf[n]["class_type"].startswith("Save")
                   for p in saved(out, n, comfy_base_dir)}
    with Image.open(saved_files["best"]) as im:
        assert im.n_frames == 17 and im.size == (320, 192)
    with Image.open(saved_files["contact_sheet"]) as im:
        assert im.height >= 4 * 192 * 0.9  # four candidate rows


def _expect_error(comfy, wf, *needles):
    with pytest.raises(WorkflowError) as err:
        comfy.run(wf)
    msg = str(err.value)
    for n in needles:
        assert n in msg, msg
    return msg


def _with_capture(g, node):
    g.add(**capture(int=node["best_index"]))
    return g.prompt()


def test_best_of_n_bad_inputs(comfy):
    g, clips, best = _best_of_n_graph("clean, flicker", frames=9)
    best.set(frames_per_clip=4)
    _expect_error(comfy, _with_capture(g, best),
                  "AnimeReward Best-of-N", "'frames_per_clip'", "frames_per_clip=4", "Fix:")
    g, clips, best = _best_of_n_graph("clean, flicker", frames=9)
    best.set(frames_per_clip=18)
    _expect_error(comfy, _with_capture(g, best), "AnimeReward Best-of-N", "best-of-N needs 2", "Fix:")
    g, clips, best = _best_of_n_graph("clean, flicker", frames=9)
    best.set(frames_per_clip=0)
    _expect_error(comfy, _with_capture(g, best), "'frames_per_clip'", "Fix:")
    g, clips, best = _best_of_n_graph("clean, flicker", frames=9)
    listed = g.add("AnimeRewardTestClipList", images=clips["images"], lengths="9,7")
    best.set(images=listed["IMAGE"], frames_per_clip=0)
    _expect_error(comfy, _with_capture(g, best), "differ in shape", "Fix:")
    g, clips, best = _best_of_n_graph("clean, flicker", frames=9)
    latent = g.add("EmptyHunyuanLatentVideo", width=64, height=64, length=9, batch_size=3)
    best.set(latents=latent["LATENT"])
    _expect_error(comfy, _with_capture(g, best), "'latents'", "batch of 3 latents for 2 clips", "Fix:")


def test_clip_list_input(comfy):
    g, clips, best = _best_of_n_graph("jitter, clean", frames=9)
    listed = g.add("AnimeRewardTestClipList", images=clips["images"], lengths="9,9")
    best.set(images=listed["IMAGE"], frames_per_clip=0)
    c = g.add(**capture(int=best["best_index"], string=best["order"]))
    got = captured(comfy.run(g.prompt()), c)
    assert sorted(map(int, got["string"].split(","))) == [0, 1]


def test_loader_errors_name_the_input(comfy):
    g, clips, reward = _score_graph()
    g.add(**score(frames=clips["images"], reward=reward["reward"]))
    reward.set(**loader(skip_missing=False)["inputs"])
    _expect_error(comfy, g.prompt(), "AnimeReward Loader", "'weights'", "visual_smoothness", "Fix:")
    reward.set(**loader(enabled=())["inputs"])
    _expect_error(comfy, g.prompt(), "AnimeReward Loader", "switched off")


def test_overlay_draws_on_every_frame(comfy):
    g = Graph()
    clips = g.add(**synthetic("clean", frames=5, width=256, height=256))
    reward = g.add(**loader())
    s = g.add(**score(frames=clips["images"], reward=reward["reward"]))
    over = g.add("AnimeRewardOverlay", frames=clips["images"], scores_json=s["json"], position="top-right",
                 opacity=1.0, clip_index=0)
    c = g.add(**capture(image=over["scored_frames"]))
    d = g.add(**capture(image=clips["images"]))
    out = comfy.run(g.prompt())
    drawn, orig = captured(out, c)["image"], captured(out, d)["image"]
    assert drawn["shape"] == orig["shape"] == [5, 256, 256, 3]
    assert all(abs(a - b) > 1.0 for a, b in zip(drawn["per_item_sum"], orig["per_item_sum"], strict=True))


def test_cancel_stops_best_of_n_between_batches(comfy):
    """Cancel pressed while the first dimension is scored: the next batch does not start."""
    import comfy.model_management as mm
    from comfy.utils import set_progress_bar_global_hook

    g, _, best = _best_of_n_graph("clean, flicker, jitter", frames=9)
    best.set(frames_per_clip=9)
    wf = _with_capture(g, best)
    updates: list[tuple[int, int]] = []

    def hook(value, total, preview, node_id=None):
        if node_id == best.id:
            updates.append((value, total))
            mm.interrupt_current_processing(True)  # as the Cancel button does

    set_progress_bar_global_hook(hook)
    try:
        with pytest.raises(WorkflowError, match="interrupted"):
            comfy.run(wf)
    finally:
        set_progress_bar_global_hook(None)
        mm.interrupt_current_processing(False)
    assert updates and updates[-1][0] < updates[-1][1]  # stopped before the last clip × dimension
    comfy.run(wf)
    assert comfy.shown_scores(best.id)["order"]  # and the next run works


def test_example_score_video_overlay_workflow(comfy, comfy_base_dir):
    """Score a loaded video and save it with the overlay (the shipped example, run as it is)."""
    wf = example("score_video_overlay")
    out = comfy.run(wf)
    ui = comfy.shown_scores(example_node(wf, "AnimeRewardScore"))
    assert 0.0 <= ui["clips"][0]["total"] <= 1.0
    (video,) = [p for n in wf if wf[n]["class_type"] == "SaveVideo" for p in
                (comfy_base_dir / "output" / i["subfolder"] / i["filename"] for i in out[n]["images"])]
    assert video.suffix == ".mp4"
    import av

    with av.open(str(video)) as container:
        assert sum(1 for _ in container.decode(video=0)) == 17
