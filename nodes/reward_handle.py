"""The object on an ANIMEREWARD wire: the library's AnimeReward, with its weights under ComfyUI's model
management.

Scorers are built on the offload device and wrapped in ComfyUI model patchers the first time they run;
before each forward, `load_models_gpu` brings the scorer onto the GPU, evicting (or being evicted by) the
video model as VRAM demands, and counting it in ComfyUI's memory estimates. Nothing is kept in a private cache:
the handle lives as long as ComfyUI caches the loader node's output.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from .comfy_compat import make_model_patcher

log = logging.getLogger("AnimeReward")

# Working memory asked of model management per scorer forward, on top of the weights.
ACTIVATION_BYTES = 768 * 1024**2


class ManagedScorer(torch.nn.Module):
    """The container ComfyUI's model patcher manages: it sets attributes such as `device` on the module it
    is given, which some scorers (transformers models) expose as read-only properties."""

    def __init__(self, scorer: torch.nn.Module) -> None:
        super().__init__()
        self.scorer = scorer


@dataclass
class RewardHandle:
    reward: Any  # animereward.AnimeReward (imported lazily)
    root: Path | None
    skipped: dict[str, list[str]] = field(default_factory=dict)  # dimension → missing files, skipped at load
    unmanaged: frozenset[str] = frozenset()  # quantised scorers: built on the GPU, never moved
    _patchers: dict[str, tuple[torch.nn.Module, Any]] = field(default_factory=dict, repr=False)

    @property
    def dimensions(self) -> tuple[str, ...]:
        return tuple(self.reward.dimensions)

    def before_forward(self, name: str, module: torch.nn.Module) -> None:
        """Ask ComfyUI to put this scorer on its load device (a no-op for weight-free metrics)."""
        if name in self.unmanaged or next(module.parameters(), None) is None:
            return
        import comfy.model_management as mm

        held = self._patchers.get(name)
        if held is None or held[0] is not module:  # first use, or reloaded after a release
            held = (module, make_model_patcher(ManagedScorer(module)))
            self._patchers[name] = held
        mm.load_models_gpu([held[1]], memory_required=ACTIVATION_BYTES)


def torch_dtype(choice: str) -> torch.dtype:
    """Loader dtype choice → torch dtype; 'auto' follows ComfyUI's own fp16/bf16 judgement for the device."""
    if choice == "fp32":
        return torch.float32
    if choice == "fp16":
        return torch.float16
    if choice == "bf16":
        return torch.bfloat16
    import comfy.model_management as mm

    device = mm.get_torch_device()
    if mm.should_use_bf16(device):
        return torch.bfloat16
    if mm.should_use_fp16(device):
        return torch.float16
    return torch.float32
