"""animereward.preprocess against outputs of the official preprocessing (tests/golden/preprocess/README.md).

The official code was run on fixed seeded uint8 images: its frame-index block of `reward_infer.py` and its
`load_key_image` (torchvision Resize(BICUBIC) on a PIL image, ToTensor, CLIP Normalize).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from animereward.preprocess import (
    CLIP_MEAN,
    CLIP_STD,
    motion_frame_indices,
    preprocess_frames,
    sample_frame_indices,
    sampled_clip,
)

EXPECTED = json.loads((Path(__file__).resolve().parents[1] / "golden" / "preprocess" / "expected.json").read_text())


@pytest.mark.parametrize("num_frames", [1, 5, 24, 25, 144, 300])
def test_frame_indices(num_frames: int) -> None:
    idx = sample_frame_indices(num_frames)
    assert idx == EXPECTED["frame_indices"][str(num_frames)]
    assert motion_frame_indices(len(idx)) == EXPECTED["motion_indices"][str(num_frames)]


@pytest.mark.parametrize("case", EXPECTED["images"], ids=lambda c: "x".join(map(str, c["shape"][:2])))
def test_resize_and_normalise(case: dict) -> None:
    arr = np.random.default_rng(case["seed"]).integers(0, 256, size=tuple(case["shape"]), dtype=np.uint8)
    assert hashlib.sha256(arr.tobytes()).hexdigest() == case["input_sha256"]
    frames = torch.from_numpy(arr)[None].float() / 255.0  # ComfyUI IMAGE layout, exactly the uint8 values
    x = preprocess_frames(frames)[0]
    assert x.shape == (3, 224, 224) and x.dtype == torch.float32
    # Same resized uint8 image, bit for bit (PIL bicubic a=-0.5, rounded back to uint8).
    mean = torch.tensor(CLIP_MEAN, dtype=torch.float64).view(3, 1, 1)
    std = torch.tensor(CLIP_STD, dtype=torch.float64).view(3, 1, 1)
    u8 = ((x.double() * std + mean) * 255.0).round().to(torch.uint8).permute(1, 2, 0).contiguous().numpy()
    assert hashlib.sha256(u8.tobytes()).hexdigest() == case["resized_uint8_sha256"]
    # Same floats after normalisation.
    for c, y, xx, v in case["samples"]:
        assert abs(float(x[c, y, xx]) - v) < 1e-6
    assert abs(float(x.double().sum()) - case["sum"]) < 1e-3
    assert abs(float((x.double() ** 2).sum()) - case["sum_sq"]) < 1e-3


def test_sampled_clip_uses_official_indices() -> None:
    """sampled_clip = the official indices (here T=300: 24 of the first 144), then per-frame preprocessing."""
    frames = torch.from_numpy(np.random.default_rng(7).integers(0, 256, size=(300, 9, 11, 3), dtype=np.uint8)) / 255.0
    got = sampled_clip(frames.float())
    assert got.shape == (24, 3, 224, 224)
    assert torch.equal(got, preprocess_frames(frames.float()[EXPECTED["frame_indices"]["300"]]))
