"""Writing a trained LoRA where ComfyUI's loaders find it, in ComfyUI's own key format, with its provenance
in the safetensors header (readable by any safetensors tool, e.g. `safe_open(path).metadata()`)."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

# Every metadata key the trainer writes starts with this, so it never collides with other tools' keys.
META_PREFIX = "animereward."
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_\-. ]{0,99}(/[A-Za-z0-9][A-Za-z0-9_\-. ]{0,99}){0,3}$")


def check_lora_name(name: str) -> str:
    """A LoRA name: letters, digits, `_-. `, optionally in up to 3 sub-folders (`anime/gapo_v1`); no `..`,
    no absolute path, no extension (`.safetensors` is added)."""
    name = name.strip().removesuffix(".safetensors")
    if not _NAME.match(name) or any(part in (".", "..") or part.endswith(".") for part in name.split("/")):
        raise ValueError(
            f"LoRA name {name!r} is not a plain file name: use letters, digits, '_', '-', '.' and spaces, "
            "optionally in sub-folders like 'anime/gapo_v1'"
        )
    return name


def lora_path(loras_dir: Path, name: str, overwrite: bool = False) -> Path:
    """`<loras_dir>/<name>.safetensors`, or with `_00002`, `_00003`… appended when taken and not overwriting."""
    name = check_lora_name(name)
    path = loras_dir / f"{name}.safetensors"
    counter = 2
    while path.exists() and not overwrite:
        path = loras_dir / f"{name}_{counter:05d}.safetensors"
        counter += 1
    return path


def metadata_strings(metadata: Mapping[str, Any]) -> dict[str, str]:
    """safetensors headers hold strings only: strings stay, anything else is stored as JSON."""
    return {f"{META_PREFIX}{k}": v if isinstance(v, str) else json.dumps(v, sort_keys=True)
            for k, v in metadata.items()}


def read_metadata(path: Path) -> dict[str, Any]:
    """The trainer's metadata back from a LoRA file (JSON values decoded)."""
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        raw = f.metadata() or {}
    out: dict[str, Any] = {}
    for k, v in raw.items():
        if not k.startswith(META_PREFIX):
            continue
        try:
            out[k[len(META_PREFIX):]] = json.loads(v)
        except ValueError:
            out[k[len(META_PREFIX):]] = v
    return out


def write_lora(state: Mapping[str, torch.Tensor], path: Path, metadata: Mapping[str, Any]) -> Path:
    """Write atomically (a temporary file renamed into place), so a crash never leaves half a LoRA that
    the loader list would show."""
    import safetensors.torch

    path.parent.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in state.items()}
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        safetensors.torch.save_file(tensors, str(tmp), metadata=metadata_strings(metadata))
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path
