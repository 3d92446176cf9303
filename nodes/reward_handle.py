"""The object on an ANIMEREWARD wire: the library's AnimeReward, with its weights under ComfyUI's model
management, and the hooks a node passes to each scoring call.

Scorers are built on the offload device and wrapped in ComfyUI model patchers the first time they run;
before each forward, `load_models_gpu` brings the scorer onto the GPU, evicting (or being evicted by) the
video model as VRAM demands, and counting it in ComfyUI's memory estimates. Nothing is kept in a private cache:
the handle lives as long as ComfyUI caches the loader node's output.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import comfy.model_management as mm
import comfy.utils
import torch

from ..animereward.scorer_protocol import DEFAULT_BATCH_SIZE
from .comfy_compat import check_interrupt, make_model_patcher

if TYPE_CHECKING:  # the library is imported when a node first runs, not when ComfyUI lists the nodes
    from ..animereward.hooks import BatchShape
    from ..animereward.reward import AnimeReward

log = logging.getLogger("AnimeReward")

# Working memory asked of model management for one scorer forward, on top of its weights: a base plus a
# share per frame in the chunk, for 32-bit compute (16-bit: half). At the loader's default chunk (8 clips of
# 24 frames) this is 1 GiB, a little above the fixed 768 MiB asked before the estimate followed the chunk.
# Placeholders until bench/gpu_batch_size.py has run on a GPU (it prints the peak per frame to fit them).
ACTIVATION_BASE_BYTES = 256 * 1024**2
ACTIVATION_BYTES_PER_FRAME = 4 * 1024**2


def activation_bytes(shape: BatchShape, dtype: torch.dtype) -> int:
    """Working memory to ask for a forward over `shape` in `dtype` (see the constants above)."""
    per_frame = ACTIVATION_BYTES_PER_FRAME * (2 if dtype.itemsize <= 2 else 4) // 4
    return ACTIVATION_BASE_BYTES + per_frame * shape.total_frames


class ManagedScorer(torch.nn.Module):
    """The container ComfyUI's model patcher manages: it sets attributes such as `device` on the module it
    is given, which some scorers (transformers models) expose as read-only properties."""

    def __init__(self, scorer: torch.nn.Module) -> None:
        super().__init__()
        self.scorer = scorer


@dataclass
class RewardHandle:
    reward: AnimeReward
    root: Path | None
    skipped: dict[str, list[str]] = field(default_factory=dict)  # dimension → missing files, skipped at load
    unmanaged: frozenset[str] = frozenset()  # quantised scorers: built on the GPU, never moved
    batch_size: int = DEFAULT_BATCH_SIZE  # clips per forward (the loader's setting)
    _patchers: dict[str, tuple[torch.nn.Module, Any]] = field(default_factory=dict, repr=False)

    @property
    def dimensions(self) -> tuple[str, ...]:
        return tuple(self.reward.dimensions)

    def place(self, name: str, module: torch.nn.Module, shape: BatchShape) -> None:
        """Ask ComfyUI to put this scorer on its load device, with working memory for `shape` (a no-op for
        weight-free metrics and quantised scorers)."""
        if name in self.unmanaged or next(module.parameters(), None) is None:
            return
        held = self._patchers.get(name)
        if held is None or held[0] is not module:  # first use, or reloaded after a release
            held = (module, make_model_patcher(ManagedScorer(module)))
            self._patchers[name] = held
        mm.load_models_gpu([held[1]], memory_required=activation_bytes(shape, self.reward.dtype))


class NodeHooks:
    """The hooks of one node run: model management before each forward, a ProgressBar per clip and
    dimension, Cancel before each chunk."""

    def __init__(self, handle: RewardHandle, dims: list[str], clips: int, node_id: str | None) -> None:
        self.handle = handle
        self.order = {d: i for i, d in enumerate(dims)}
        self.clips = clips
        self.total = clips * len(dims)
        self.pbar = comfy.utils.ProgressBar(self.total, node_id=node_id)

    def before_forward(self, dimension: str, module: torch.nn.Module, shape: BatchShape) -> None:
        self.handle.place(dimension, module, shape)

    def progress(self, dimension: str, done: int, total: int) -> None:
        self.pbar.update_absolute(self.order.get(dimension, 0) * self.clips + done, self.total)

    def should_stop(self) -> None:
        check_interrupt()


def torch_dtype(choice: str) -> torch.dtype:
    """Loader dtype choice → torch dtype; 'auto' follows ComfyUI's own fp16/bf16 judgement for the device."""
    if choice == "fp32":
        return torch.float32
    if choice == "fp16":
        return torch.float16
    if choice == "bf16":
        return torch.bfloat16
    device = mm.get_torch_device()
    if mm.should_use_bf16(device):
        return torch.bfloat16
    if mm.should_use_fp16(device):
        return torch.float16
    return torch.float32
