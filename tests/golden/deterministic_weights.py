"""Deterministic pseudo-random weights for the golden-output tests.

Golden outputs are produced once by running the official implementation (outside this repo) on weights
from this function, and our port is checked against them on the same weights. So the recipe must be
reproducible without the official code: every tensor depends only on (seed, key name, shape), never on
dict order or on the torch global RNG.

Recipe, per key: `g = torch.Generator().manual_seed(zlib.crc32(f"{seed}:{key}".encode()))`,
`noise = torch.randn(shape, generator=g, dtype=float32)`; the tensor is `0.02 * noise`, except LayerNorm
weights (names ending in `ln_*.weight`, `norm*.weight` or `LayerNorm.weight`), which are `1 + 0.02 * noise`
so that normalised activations keep their scale.
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Mapping, Sequence

import torch

STD = 0.02

# The module name (second-to-last component) of a LayerNorm weight: ln_1, ln_pre, ln_final, norm, norm1,
# LayerNorm, ... The last component must be `weight` (biases stay around zero).
_NORM_WEIGHT = re.compile(r"(?:^|\.)(?:ln_\w+|norm\w*|LayerNorm)\.weight$")


def is_norm_weight(key: str) -> bool:
    """True for the LayerNorm weights that the recipe centres on 1 instead of 0."""
    return _NORM_WEIGHT.search(key) is not None


def deterministic_tensor(key: str, shape: Sequence[int], seed: int) -> torch.Tensor:
    """The recipe's float32 tensor for one key (see the module docstring)."""
    gen = torch.Generator().manual_seed(zlib.crc32(f"{seed}:{key}".encode()))
    noise = torch.randn(tuple(int(s) for s in shape), generator=gen, dtype=torch.float32)
    if is_norm_weight(key):
        return 1.0 + STD * noise
    return STD * noise


def deterministic_state_dict(shapes: Mapping[str, Sequence[int]], seed: int) -> dict[str, torch.Tensor]:
    """A full state dict (float32, CPU) with the given key names and shapes, reproducible from `seed`."""
    return {key: deterministic_tensor(key, shape, seed) for key, shape in shapes.items()}
