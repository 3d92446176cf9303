"""The synthetic cel-clip generator: layout, determinism, and that each defect does what it says."""

from __future__ import annotations

import pytest
import torch

from animereward.synthetic_clips import DEFECTS, defect_suite, make_clip


def test_layout_and_range() -> None:
    clip = make_clip(0, frames=7, height=40, width=64)
    assert clip.shape == (7, 40, 64, 3) and clip.dtype == torch.float32
    assert float(clip.min()) >= 0.0 and float(clip.max()) <= 1.0
    assert clip.std() > 0.05  # not a blank picture
    assert make_clip(0, frames=1, height=2, width=2).shape == (1, 2, 2, 3)


def test_deterministic_by_seed() -> None:
    for defects in ((), ("jitter", "flicker"), ("freeze", "distortion")):
        assert torch.equal(make_clip(5, frames=6, defects=defects), make_clip(5, frames=6, defects=defects))
    assert not torch.equal(make_clip(5, frames=6), make_clip(6, frames=6))


def test_defects_keep_the_scene_and_change_the_motion() -> None:
    suite = defect_suite(4, frames=12, height=48, width=80)
    assert set(suite) == {"clean", *DEFECTS}
    clean = suite["clean"]
    consecutive_equal = lambda c: [bool(torch.equal(c[i], c[i + 1])) for i in range(len(c) - 1)]  # noqa: E731
    assert not any(consecutive_equal(clean))
    # static: every frame is the first clean frame
    assert all(torch.equal(f, clean[0]) for f in suite["static"])
    # freeze: held frames, then the motion continues from where it had got to (the last frame is the clean one)
    assert sum(consecutive_equal(suite["freeze"])) >= 2 and torch.equal(suite["freeze"][-1], clean[-1])
    assert torch.equal(suite["freeze"][0], clean[0])
    # flicker: same picture, brightness changes frame to frame
    ratio = suite["flicker"].mean(dim=(1, 2, 3)) / clean.mean(dim=(1, 2, 3))
    assert ratio.std() > 0.03
    # jitter and distortion: every frame differs from the clean one, the scene (colours) stays
    for d in ("jitter", "distortion"):
        assert all(not torch.equal(a, b) for a, b in zip(suite[d][1:], clean[1:], strict=True))
        assert (suite[d].mean(dim=(0, 1, 2)) - clean.mean(dim=(0, 1, 2))).abs().max() < 0.05


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="unknown defect"):
        make_clip(0, defects=["blur"])
    with pytest.raises(ValueError, match="at least"):
        make_clip(0, frames=0)
