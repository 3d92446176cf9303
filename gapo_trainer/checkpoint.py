"""Training checkpoints on disk: tensors in safetensors, everything else in JSON, nothing pickled.

A checkpoint is one folder `<root>/step-000120/` holding
  lora.safetensors    the LoRA in ComfyUI's key format (loadable by ComfyUI as it is)
  state.safetensors   optimizer tensors and RNG states
  state.json          step, config, pair order, optimizer scalars, schedule, loss history
written into a temporary folder first and renamed, so a crash never leaves a half-written checkpoint under a
step name. Older checkpoints beyond `keep` are pruned.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

FORMAT_VERSION = 1
LORA_FILE = "lora.safetensors"
STATE_FILE = "state.safetensors"
META_FILE = "state.json"
_STEP_DIR = re.compile(r"step-(\d{6,})")


class CheckpointError(ValueError):
    """A checkpoint that cannot be read or does not fit the run; the message names the folder."""


@dataclass
class Checkpoint:
    path: Path
    lora: dict[str, torch.Tensor]
    tensors: dict[str, torch.Tensor]
    meta: dict[str, Any]

    @property
    def step(self) -> int:
        return int(self.meta["step"])


def step_dir(root: Path, step: int) -> Path:
    return Path(root) / f"step-{step:06d}"


def _cpu(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v.detach().to("cpu").contiguous().clone() for k, v in tensors.items()}


def write_checkpoint(root: Path, step: int, lora: dict[str, torch.Tensor], tensors: dict[str, torch.Tensor],
                     meta: dict[str, Any], keep: int = 2) -> Path:
    """Write step `step` atomically under `root` and prune all but the newest `keep` (0 = keep all)."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    final = step_dir(root, step)
    tmp = root / f".tmp-{final.name}-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    save_file(_cpu(lora), str(tmp / LORA_FILE), metadata={"format": "pt"})
    save_file(_cpu(tensors), str(tmp / STATE_FILE), metadata={"format": "pt"})
    (tmp / META_FILE).write_text(json.dumps({"format_version": FORMAT_VERSION, "step": step, **meta}, indent=1))
    if final.exists():
        shutil.rmtree(final)
    os.replace(tmp, final)
    if keep > 0:
        for old in list_checkpoints(root)[:-keep]:
            shutil.rmtree(old, ignore_errors=True)
    return final


def list_checkpoints(root: Path) -> list[Path]:
    """Complete checkpoint folders under `root`, oldest first."""
    root = Path(root)
    if not root.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in root.iterdir() if (m := _STEP_DIR.fullmatch(p.name)) and (p / META_FILE).is_file()]
    return [p for _, p in sorted(found)]


def resolve_checkpoint(path: Path) -> Path:
    """A checkpoint folder itself, or the newest one inside a checkpoint root."""
    path = Path(path)
    if (path / META_FILE).is_file():
        return path
    found = list_checkpoints(path)
    if not found:
        raise CheckpointError(f"no training checkpoint in {path} (expected step-NNNNNN folders with {META_FILE})")
    return found[-1]


def read_checkpoint(path: Path) -> Checkpoint:
    path = resolve_checkpoint(path)
    try:
        meta = json.loads((path / META_FILE).read_text())
        lora = load_file(str(path / LORA_FILE))
        tensors = load_file(str(path / STATE_FILE))
    except (OSError, ValueError) as exc:  # safetensors raises its own errors as ValueError subclasses too
        raise CheckpointError(f"training checkpoint {path} cannot be read: {exc}") from exc
    except Exception as exc:  # e.g. safetensors_rust.SafetensorError on a truncated file
        raise CheckpointError(f"training checkpoint {path} cannot be read: {exc}") from exc
    if meta.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(f"training checkpoint {path} has format {meta.get('format_version')}, expected {FORMAT_VERSION}")
    return Checkpoint(path=path, lora=lora, tensors=tensors, meta=meta)


def optimizer_to_parts(optimizer: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Split an optimizer state_dict into tensors (for safetensors) and JSON-able rest."""
    sd = optimizer.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for idx, state in sd["state"].items():
        for key, value in state.items():
            if torch.is_tensor(value):
                tensors[f"optimizer.{idx}.{key}"] = value
            else:
                scalars.setdefault(str(idx), {})[key] = value
    return tensors, {"param_groups": sd["param_groups"], "scalars": scalars}


def optimizer_from_parts(optimizer: torch.optim.Optimizer, tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
    state: dict[int, dict[str, Any]] = {}
    for key, value in tensors.items():
        if key.startswith("optimizer."):
            _, idx, name = key.split(".", 2)
            state.setdefault(int(idx), {})[name] = value
    for idx, values in meta["scalars"].items():
        state.setdefault(int(idx), {}).update(values)
    groups = []
    for group in meta["param_groups"]:
        group = dict(group)
        if isinstance(group.get("betas"), list):
            group["betas"] = tuple(group["betas"])
        groups.append(group)
    optimizer.load_state_dict({"state": state, "param_groups": groups})
