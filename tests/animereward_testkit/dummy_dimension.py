"""A weight-free dummy dimension: the mean brightness of the official 24-frame sample, in [0, 1]."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

DIMENSION = "dummy_brightness"
SHORT_LABEL = "dummy-bright"
DEFAULT_WEIGHT = 2.0


class DummyBrightness(nn.Module):
    name = DIMENSION

    def preprocess(self, batch: Any) -> dict[str, torch.Tensor]:
        return {"means": torch.stack([f.float().mean() for f in batch.frames])}

    def forward(self, means: torch.Tensor) -> torch.Tensor:
        return means.clamp(0.0, 1.0)


def build_scorer(dimension: str, weights: Any = None, **_: Any) -> nn.Module:
    return DummyBrightness()


def dummy_dimension(dimension_cls: type) -> Any:
    """The registry entry, built with the `Dimension` class of the registry it goes into (inside ComfyUI the
    pack's copy of the library, in plain tests the `animereward` package)."""
    return dimension_cls(DIMENSION, None, "appearance", "Dummy brightness", SHORT_LABEL,
                         needs_weights=False, scorer=build_scorer, default_weight=DEFAULT_WEIGHT)
