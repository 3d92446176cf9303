"""Inputs of the ActionCLIP golden cases, shared by the test and the (out-of-repo) script that ran the
official model on them. Everything here is reproducible from fixed seeds; see README.md beside this file.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

# Seed of `tests.golden.deterministic_weights.deterministic_state_dict` for the ActionCLIP state dict.
WEIGHTS_SEED = 1234
# `meta` of the mmengine-style checkpoint the tests write: plain types only (weights_only-loadable).
CHECKPOINT_META = {"mmengine_version": "0.10.7", "epoch": 1, "iter": 1, "seed": WEIGHTS_SEED}


@dataclass(frozen=True)
class FrameCase:
    """A clip of T uint8 RGB frames of H×W: a random colour per frame plus pixel noise (seeded)."""

    name: str
    num_frames: int
    height: int
    width: int
    seed: int


# T < 8 (motion indices repeat frames), T = 1, T = 24 (all frames sampled), T = 300 (24 of the first 144).
FRAME_CASES: tuple[FrameCase, ...] = (
    FrameCase("t1_40x30", 1, 40, 30, 101),
    FrameCase("t5_48x64", 5, 48, 64, 102),
    FrameCase("t24_64x64", 24, 64, 64, 103),
    FrameCase("t300_36x64", 300, 36, 64, 104),
)

# Two already-normalised clips of 8 frames fed straight to `encode_video` (checks the model alone).
# Frames differ by a per-frame colour offset: with std-0.02 random weights, frames of i.i.d. pixel noise
# give near-identical CLS features (cos > 0.99), and then frame order, the adapter's position embeddings
# and its attention layout would barely move the score. With the offsets, reversing the 8 frames or
# running the adapter in the wrong layout moves the score by ~7e-4 and ~5e-3 (checked on the official model).
MODEL_ONLY_SEED = 105
MODEL_ONLY_SHAPE = (2, 8, 3, 224, 224)


def case_frames(case: FrameCase) -> torch.Tensor:
    """uint8 [T,H,W,3] = clamp(colour[T,1,1,3] in 0..255 + noise[T,H,W,3] in -40..40), from one generator."""
    gen = torch.Generator().manual_seed(case.seed)
    t, h, w = case.num_frames, case.height, case.width
    colour = torch.randint(0, 256, (t, 1, 1, 3), generator=gen, dtype=torch.int64)
    noise = torch.randint(-40, 41, (t, h, w, 3), generator=gen, dtype=torch.int64)
    return (colour + noise).clamp(0, 255).to(torch.uint8)


def model_only_video() -> torch.Tensor:
    """float32 [2,8,3,224,224] = randn[2,8,3,1,1] + 0.5 * randn[2,8,3,224,224], one seeded generator."""
    gen = torch.Generator().manual_seed(MODEL_ONLY_SEED)
    offset = torch.randn((*MODEL_ONLY_SHAPE[:3], 1, 1), generator=gen, dtype=torch.float32)
    return offset + 0.5 * torch.randn(MODEL_ONLY_SHAPE, generator=gen, dtype=torch.float32)
