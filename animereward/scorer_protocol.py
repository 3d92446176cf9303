"""The contract every dimension's scorer fulfils, so the facade can batch, time, move and release them alike.

A scorer is a `torch.nn.Module` (so ComfyUI's model management can wrap, count and offload it) with
preprocessing kept apart from the forward: the facade preprocesses once per clip batch, and the benchmark
times the bare forwards on the same preprocessed tensors.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import torch

from .clip_memo import ClipMemo

# Clips per batched forward unless the caller says otherwise (AnimeReward.score_batch, the Loader node's
# batch_size). Why 8: docs/batch-size.md.
DEFAULT_BATCH_SIZE = 8


@dataclass
class ClipBatch:
    """N validated clips. frames[i] is float32 [T,H,W,3] in 0..1 on the CPU (ComfyUI's IMAGE layout)."""

    frames: list[torch.Tensor]
    prompts: list[str | None] = field(default_factory=list)
    first_frames: list[torch.Tensor | None] = field(default_factory=list)  # each [H,W,3] or None
    # Results derived from these frames, shared by every scorer of one call (the facade gives all batches of
    # a call one memo; a batch made on its own gets its own).
    memo: ClipMemo = field(default_factory=ClipMemo)
    # Settings of the AnimeReward that scores them, for the scorers that read one (AnimeReward.settings, e.g.
    # character_consistency's gallery).
    settings: Mapping[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.frames)


class DimensionScorer(Protocol):
    name: str  # one of animereward.dimensions.DIMENSIONS

    def preprocess(self, batch: ClipBatch) -> dict[str, torch.Tensor]:
        """Model inputs for the whole batch, already on the module's device and dtype."""

    def forward(self, **inputs: torch.Tensor) -> torch.Tensor:
        """Scores in [0,1], shape [N], float32 (batched over the N clips in one call). A clip the scorer
        cannot score gets NaN, and the scorer's `last_reasons` (a list of N str | None, set by this call)
        says why: the facade reports it as not scored, with that reason, never as a number."""
