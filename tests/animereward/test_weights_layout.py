"""Finding each dimension's files: official layout, hub layout, flat, `.safetensors` in place of `.pth`,
incomplete folders, and the one error that lists everything missing.

The layouts link the real checkpoints of tests/animereward_testkit/official_weights.py (written once per process);
the edge cases use small placeholder files, since locating reads no file contents.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from animereward_testkit import official_weights as ow

from animereward.dimensions import ANIMEREWARD_DIMENSIONS, WEIGHTS_SOURCE
from animereward.weights_layout import (
    OFFICIAL_FILES,
    MissingWeightsError,
    UnreadableWeightsError,
    available_dimensions,
    locate,
    missing_files,
)

FIVE = tuple(OFFICIAL_FILES)
IDEFICS2_FILES = ("config.json", "preprocessor_config.json", "tokenizer_config.json", "tokenizer.json")


def touch(path: Path, text: str = "x") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def idefics2_folder(folder: Path, *, weights: str = "model.safetensors", skip: tuple[str, ...] = ()) -> Path:
    for name in IDEFICS2_FILES:
        if name not in skip:
            touch(folder / name)
    if weights:
        touch(folder / weights)
    return folder


def expected_paths(base: Path) -> dict[str, Path]:
    """Where ow.make_root links each dimension, relative to the folder playing `weights/`."""
    out = {}
    for d, entry in OFFICIAL_FILES.items():
        src = ow.cached(d)
        out[d] = base / entry.relpath if entry.kind == "folder" else (base / entry.relpath).with_suffix(src.suffix)
    return out


@pytest.mark.parametrize("where", ["reward", "hub", "weights"])
def test_official_layout_from_each_accepted_root(tmp_path: Path, where: str) -> None:
    """Root = the reward/ folder, the folder above it, or weights/ itself: same files found."""
    if where == "hub":
        root = ow.make_root(tmp_path, layout="hub")
        base = tmp_path / "reward" / "weights"
    else:
        ow.make_root(tmp_path, layout="official")
        base = tmp_path / "weights"
        root = base if where == "weights" else tmp_path
    assert available_dimensions(root) == {**dict.fromkeys(FIVE, True), "character_consistency": False}
    assert list(available_dimensions(root)) == list(ANIMEREWARD_DIMENSIONS)
    for d, path in expected_paths(base).items():
        assert locate(root, d) == path
    assert missing_files(root, [*FIVE, "flow_motion"]) == {**{d: [] for d in FIVE}, "flow_motion": []}


def test_flat_layout_with_real_checkpoints(tmp_path: Path) -> None:
    ow.make_root(tmp_path, layout="flat")
    assert all(available_dimensions(tmp_path)[d] for d in FIVE)
    assert locate(tmp_path, "image_video_consistency") == tmp_path / "checkpoint_06.pth"
    assert locate(tmp_path, "text_video_consistency") == tmp_path / "checkpoint_05.safetensors"
    assert locate(tmp_path, "visual_motion") == tmp_path / "testvl-pre76-top187-rec69.safetensors"
    appeal = "mantis-8b-idefics2-video-eval-24frame-quality_4096_regression"
    assert locate(tmp_path, "visual_appeal") == tmp_path / appeal  # the folder holds the files directly


def test_flat_variants_and_safetensors_preferred(tmp_path: Path) -> None:
    touch(tmp_path / "Pretrain_humangt_meanvideo_trainset_wGT" / "checkpoint_06.pth")  # <root>/<folder>/<file>
    touch(tmp_path / "checkpoint_05.safetensors")  # converted copy only
    touch(tmp_path / "testvl-pre76-top187-rec69.pth")
    touch(tmp_path / "testvl-pre76-top187-rec69.safetensors")  # both: the safetensors wins (no pickle)
    smooth = "mantis-8b-idefics2-video-eval-24frame-benchmark-1epoch_4096_regression"
    idefics2_folder(tmp_path / smooth / "checkpoint-final")  # <root>/<folder>/checkpoint-final
    assert locate(tmp_path, "image_video_consistency") == tmp_path / OFFICIAL_FILES["image_video_consistency"].relpath
    assert locate(tmp_path, "text_video_consistency") == tmp_path / "checkpoint_05.safetensors"
    assert locate(tmp_path, "visual_motion") == tmp_path / "testvl-pre76-top187-rec69.safetensors"
    assert locate(tmp_path, "visual_smoothness") == tmp_path / smooth / "checkpoint-final"
    avail = available_dimensions(tmp_path)
    assert avail == {"visual_smoothness": True, "visual_motion": True, "visual_appeal": False,
                     "text_video_consistency": True, "image_video_consistency": True, "character_consistency": False}


def test_missing_everything_is_one_error_listing_every_path(tmp_path: Path) -> None:
    missing = missing_files(tmp_path, FIVE)
    assert set(missing) == set(FIVE)
    base = tmp_path / "weights"  # nothing there yet: the official layout is what is asked for
    for d in ("image_video_consistency", "text_video_consistency", "visual_motion"):
        assert missing[d] == [base / OFFICIAL_FILES[d].relpath]
    for d in ("visual_appeal", "visual_smoothness"):
        folder = base / OFFICIAL_FILES[d].relpath
        assert missing[d] == [folder / n for n in IDEFICS2_FILES] + [folder / "model.safetensors"]
    with pytest.raises(MissingWeightsError) as err:
        missing_files(tmp_path, FIVE, raise_error=True)
    msg = str(err.value)
    assert isinstance(err.value, FileNotFoundError)
    assert err.value.missing == missing
    for d, paths in missing.items():
        for p in paths:
            assert f"{d}: {p}" in msg
        assert OFFICIAL_FILES[d].official in msg  # the exact relative path expected
    assert WEIGHTS_SOURCE in msg
    assert msg.count("\n") >= sum(map(len, missing.values())) + len(FIVE)
    with pytest.raises(MissingWeightsError, match=r"visual_motion: .*testvl-pre76-top187-rec69\.pth"):
        locate(tmp_path, "visual_motion")


def test_missing_paths_follow_the_layout_in_use(tmp_path: Path) -> None:
    """A flat root with some files: the others are expected flat too, not under weights/."""
    touch(tmp_path / "checkpoint_06.pth")
    missing = missing_files(tmp_path, ["image_video_consistency", "visual_motion"])
    assert missing == {"image_video_consistency": [], "visual_motion": [tmp_path / "testvl-pre76-top187-rec69.pth"]}


def test_incomplete_idefics2_folder_lists_what_it_lacks(tmp_path: Path) -> None:
    folder = tmp_path / "weights" / OFFICIAL_FILES["visual_appeal"].relpath
    idefics2_folder(folder, weights="", skip=("tokenizer.json", "preprocessor_config.json"))
    assert available_dimensions(tmp_path)["visual_appeal"] is False
    assert missing_files(tmp_path, ["visual_appeal"])["visual_appeal"] == [
        folder / "preprocessor_config.json", folder / "tokenizer.json", folder / "model.safetensors"]
    # sharded weights: the index names the shards; a missing shard is listed
    touch(folder / "preprocessor_config.json")
    touch(folder / "tokenizer.model")  # the sentencepiece file also counts as a tokenizer
    shards = ["model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"]
    touch(folder / "model.safetensors.index.json", json.dumps({"weight_map": {"a": shards[0], "b": shards[1]}}))
    touch(folder / shards[0])
    assert missing_files(tmp_path, ["visual_appeal"])["visual_appeal"] == [folder / shards[1]]
    touch(folder / shards[1])
    assert locate(tmp_path, "visual_appeal") == folder
    touch(folder / "model.safetensors.index.json", "{not json")  # present but broken: named, not "missing"
    with pytest.raises(UnreadableWeightsError, match=r"unreadable: .*model\.safetensors\.index\.json: not a JSON"):
        missing_files(tmp_path, ["visual_appeal"])


def test_character_consistency_is_looked_for_in_the_character_folder(tmp_path: Path) -> None:
    """Its files are not under weights/ (tests/animereward/test_character_dimension.py finds real ones)."""
    assert available_dimensions(tmp_path)["character_consistency"] is False
    missing = missing_files(tmp_path, ["character_consistency"])["character_consistency"]
    assert missing[0] == tmp_path / "character/IP_checkpoints/blip_checkpoints/animate_recoginzer.pth"
    with pytest.raises(MissingWeightsError, match="character/IP_checkpoints/grouding-dino-base/"):
        locate(tmp_path, "character_consistency")


def test_flow_unknown_and_absent_roots(tmp_path: Path) -> None:
    assert missing_files(tmp_path, ["flow_smoothness"]) == {"flow_smoothness": []}
    with pytest.raises(ValueError, match="needs no weights"):
        locate(tmp_path, "flow_motion")
    with pytest.raises(ValueError, match=r"unknown AnimeReward dimension\(s\) \['visual_apeal'\]"):
        missing_files(tmp_path, ["visual_apeal"])
    assert not any(available_dimensions(None).values())
    assert not any(available_dimensions(tmp_path / "nope").values())
