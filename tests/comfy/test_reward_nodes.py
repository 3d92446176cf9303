"""The reward nodes through ComfyUI's real executor, with the weight-free flow metrics."""

from __future__ import annotations

import json

import pytest
from animereward_testkit.inprocess import WorkflowError
from animereward_testkit.reward_workflows import (
    FLOW_DIMS,
    best_of_n,
    capture,
    captured,
    example,
    loader,
    saved,
    score,
    synthetic,
)
from PIL import Image

pytestmark = pytest.mark.comfy


def test_score_node_outputs_and_ui(comfy):
    wf = {
        "1": synthetic("clean"),
        "10": loader(),
        "2": score(frames=["1", 0]),
        "3": capture(float=["2", 0], string=["2", 8]),
        "4": capture(float=["2", 1]),  # visual_smoothness: not loaded → -1
        "5": capture(float=["2", 6]),  # flow_smoothness
    }
    out = comfy.run(wf)
    total = captured(out, "3")["float"]
    data = json.loads(captured(out, "3")["string"])
    assert set(data["scores"]) == set(FLOW_DIMS)
    assert 0.0 <= total <= 1.0 and total == pytest.approx(data["total"])
    assert captured(out, "4")["float"] == -1.0
    assert captured(out, "5")["float"] == pytest.approx(data["scores"]["flow_smoothness"])
    ui = comfy.shown_scores("2")
    assert ui["clips"][0]["total"] == pytest.approx(total)
    assert "visual_smoothness" in ui["skipped"]  # the loader had no weights folder


def test_score_node_takes_a_video_like_frames(comfy):
    wf = {
        "1": synthetic("clean", frames=9),
        "10": loader(),
        "v": {"class_type": "CreateVideo", "inputs": {"images": ["1", 0], "fps": 12.0}},
        "2": score(video=["v", 0]),
        "3": score(frames=["1", 0]),
        "c": capture(float=["2", 0]),
        "d": capture(float=["3", 0]),
    }
    out = comfy.run(wf)
    assert captured(out, "c")["float"] == pytest.approx(captured(out, "d")["float"], abs=1e-6)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_best_of_n_picks_the_clean_candidate(comfy, seed):
    wf = {
        "1": synthetic("flicker, jitter, clean, freeze", seed=seed),
        "10": loader(),
        "w": {"class_type": "AnimeRewardWeights",
              "inputs": {"visual_smoothness": 1.0, "visual_motion": 1.0, "visual_appeal": 1.0,
                         "text_video_consistency": 1.0, "image_video_consistency": 1.0,
                         "flow_smoothness": 1.0, "flow_motion": 0.0}},
        "11": best_of_n(["1", 0], ["1", 1], weights=["w", 0]),
        "c": capture(int=["11", 1], string=["11", 2], image=["11", 0]),
        "d": capture(image=["11", 3]),
        "e": capture(image=["11", 5]),
        "f": capture(image=["1", 0]),
    }
    out = comfy.run(wf)
    got = captured(out, "c")
    assert got["int"] == 2 and got["string"].split(",")[0] == "2"
    assert sorted(map(int, got["string"].split(","))) == [0, 1, 2, 3]
    assert got["image"]["shape"] == [13, 96, 160, 3]
    all_frames = captured(out, "f")["image"]["per_item_sum"]
    assert got["image"]["per_item_sum"] == pytest.approx(all_frames[2 * 13:3 * 13])  # the clean clip's frames
    assert captured(out, "d")["image"]["shape"][0] == 2 * 13  # top_k = 2 clips
    sheet = captured(out, "e")["image"]["shape"]
    assert sheet[0] == 1 and sheet[1] >= 4 * 96 * 0.9  # one row per candidate
    ui = comfy.shown_scores("11")
    assert ui["order"][0] == 2 and len(ui["clips"]) == 4


def test_example_synthetic_workflow_saves_best_and_contact_sheet(comfy, comfy_base_dir):
    out = comfy.run(example("synthetic_best_of_n"))
    (best,) = saved(out, "20", comfy_base_dir)
    (sheet,) = saved(out, "21", comfy_base_dir)
    with Image.open(best) as im:
        assert im.n_frames == 17 and im.size == (320, 192)
    with Image.open(sheet) as im:
        assert im.height >= 4 * 192 * 0.9  # four candidate rows


def _expect_error(comfy, wf, *needles):
    with pytest.raises(WorkflowError) as err:
        comfy.run(wf)
    msg = str(err.value)
    for n in needles:
        assert n in msg, msg
    return msg


