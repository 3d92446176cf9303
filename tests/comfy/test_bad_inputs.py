"""Bad input through ComfyUI's real executor: one row per case, with the words its message must contain.

Every row runs a real graph (validation + execution). The message must name the node and, where the node
can know it, the input and the fix; none may be a raw library error. After the table, the same ComfyUI runs
a good graph (nothing is left broken). Hostile weights folders come from animereward_testkit.hostile_folders
(planted into this run's models/animereward while ComfyUI is already running, as a user would).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest
import torch
from animereward_testkit import hostile_folders
from animereward_testkit import official_weights as ow
from animereward_testkit.inprocess import WorkflowError
from animereward_testkit.reward_workflows import best_of_n, capture, captured, loader, score, synthetic

pytestmark = pytest.mark.comfy

LOADER, SCORE, BEST, OVERLAY = "AnimeReward Loader", "AnimeReward Score", "AnimeReward Best-of-N", "AnimeReward Overlay"


@dataclass
class Row:
    case: str
    graph: dict[str, Any]
    needles: tuple[str, ...]
    absent: tuple[str, ...] = field(default=("Traceback", "AttributeError", "IndexError", "TypeError"))


def clip_format(images: Any, channels: str = "3", dtype: str = "float32", frames: int = -1) -> dict[str, Any]:
    return {"class_type": "AnimeRewardTestClipFormat",
            "inputs": {"images": images, "channels": channels, "dtype": dtype, "frames": frames}}


def overlay(frames: Any, scores_json: Any, clip_index: int = 0) -> dict[str, Any]:
    return {"class_type": "AnimeRewardOverlay", "inputs": {"frames": frames, "scores_json": scores_json,
                                                         "position": "top-left", "opacity": 0.9,
                                                         "clip_index": clip_index}}


def text(value: str) -> dict[str, Any]:
    return {"class_type": "PrimitiveString", "inputs": {"value": value}}


def hostile_rows() -> list[Row]:
    rows = []
    for case in hostile_folders.CASES:
        graph = {"1": synthetic("clean", frames=9, width=64, height=48),
                 "10": loader(case.folder, enabled=(case.dimension, "flow_smoothness"), skip_missing=False),
                 "2": score(frames=["1", 0], prompt="a girl waves"), "c": capture(float=["2", 0])}
        where = (LOADER, "'weights'", "unreadable: ") if case.folder.startswith("index_") else (SCORE,)
        rows.append(Row(f"weights folder: {case.folder}", graph, (*where, *case.needles)))
    return rows


def rows() -> list[Row]:
    base = {"1": synthetic("clean, flicker", frames=9, width=64, height=48), "10": loader()}
    return [
        *hostile_rows(),
        # raw library errors where the pack's own message belongs (the words the node's sockets use)
        Row("Score first_frame with 0 images",
            {**base, "f": clip_format(["1", 0], frames=0), "2": score(frames=["1", 0], first_frame=["f", 0]),
             "c": capture(float=["2", 0])}, (SCORE, "'first_frame'", "an empty batch (0 images)", "Fix:")),
        Row("Score first_frame with 3 images for one clip",
            {**base, "f": clip_format(["1", 0], frames=3), "2": score(frames=["1", 0], first_frame=["f", 0]),
             "c": capture(float=["2", 0])}, (SCORE, "'first_frame'", "holds 3 images for 1 clip", "Fix:")),
        Row("Best-of-N first_frame with 3 images for 2 candidates",
            {**base, "f": clip_format(["1", 0], frames=3), "11": best_of_n(["1", 0], 9, first_frame=["f", 0]),
             "c": capture(int=["11", 1])},
            (BEST, "'first_frame'", "holds 3 images for 2 clips", "or 2 images (one per candidate")),
        Row("Best-of-N empty batch",
            {**base, "f": clip_format(["1", 0], frames=0), "11": best_of_n(["f", 0], 9), "c": capture(int=["11", 1])},
            (BEST, "'images'", "is empty (0 frames)", "Fix:"), ("1 clip", "Traceback")),
        Row("Score a 2-channel clip names 'frames'",
            {**base, "f": clip_format(["1", 0], "2"), "2": score(frames=["f", 0]), "c": capture(float=["2", 0])},
            (SCORE, "frames: expected channels-last frames"), ("clips[0]", "Traceback")),
        Row("Score a 2-channel first_frame names 'first_frame'",
            {**base, "f": clip_format(["1", 0], "2", frames=1), "2": score(frames=["1", 0], first_frame=["f", 0]),
             "c": capture(float=["2", 0])},
            (SCORE, "first_frame: expected channels-last"), ("first_frames", "Traceback")),
        Row("Best-of-N a 2-channel batch names 'images' and the candidate",
            {**base, "f": clip_format(["1", 0], "2"), "11": best_of_n(["f", 0], 9), "c": capture(int=["11", 1])},
            (BEST, "images (candidate 0): expected channels-last"), ("clips[", "Traceback")),
        *[Row(f"Loader weights is {kind} in an API prompt",
              {**base, "10": loader() | {"inputs": loader()["inputs"] | {"weights": value}},
               "2": score(frames=["1", 0]), "c": capture(float=["2", 0])},
              ("validation failed", LOADER, "'weights'", words, "Fix:"), ("unhashable", "Traceback"))
          for kind, value, words in (("an object", {"a": 1}, "is a dict, not a folder name"),
                                     ("a number", 3, "is a int, not a folder name"),
                                     ("an unknown folder", "no_such_folder", "'no_such_folder' is not in"))],
        Row("int32 safetensors checkpoint",
            {"1": synthetic("clean", frames=9, width=64, height=48),
             "10": loader("int32_weights", enabled=("image_video_consistency", "flow_smoothness"), skip_missing=False),
             "f": clip_format(["1", 0], frames=1),
             "2": score(frames=["1", 0], first_frame=["f", 0]), "c": capture(float=["2", 0])},
            (SCORE, "integer tensors where the model has floating-point weights", "checkpoint_06"),
            ("only floating point", "Traceback")),
        # the Overlay reads JSON written by hand or by other packs
        *[Row(f"overlay scores_json {name}", {**base, "j": text(js), "3": overlay(["1", 0], ["j", 0]),
                                              "c": capture(image=["3", 0])},
              (OVERLAY, "'scores_json'", *needles, "Fix:"))
          for name, js, needles in (
              ("score is a string", '{"scores": {"flow_smoothness": "high"}, "total": 0.5}',
               ("flow_smoothness", "'high'", "a number")),
              ("score is null", '{"scores": {"flow_smoothness": null}, "total": 0.5}', ("flow_smoothness", "None")),
              ("score is NaN", '{"scores": {"flow_smoothness": NaN}, "total": 0.5}', ("flow_smoothness", "nan")),
              ("total is a string", '{"scores": {"flow_smoothness": 0.5}, "total": "x"}', ("total", "'x'")),
              ("not JSON", "scores: 0.5", ("not JSON",)),
              ("no scores", '{"total": 0.5}', ("no 'scores' object",)),
          )],
    ]


ROWS = rows()


@pytest.fixture(scope="module", autouse=True)
def hostile(comfy, comfy_base_dir):
    """Planted after ComfyUI started: folders written while the server runs must not break anything."""
    models = comfy_base_dir / "models" / "animereward"
    hostile_folders.plant(models)
    int32 = models / "int32_weights" / "checkpoint_06.safetensors"
    if not int32.exists():  # the official keys and shapes, every tensor int32
        from safetensors.torch import save_file

        state = ow.blip_state("image_video_consistency")
        int32.parent.mkdir(parents=True)
        save_file({k: v.to(torch.int32) for k, v in state.items()}, str(int32))


@pytest.mark.parametrize("row", ROWS, ids=[r.case for r in ROWS])
def test_bad_input_gets_the_packs_message(comfy, row):
    with pytest.raises(WorkflowError) as err:
        comfy.run(row.graph)
    msg = str(err.value)
    for needle in row.needles:
        assert needle in msg, f"{row.case}: {needle!r} not in: {msg}"
    for word in row.absent:
        assert word not in msg, f"{row.case}: raw {word!r} in: {msg}"


def test_the_node_list_and_the_healthy_folder_survive_the_hostile_ones(comfy):
    """After every hostile folder: the Loader's options list them (not the links to / and /etc), a healthy
    folder scores, and a hostile one with skip_missing on scores the rest with the dimension skipped."""
    import nodes

    spec = nodes.NODE_CLASS_MAPPINGS["AnimeRewardLoader"].INPUT_TYPES()["required"]["weights"]
    options = spec[1]["options"] if spec[0] == "COMBO" else spec[0]
    assert "healthy" in options and all(c.folder in options for c in hostile_folders.CASES)
    assert "link_to_root" not in options and "link_to_etc" not in options
    wf = {"1": synthetic("clean", frames=9, width=64, height=48),
          "10": loader("healthy", enabled=("visual_appeal", "flow_smoothness"), skip_missing=False),
          "2": score(frames=["1", 0], prompt="a girl waves"), "c": capture(string=["2", 8])}
    comfy.run(wf)
    assert set(comfy.shown_scores("2")["clips"][0]["scores"]) == {"visual_appeal", "flow_smoothness"}
    wf["10"] = loader("index_weight_map_list", enabled=("visual_appeal", "flow_smoothness"), skip_missing=True)
    comfy.run(wf)
    ui = comfy.shown_scores("2")
    assert set(ui["clips"][0]["scores"]) == {"flow_smoothness"} and "visual_appeal" in ui["skipped"]


FORMATS = [(c, d) for c in ("1", "3", "4") for d in ("float32", "float16", "bfloat16", "uint8")]


@pytest.mark.parametrize(("channels", "dtype"), FORMATS, ids=[f"C{c}-{d}" for c, d in FORMATS])
def test_every_node_takes_every_clip_score_takes(comfy, channels, dtype):
    """Score, Best-of-N (with its contact sheet and top-k) and Overlay over the same clip formats."""
    wf = {"1": synthetic("clean, jitter", frames=9, width=64, height=48), "10": loader(),
          "f": clip_format(["1", 0], channels, dtype),
          "2": score(frames=["f", 0]),
          "11": best_of_n(["f", 0], 9),
          "3": overlay(["f", 0], ["2", 8]),
          "c": capture(float=["2", 0], image=["11", 0]), "d": capture(image=["11", 5]),
          "e": capture(image=["3", 0]), "g": capture(image=["11", 3])}
    out = comfy.run(wf)
    c = int(channels)
    assert 0.0 <= captured(out, "c")["float"] <= 1.0
    assert captured(out, "c")["image"]["shape"] == [9, 48, 64, c]  # the best clip as it came in
    assert captured(out, "g")["image"]["shape"] == [18, 48, 64, c]  # top-2
    assert captured(out, "d")["image"]["shape"][-1] == 3  # the contact sheet is RGB
    assert captured(out, "e")["image"]["shape"] == [18, 48, 64, 4 if c == 4 else 3]  # RGBA stays RGBA


def test_best_of_n_takes_one_first_frame_per_candidate(comfy):
    """A first_frame batch as large as the candidates is one image per candidate (not image 0 for all)."""
    wf = {"1": synthetic("clean, flicker", frames=9, width=64, height=48), "10": loader(),
          "f": clip_format(["1", 0], frames=2), "11": best_of_n(["1", 0], 9, first_frame=["f", 0]),
          "c": capture(int=["11", 1])}
    assert captured(comfy.run(wf), "c")["int"] in (0, 1)
