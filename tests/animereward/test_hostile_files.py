"""Weights folders a hostile or unlucky user may leave: broken shard indexes, paths that leave the folder,
links to system folders, and files that are not checkpoints at all. Each case gives its own message.

Real files on disk; no ComfyUI here (tests/comfy/test_import_survives.py runs the same files through a real
ComfyUI server).
"""

from __future__ import annotations

import io
import json
import os
import pickle
from pathlib import Path

import pytest
import torch

from animereward.checkpoints import CheckpointError, load_checkpoint_dict
from animereward.file_kinds import sniff
from animereward.weights_layout import (
    OFFICIAL_FILES,
    UnreadableWeightsError,
    available_dimensions,
    locate,
    looks_like_weights_root,
    missing_files,
    scan,
)

APPEAL = OFFICIAL_FILES["visual_appeal"].relpath
IDEFICS2_FILES = ("config.json", "preprocessor_config.json", "tokenizer_config.json", "tokenizer.json")


def idefics2_folder(folder: Path, index: object) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name in IDEFICS2_FILES:
        (folder / name).write_text("{}")
    (folder / "model-00001-of-00001.safetensors").write_bytes(b"x")
    if isinstance(index, bytes):
        (folder / "model.safetensors.index.json").write_bytes(index)
    else:
        (folder / "model.safetensors.index.json").write_text(json.dumps(index))
    return folder


# (case, index file content, words the reason must contain)
BAD_INDEXES = [
    ("weight_map is a list", {"weight_map": ["a.safetensors"]}, "'weight_map' is a list"),
    ("weight_map is a string", {"weight_map": "a.safetensors"}, "'weight_map' is a str"),
    ("weight_map is null", {"weight_map": None}, "'weight_map' is missing"),
    ("weight_map is empty", {"weight_map": {}}, "'weight_map' is empty"),
    ("no weight_map", {"metadata": {}}, "'weight_map' is missing"),
    ("top level is a list", [1, 2], "holds a JSON list"),
    ("not JSON", b"\x00\x01garbage", "not a JSON file"),
    ("shard name is a number", {"weight_map": {"w": 3}}, "names 3 as a file"),
    ("shard path leaves the folder", {"weight_map": {"w": "../../../../../../etc/passwd"}}, "outside its folder"),
    ("shard path is absolute", {"weight_map": {"w": "/etc/passwd"}}, "an absolute path"),
    ("shard path climbs after a sub-folder", {"weight_map": {"w": "sub/../../x.safetensors"}}, "outside its folder"),
]


@pytest.mark.parametrize(("case", "index", "reason"), BAD_INDEXES, ids=[c[0] for c in BAD_INDEXES])
def test_a_broken_shard_index_is_named_never_raised_where_menus_are_drawn(tmp_path, case, index, reason):
    root = tmp_path / "root"
    idefics2_folder(root / "weights" / APPEAL, index)
    ok, problems = scan(root)  # what the node list and validation call: never raises
    assert ok["visual_appeal"] is False
    assert problems["visual_appeal"].startswith("unreadable: ") and "model.safetensors.index.json" in \
        problems["visual_appeal"] and reason in problems["visual_appeal"], problems
    assert available_dimensions(root)["visual_appeal"] is False
    with pytest.raises(UnreadableWeightsError, match=r"index\.json") as err:
        locate(root, "visual_appeal")
    assert reason in str(err.value)
    with pytest.raises(UnreadableWeightsError):
        missing_files(root, ["visual_appeal"])


def test_a_shard_path_that_leaves_the_folder_never_makes_it_complete(tmp_path):
    """The traversal of the issue: ../.. to a file that exists must not count as the shard."""
    root = tmp_path / "root"
    secret = tmp_path / "secret.safetensors"
    secret.write_bytes(b"x")
    folder = idefics2_folder(root / APPEAL, {"weight_map": {"w": "../../../secret.safetensors"}})
    assert (folder / "../../../secret.safetensors").resolve() == secret.resolve()
    assert scan(root)[0]["visual_appeal"] is False
    with pytest.raises(UnreadableWeightsError, match="outside its folder"):
        locate(root, "visual_appeal")


