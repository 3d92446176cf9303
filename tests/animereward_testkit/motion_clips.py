"""Clips where SAMURAI's motion model matters (fast motion, occlusion), with their drawn ground-truth masks,
and a small SAM2 video model whose random weights give varied proposals (for the SAMURAI tests and bench)."""

from __future__ import annotations

import math

import numpy as np
import torch

from animereward.samurai import KalmanBoxFilter, ObjectMotion, SamuraiConfig, choose_mask, proposal_box
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


def crossing_simulation(draws: int = 20, frames: int = 40, seed: int = 0) -> tuple[float, float, float, float]:
    """SAMURAI's mask-choice rule alone (no SAM2) where two characters cross: each frame offers the target's
    mask, the other character's and their union, with made-up predicted IoUs 0.70 / 0.65 / 0.45 + N(0, 0.08).
    Mean IoU with the target of the proposal plain SAM2's rule (best predicted IoU) and SAMURAI's
    `choose_mask` (official config) choose: over frames 1.., and over frames 16.. (SAMURAI's motion phase)."""
    target = [draw_at("Akane", 14 + 3 * t, 64)[1] for t in range(frames)]
    other = [draw_at("Bo", 114 - 3 * t, 60)[1] for t in range(frames)]
    proposals = [(a, b, a | b) for a, b in zip(target, other, strict=True)]
    boxes = [[proposal_box(torch.from_numpy(p.astype(np.float32)) - 0.5, S) for p in props] for props in proposals]
    cfg, kf = SamuraiConfig(), KalmanBoxFilter()
    rng = np.random.default_rng(seed)
    chosen_iou: dict[str, list[float]] = {"plain": [], "samurai": [], "plain late": [], "samurai late": []}
    for _ in range(draws):
        motion = ObjectMotion()
        for t in range(1, frames):
            ious = np.clip(np.array([0.70, 0.65, 0.45]) + rng.normal(0, 0.08, 3), 0, 1)
            for name, index in (("plain", int(np.argmax(ious))),
                                ("samurai", choose_mask(motion, ious, boxes[t].__getitem__, cfg, kf).index)):
                iou = mask_iou(proposals[t][index], target[t])
                chosen_iou[name].append(iou)
                if t >= 16:
                    chosen_iou[f"{name} late"].append(iou)
    return tuple(float(np.mean(chosen_iou[k])) for k in ("plain", "samurai", "plain late", "samurai late"))
