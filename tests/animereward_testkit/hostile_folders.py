"""Weights folders with one malformed file each, of every kind the layout and the loaders read.

Planted into a `models/animereward` folder by the import-survives test (before a real ComfyUI server starts,
and while it runs) and by the bad-input table (in-process executor). Each entry says which dimension reads
the broken file and which words the error must show (the file's name and what is wrong with it).
"""

from __future__ import annotations

import io
import json
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from animereward.weights_layout import OFFICIAL_FILES

from . import official_weights as ow

APPEAL = "visual_appeal"  # a tiny Idefics2 folder (official format)
MOTION = "visual_motion"  # a .pth checkpoint
LFS = b"version https://git-lfs.github.com/spec/v1\noid sha256:4d7a2146\nsize 3560123456\n"


@dataclass(frozen=True)
class Hostile:
    folder: str  # the folder name under models/animereward (the Loader's option)
    dimension: str  # the dimension whose file is broken
    needles: tuple[str, ...]  # words the error must contain


def _idefics2(root: Path) -> Path:
    folder = root / "weights" / OFFICIAL_FILES[APPEAL].relpath
    shutil.copytree(ow.cached(APPEAL), folder, symlinks=False)
    return folder


def _index(weight_map: object) -> Callable[[Path], None]:
    def plant(root: Path) -> None:
        folder = _idefics2(root)
        (folder / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
        (folder / "model.safetensors").rename(folder / "model-00001-of-00001.safetensors")
    return plant


def _replace(name: str, content: bytes) -> Callable[[Path], None]:
    def plant(root: Path) -> None:
        (_idefics2(root) / name).write_bytes(content)
    return plant


def _motion(content: bytes) -> Callable[[Path], None]:
    def plant(root: Path) -> None:
        root.mkdir(parents=True, exist_ok=True)
        (root / Path(OFFICIAL_FILES[MOTION].relpath).name).write_bytes(content)
    return plant


CHARACTER = "character_consistency"  # a character folder in the official layout (small models)


def _character(rel: str, content: bytes) -> Callable[[Path], None]:
    def plant(root: Path) -> None:
        from .character_weights import write_character_root

        write_character_root(root)
        (root / rel).write_bytes(content)
    return plant


def _truncated_zip() -> bytes:
    buf = io.BytesIO()
    torch.save({"state_dict": {"w": torch.ones(64)}}, buf)
    return buf.getvalue()[:400]


INDEX = "model.safetensors.index.json"
CASES: dict[Hostile, Callable[[Path], None]] = {
    Hostile("index_weight_map_list", APPEAL, (INDEX, "'weight_map' is a list")): _index(["a.safetensors"]),
    Hostile("index_weight_map_string", APPEAL, (INDEX, "'weight_map' is a str")): _index("model.safetensors"),
    Hostile("index_weight_map_null", APPEAL, (INDEX, "'weight_map' is missing")): _index(None),
    Hostile("index_escapes_folder", APPEAL, (INDEX, "outside its folder")): _index(
        {"w": "../../../../../../../../etc/passwd"}),
    Hostile("index_not_json", APPEAL, (INDEX, "not a JSON file")): _replace(INDEX, b"<html>502 Bad Gateway</html>"),
    Hostile("config_not_json", APPEAL, ("config.json", "not a JSON object")): _replace("config.json", b"{broken"),
    Hostile("preprocessor_config_list", APPEAL, ("preprocessor_config.json", "not a JSON object")): _replace(
        "preprocessor_config.json", b"[1, 2]"),
    Hostile("tokenizer_config_not_json", APPEAL, ("tokenizer_config.json", "not a JSON object")): _replace(
        "tokenizer_config.json", b"\x00\x01\x02"),
    Hostile("tokenizer_json_truncated", APPEAL, ("tokenizer.json", "not a JSON object")): _replace(
        "tokenizer.json", b'{"version": "1.0", "model": {"vocab": {"a'),
    Hostile("weights_lfs_pointer", APPEAL, ("model.safetensors", "Git LFS pointer")): _replace("model.safetensors", LFS),
    Hostile("pth_lfs_pointer", MOTION, ("testvl-pre76-top187-rec69.pth", "Git LFS pointer")): _motion(LFS),
    Hostile("pth_html_page", MOTION, ("testvl-pre76-top187-rec69.pth", "an HTML page")): _motion(
        b"<!DOCTYPE html><html><body>Sign in to continue</body></html>"),
    Hostile("pth_json", MOTION, ("testvl-pre76-top187-rec69.pth", "a JSON file")): _motion(b'{"error": "gated"}'),
    Hostile("pth_text", MOTION, ("testvl-pre76-top187-rec69.pth", "a text file")): _motion(b"weights go here\n"),
    Hostile("pth_truncated", MOTION, ("testvl-pre76-top187-rec69.pth", "truncated")): _motion(_truncated_zip()),
    Hostile("character_recognizer_lfs", CHARACTER, ("animate_recoginzer.pth", "Git LFS pointer")): _character(
        "character/IP_checkpoints/blip_checkpoints/animate_recoginzer.pth", LFS),
    Hostile("character_detector_config_html", CHARACTER, ("grouding-dino-base/config.json", "not a JSON object")):
        _character("character/IP_checkpoints/grouding-dino-base/config.json", b"<html>502 Bad Gateway</html>"),
    Hostile("character_tracker_weights_lfs", CHARACTER, ("sam2.1-hiera-base-plus", "model.safetensors")):
        _character("character/IP_checkpoints/sam2.1-hiera-base-plus/model.safetensors", LFS),
    Hostile("character_gallery_escapes", CHARACTER, ("gallerys.json", "points outside")): _character(
        "character/BLIP/data/gallerys.json", b'[{"image": "../../../../etc/passwd", "caption": "x"}]'),
}


def plant(models_animereward: Path) -> list[Hostile]:
    """Every case under its own folder, plus `healthy` (an intact tiny Idefics2 visual_appeal folder) and
    links to `/` and `/etc`, which must not be offered. Idempotent."""
    models_animereward.mkdir(parents=True, exist_ok=True)
    for case, make in CASES.items():
        if not (models_animereward / case.folder).exists():
            make(models_animereward / case.folder)
    if not (models_animereward / "healthy").exists():
        _idefics2(models_animereward / "healthy")
    for name, target in (("link_to_root", "/"), ("link_to_etc", "/etc")):
        if not (models_animereward / name).is_symlink():
            (models_animereward / name).symlink_to(target, target_is_directory=True)
    return list(CASES)