def test_a_shard_linked_from_elsewhere_by_the_user_still_counts(tmp_path):
    """HF cache snapshots link every file to ../../blobs: the path as written stays inside, so it is fine."""
    blobs = tmp_path / "blobs"
    blobs.mkdir()
    (blobs / "abc").write_bytes(b"x")
    folder = idefics2_folder(tmp_path / "root" / APPEAL, {"weight_map": {"w": "model-00002.safetensors"}})
    (folder / "model-00002.safetensors").symlink_to(blobs / "abc")
    assert locate(tmp_path / "root", "visual_appeal") == folder


def test_one_broken_folder_leaves_the_other_dimensions_available(tmp_path):
    root = tmp_path / "root"
    idefics2_folder(root / "weights" / APPEAL, {"weight_map": None})
    motion = root / "weights" / OFFICIAL_FILES["visual_motion"].relpath
    motion.write_bytes(b"PK")
    ok, problems = scan(root)
    assert ok["visual_motion"] is True and set(problems) == {"visual_appeal"}


def test_links_to_system_folders_and_empty_folders_are_not_weights_roots(tmp_path):
    for name, target in (("root_link", Path("/")), ("etc_link", Path("/etc"))):
        (tmp_path / name).symlink_to(target, target_is_directory=True)
        assert not looks_like_weights_root(tmp_path / name)
    (tmp_path / "empty").mkdir()
    assert not looks_like_weights_root(tmp_path / "empty")
    assert not looks_like_weights_root(tmp_path / "missing")
    (tmp_path / "flat").mkdir()
    (tmp_path / "flat" / "checkpoint_06.pth").write_bytes(b"x")
    assert looks_like_weights_root(tmp_path / "flat")


def _torch_bytes(obj: object) -> bytes:
    buf = io.BytesIO()
    torch.save(obj, buf)
    return buf.getvalue()


class _Evil:
    def __reduce__(self):
        return (os.system, ("echo should-never-run",))


# (case, file content, words the CheckpointError must contain, words it must not contain)
NOT_CHECKPOINTS = [
    ("Git LFS pointer", b"version https://git-lfs.github.com/spec/v1\noid sha256:ab12\nsize 123456\n",
     "Git LFS pointer", "could run code"),
    ("HTML page", b"\n<!DOCTYPE html>\n<html><head><title>Sign in</title></head></html>", "an HTML page", "could run code"),
    ("JSON file", b'{"error": "Repository not found"}', "a JSON file", "could run code"),
    ("plain text", b"these are not weights\n", "a text file", "could run code"),
    ("empty file", b"", "an empty file", "could run code"),
    ("gzip archive", b"\x1f\x8b\x08\x00" + bytes(60), "a gzip archive", "could run code"),
    ("random binary", b"\x13\x37" + bytes(range(256)), "neither a PyTorch zip archive nor a pickle", "could run code"),
    ("truncated checkpoint", _torch_bytes({"w": torch.ones(4)})[:300], "truncated", "could run code"),
    ("pickle that runs code", pickle.dumps({"state_dict": _Evil()}, protocol=2), "could run code", "LFS"),
]


@pytest.mark.parametrize(("case", "content", "says", "never"), NOT_CHECKPOINTS, ids=[c[0] for c in NOT_CHECKPOINTS])
@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
def test_files_that_are_not_checkpoints_are_called_what_they_are(tmp_path, case, content, says, never, suffix):
    if suffix == ".safetensors" and case in ("truncated checkpoint", "pickle that runs code"):
        says, never = "as safetensors", "LFS"  # a zip or pickle named .safetensors: the safetensors reader says
    path = tmp_path / f"checkpoint_06{suffix}"
    path.write_bytes(content)
    with pytest.raises(CheckpointError) as err:
        load_checkpoint_dict(path, None)
    msg = str(err.value)
    assert says in msg and str(path) in msg and never not in msg, msg
    assert not path.with_suffix(".safetensors").exists() or suffix == ".safetensors"


def test_a_safetensors_file_saved_as_pth_is_named_so():
    import tempfile

    from safetensors.torch import save

    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "testvl.pth"
        path.write_bytes(save({"w": torch.ones(2)}))
        with pytest.raises(CheckpointError, match=r"safetensors file with a \.pth name: rename it to testvl"):
            load_checkpoint_dict(path, None)
        assert sniff(path) == "is a safetensors file"