def test_best_of_n_bad_inputs(comfy):
    base = {"1": synthetic("clean, flicker", frames=9), "10": loader()}
    _expect_error(comfy, base | {"11": best_of_n(["1", 0], 4), "c": capture(int=["11", 1])},
                  "AnimeReward Best-of-N", "'images'", "frames_per_clip=4", "Fix:")
    _expect_error(comfy, base | {"11": best_of_n(["1", 0], 18), "c": capture(int=["11", 1])},
                  "AnimeReward Best-of-N", "best-of-N needs 2", "Fix:")
    _expect_error(comfy, base | {"11": best_of_n(["1", 0], 0), "c": capture(int=["11", 1])},
                  "'frames_per_clip'", "Fix:")
    lists = base | {"l": {"class_type": "AnimeRewardTestClipList", "inputs": {"images": ["1", 0], "lengths": "9,7"}},
                    "11": best_of_n(["l", 0], 0), "c": capture(int=["11", 1])}
    _expect_error(comfy, lists, "differ in shape", "Fix:")
    lat = base | {"z": {"class_type": "EmptyHunyuanLatentVideo",
                        "inputs": {"width": 64, "height": 64, "length": 9, "batch_size": 3}},
                  "11": best_of_n(["1", 0], 9, latents=["z", 0]), "c": capture(int=["11", 1])}
    _expect_error(comfy, lat, "'latents'", "batch of 3 latents for 2 clips", "Fix:")


def test_clip_list_input(comfy):
    wf = {"1": synthetic("jitter, clean", frames=9), "10": loader(),
          "l": {"class_type": "AnimeRewardTestClipList", "inputs": {"images": ["1", 0], "lengths": "9,9"}},
          "11": best_of_n(["l", 0], 0), "c": capture(int=["11", 1], string=["11", 2])}
    got = captured(comfy.run(wf), "c")
    assert sorted(map(int, got["string"].split(","))) == [0, 1]


def test_loader_errors_name_the_input(comfy):
    wf = {"10": loader(skip_missing=False), "1": synthetic("clean"),
          "2": score(frames=["1", 0])}
    _expect_error(comfy, wf, "AnimeReward Loader", "'weights'", "visual_smoothness", "Fix:")
    wf["10"] = loader(enabled=())
    _expect_error(comfy, wf, "AnimeReward Loader", "switched off")


def test_overlay_draws_on_every_frame(comfy):
    wf = {"1": synthetic("clean", frames=5, width=256, height=256), "10": loader(),
          "2": score(frames=["1", 0]),
          "3": {"class_type": "AnimeRewardOverlay", "inputs": {"frames": ["1", 0], "scores_json": ["2", 8],
                                                               "position": "top-right", "opacity": 1.0,
                                                               "clip_index": 0}},
          "c": capture(image=["3", 0]), "d": capture(image=["1", 0])}
    out = comfy.run(wf)
    over, orig = captured(out, "c")["image"], captured(out, "d")["image"]
    assert over["shape"] == orig["shape"] == [5, 256, 256, 3]
    assert all(abs(a - b) > 1.0 for a, b in zip(over["per_item_sum"], orig["per_item_sum"], strict=True))


def test_cancel_stops_best_of_n_between_batches(comfy):
    """Cancel pressed while the first dimension is scored: the next batch does not start."""
    import comfy.model_management as mm
    from comfy.utils import set_progress_bar_global_hook

    updates: list[tuple[int, int]] = []

    def hook(value, total, preview, node_id=None):
        if node_id == "11":
            updates.append((value, total))
            mm.interrupt_current_processing(True)  # as the Cancel button does

    wf = {"1": synthetic("clean, flicker, jitter", frames=9), "10": loader(),
          "11": best_of_n(["1", 0], 9), "c": capture(int=["11", 1])}
    set_progress_bar_global_hook(hook)
    try:
        with pytest.raises(WorkflowError, match="interrupted"):
            comfy.run(wf)
    finally:
        set_progress_bar_global_hook(None)
        mm.interrupt_current_processing(False)
    assert updates and updates[-1][0] < updates[-1][1]  # stopped before the last clip × dimension
    comfy.run(wf)
    assert comfy.shown_scores("11")["order"]  # and the next run works


def test_example_score_video_overlay_workflow(comfy, comfy_base_dir):
    """Score a loaded video and save it with the overlay (the shipped example, run as it is)."""
    out = comfy.run(example("score_video_overlay"))
    ui = comfy.shown_scores("2")
    assert 0.0 <= ui["clips"][0]["total"] <= 1.0
    files = out["6"]["images"]
    assert len(files) == 1 and files[0]["filename"].endswith(".mp4")
    video = comfy_base_dir / "output" / files[0]["subfolder"] / files[0]["filename"]
    import av

    with av.open(str(video)) as container:
        assert sum(1 for _ in container.decode(video=0)) == 17
