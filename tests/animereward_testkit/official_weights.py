"""Real checkpoints in the official layout (and flat), written once per test process, for the facade tests.

Full-size BLIP and ActionCLIP checkpoints are ~0.35-0.9 GB each, so each is generated and written exactly
once per process (seeded random weights; official key names and shapes from the goldens of the
per-dimension tests) and then *linked* into as many layouts as the tests want:
a layout costs a few symlinks, not a copy.
The Idefics2 folders are the tiny official-format checkpoint of tests/golden/idefics2 (same files, small
config). Everything lives in one temporary folder removed when the process exits.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import torch

from animereward.weights_layout import OFFICIAL_FILES

from .temp_dirs import process_temp_dir

GOLDEN = Path(__file__).resolve().parents[1] / "golden"
WEIGHTED = tuple(OFFICIAL_FILES)  # the five dimensions with files
_CACHE: dict[str, Path] = {}


def _load(name: str, path: Path):
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)  # type: ignore[union-attr]
    return mod


def _random_state(shapes: dict[str, list[int]], seed: int) -> dict[str, torch.Tensor]:
    """N(0, 0.02) tensors (LayerNorm weights around 1), filled in place: ~5x faster than the golden recipe,
    which these tests do not need (they check the facade, not the numbers of the official models)."""
    recipe = _load("_ar_det_weights", GOLDEN / "deterministic_weights.py")
    gen = torch.Generator().manual_seed(seed)
    out = {}
    for key, shape in shapes.items():
        t = torch.empty(tuple(shape)).normal_(0.0, 0.02, generator=gen)
        out[key] = t.add_(1.0) if recipe.is_norm_weight(key) else t
    return out


def blip_state(dimension: str) -> dict[str, torch.Tensor]:
    """Every official key of the BLIP model (crossattention and position_ids included)."""
    keys = json.loads((GOLDEN / "blip" / "official_keys.json").read_text())[dimension]
    sd = _random_state({k: s for k, s, d in keys if d == "float32"}, 20250101)
    for k, s, d in keys:
        if d != "float32":
            sd[k] = torch.arange(s[-1], dtype=torch.int64).expand(*s).contiguous()
    return sd


def actionclip_state() -> dict[str, torch.Tensor]:
    shapes = json.loads((GOLDEN / "actionclip" / "state_dict_shapes.json").read_text())
    return _random_state(shapes, 1234)


# The one checkpoint kept as a real `.pth` (the smallest): the facade converts it through the real loader on
# first use, as it would the user's file. The others are written as the `.safetensors` that conversion makes
# (the sub-dict, tensors only), which halves the disk traffic; the `.pth` path itself is covered by the
# per-dimension tests (test_checkpoints, test_blip_consistency, test_actionclip).
PTH_DIMENSIONS = ("image_video_consistency",)


def _state(dimension: str) -> dict[str, torch.Tensor]:
    return actionclip_state() if dimension == "visual_motion" else blip_state(dimension)


def _write_file(dimension: str, pth: Path) -> Path:
    pth.parent.mkdir(parents=True, exist_ok=True)
    if dimension in PTH_DIMENSIONS:  # BLIP's train script: {'model', 'optimizer', 'config', 'epoch'}
        torch.save({"model": _state(dimension), "config": {"vit": "base"}, "epoch": 6}, pth)
        return pth
    from safetensors.torch import save_file

    target = pth.with_suffix(".safetensors")
    save_file(_state(dimension), str(target))
    return target


def _write_idefics2(folder: Path) -> None:
    tiny = _load("_ar_idefics2_tiny", GOLDEN / "idefics2" / "tiny_checkpoint.py")
    shapes = json.loads((GOLDEN / "idefics2" / "official_keys.json").read_text())
    seed = tiny.SEED + (1 if "quality" in str(folder) else 0)  # two different models
    tiny.write_checkpoint(folder, shapes, seed=seed)


def cached(dimension: str) -> Path:
    """The real file (`.pth` or `.safetensors`, see PTH_DIMENSIONS) or folder of one dimension."""
    if dimension not in _CACHE:
        entry = OFFICIAL_FILES[dimension]
        target = process_temp_dir("animereward-weights-") / "weights" / entry.relpath
        if entry.kind == "folder":
            _write_idefics2(target)
        else:
            target = _write_file(dimension, target)
        _CACHE[dimension] = target
    return _CACHE[dimension]


def _link(src: Path, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    dst.symlink_to(src, target_is_directory=src.is_dir())


def make_root(root: Path, dimensions: tuple[str, ...] = WEIGHTED, *, layout: str = "official") -> Path:
    """Link the cached files of `dimensions` under `root`, under their official file names.

    layout: "official" (<root>/weights/<official path>), "hub" (<root>/reward/weights/...), "flat" (<root>/
    <file name> for the checkpoint files, <root>/<folder name>/ holding the Idefics2 files directly).
    """
    root.mkdir(parents=True, exist_ok=True)
    for d in dimensions:
        entry = OFFICIAL_FILES[d]
        src = cached(d)
        rel = Path(entry.relpath)
        if layout == "official":
            dst = root / "weights" / rel
        elif layout == "hub":
            dst = root / "reward" / "weights" / rel
        elif layout == "flat":
            dst = root / (rel.parent if entry.kind == "folder" else Path(rel.name))
        else:
            raise ValueError(layout)
        _link(src, dst if entry.kind == "folder" else dst.with_suffix(src.suffix))
    return root
