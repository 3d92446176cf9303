"""Clips where SAMURAI's motion model matters (fast motion, occlusion), with their drawn ground-truth masks,
and a small SAM2 video model whose random weights give varied proposals (for the SAMURAI tests and bench)."""

from __future__ import annotations

import math

import numpy as np
import torch

from animereward_testkit.characters import CHARACTERS, S, small_tracker


def draw_at(name: str, cx: float, cy: float, size: int = S, radius: int = 20,
            bg: int = 128) -> tuple[np.ndarray, np.ndarray]:
    """uint8 RGB frame [size,size,3] with one drawn character centred at (cx, cy), and its boolean mask."""
    body, accent, shape = CHARACTERS[name]
    img = np.full((size, size, 3), bg, np.uint8)
    yy, xx = np.mgrid[:size, :size]
    if shape == "disc":
        m = (yy - cy) ** 2 + (xx - cx) ** 2 < radius**2
        acc = m & (yy < cy - radius // 2)
    else:
        m = (abs(yy - cy) < radius) & (abs(xx - cx) < radius * 2 // 3)
        acc = m & (abs(yy - cy) < radius // 4)
    img[m] = body
    img[acc] = accent
    return img, m


def fast_motion_clip(frames: int = 24, step: float = 9.0, size: int = S) -> tuple[np.ndarray, np.ndarray]:
    """A disc that crosses the frame and bounces back, `step` pixels a frame (a radius is 20): frames, masks."""
    lo, hi = 24.0, size - 24.0
    out = []
    x = lo
    v = step
    for _ in range(frames):
        out.append(draw_at("Akane", x, size / 2 + 10 * math.sin(x / 17)))
        if not lo <= x + v <= hi:
            v = -v
        x += v
    imgs, masks = zip(*out, strict=True)
    return np.stack(imgs), np.stack(masks)


def occlusion_clip(frames: int = 24, size: int = S, step: float = 4.0,
                   wall: tuple[int, int] = (50, 106)) -> tuple[np.ndarray, np.ndarray]:
    """A disc walking right, `step` pixels a frame, behind a darker wall (columns wall[0]..wall[1]-1) that
    hides it partly, then fully (5 frames with the defaults), then partly again.

    The ground-truth mask is the visible part of the character (empty while it is fully hidden).
    """
    imgs, masks = [], []
    for t in range(frames):
        img, m = draw_at("Akane", 14 + step * t, size / 2)
        img[:, wall[0]:wall[1]] = 90
        m[:, wall[0]:wall[1]] = False
        imgs.append(img)
        masks.append(m)
    return np.stack(imgs), np.stack(masks)


def lively_tracker(seed: int = 0):
    """`small_tracker()` with every weight redrawn (fan-in scaled, biases N(0, 0.1)), so that its three mask
    proposals, predicted IoUs and object scores differ from frame to frame (the default init gives near-constant
    heads). Random weights: the masks say nothing about tracking quality."""
    model, proc = small_tracker()
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.dim() >= 2:
                p.copy_(torch.randn(p.shape, generator=g) / math.sqrt(p[0].numel()))
            elif not (name.endswith("weight") and "norm" in name):
                p.copy_(torch.randn(p.shape, generator=g) * 0.1)
    return model, proc


def mask_iou(a: np.ndarray, b: np.ndarray) -> float:
    """IoU of two boolean masks; two empty masks agree (1.0)."""
    union = np.logical_or(a, b).sum()
    return 1.0 if union == 0 else float(np.logical_and(a, b).sum() / union)
