"""Non-reentrant gradient checkpointing of a model's blocks, for Denoiser implementations.

Each block's activations are dropped after its forward and recomputed in the backward. Non-reentrant mode is
required: with reentrant checkpointing and frozen block inputs (only LoRA weights train) no gradient flows.
LoRA hooks inside a block run again in the recomputation, and the RNG state is replayed, so dropout masks
match.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

_ORIGINAL = "_gapo_original_forward"


def checkpoint_modules(modules: Iterable[nn.Module], enabled: bool = True) -> int:
    """Switch checkpointing of each module's forward on or off (idempotent); returns how many changed.

    Only forwards run with gradients enabled are checkpointed; no-grad forwards (the reference) run as is."""
    changed = 0
    for module in modules:
        wrapped = _ORIGINAL in module.__dict__
        if enabled and not wrapped:
            original = module.forward

            def forward(*args: Any, _original=original, **kwargs: Any) -> Any:
                if torch.is_grad_enabled():
                    return checkpoint(_original, *args, use_reentrant=False, **kwargs)
                return _original(*args, **kwargs)

            module.__dict__[_ORIGINAL] = original
            module.forward = forward
            changed += 1
        elif not enabled and wrapped:
            del module.forward
            del module.__dict__[_ORIGINAL]
            changed += 1
    return changed
