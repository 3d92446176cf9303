"""Learning-rate schedule (linear warm-up, then cosine or constant) and the optimizer choice.

The schedule is a pure function of the step, so a checkpoint only needs the step to resume it exactly.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Literal

import torch

ScheduleName = Literal["cosine", "constant"]
OptimizerName = Literal["auto", "adamw", "adamw8bit"]


def lr_at(step: int, base_lr: float, total_steps: int, warmup_steps: int = 0,
          schedule: ScheduleName = "cosine", min_lr_ratio: float = 0.0) -> float:
    """The learning rate of optimizer step `step` (0-based) of `total_steps`."""
    if warmup_steps > 0 and step < warmup_steps:
        return base_lr * (step + 1) / warmup_steps
    if schedule == "constant":
        return base_lr
    if schedule != "cosine":
        raise ValueError(f"unknown schedule {schedule!r}; choose cosine or constant")
    span = max(total_steps - warmup_steps, 1)
    progress = min(max(step - warmup_steps, 0) / span, 1.0)
    floor = base_lr * min_lr_ratio
    return floor + (base_lr - floor) * 0.5 * (1.0 + math.cos(math.pi * progress))


def bitsandbytes_usable(device: torch.device) -> bool:
    """8-bit AdamW needs CUDA and an importable bitsandbytes (never a hard dependency)."""
    if device.type != "cuda":
        return False
    try:
        import bitsandbytes  # noqa: F401
    except Exception:  # a broken bitsandbytes install must not stop training with plain AdamW
        return False
    return True


def resolve_optimizer(name: OptimizerName, device: torch.device) -> Literal["adamw", "adamw8bit"]:
    if name == "auto":
        return "adamw8bit" if bitsandbytes_usable(device) else "adamw"
    if name == "adamw8bit" and not bitsandbytes_usable(device):
        raise ValueError("optimizer 'adamw8bit' needs a CUDA device and bitsandbytes; use 'adamw' or 'auto'")
    if name not in ("adamw", "adamw8bit"):
        raise ValueError(f"unknown optimizer {name!r}; choose auto, adamw or adamw8bit")
    return name


def build_optimizer(name: Literal["adamw", "adamw8bit"], params: Iterable[torch.nn.Parameter], lr: float,
                    weight_decay: float, betas: tuple[float, float], eps: float) -> torch.optim.Optimizer:
    params = list(params)
    if name == "adamw8bit":
        import bitsandbytes as bnb

        return bnb.optim.AdamW8bit(params, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay)
    return torch.optim.AdamW(params, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay)
