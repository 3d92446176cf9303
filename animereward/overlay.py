"""Score panels drawn onto frames: one bar per dimension with its value, and the total.

The panel is rendered once per clip with OpenCV (the scores are the same on every frame) and then
alpha-blended onto all frames of the clip in one tensor operation, so the cost per frame is one blend.
Sizes scale with the frame's short side, so the panel stays legible from 256 px to 1080 px frames.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import torch

from .dimensions import DIMENSIONS

POSITIONS = ("top-left", "top-right", "bottom-left", "bottom-right")

SHORT_LABELS = {
    "visual_smoothness": "smooth",
    "visual_motion": "motion",
    "visual_appeal": "appeal",
    "text_video_consistency": "text-vid",
    "image_video_consistency": "img-vid",
    "character_consistency": "character",
    "flow_smoothness": "flow-smooth",
    "flow_motion": "flow-motion",
}

_BAR_COLOURS = {  # RGB, by dimension group
    "appearance": (96, 180, 255),
    "consistency": (255, 190, 80),
    "flow": (140, 220, 140),
}


def _group_colour(name: str) -> tuple[int, int, int]:
    dim = DIMENSIONS.get(name)
    return _BAR_COLOURS.get(dim.group if dim else "flow", (200, 200, 200))


def panel_scale(frame_height: int, frame_width: int) -> float:
    """1.0 at a 480 px short side; never below 0.75, where OpenCV's Hershey font stops being readable."""
    return float(np.clip(min(frame_height, frame_width) / 480.0, 0.75, 2.4))


def render_panel(scores: Mapping[str, float], total: float | None, scale: float = 1.0,
                 title: str | None = None) -> np.ndarray:
    """RGBA uint8 panel: optional title, one labelled bar per score, and the total in bold."""
    import cv2

    font = cv2.FONT_HERSHEY_SIMPLEX
    fs = 0.45 * scale
    thick = max(1, round(1.2 * scale))
    row = max(10, round(18 * scale))
    pad = max(3, round(6 * scale))
    label_w = max(cv2.getTextSize(SHORT_LABELS.get(n, n), font, fs, thick)[0][0] for n in (*scores, "total"))
    bar_w = round(90 * scale)
    value_w = cv2.getTextSize("0.00", font, fs, thick)[0][0]
    rows = len(scores) + (1 if total is not None else 0) + (1 if title else 0)
    width = pad * 4 + label_w + bar_w + value_w
    height = pad * 2 + rows * row
    panel = np.zeros((height, width, 4), np.uint8)
    panel[..., :3] = (20, 20, 24)
    panel[..., 3] = 200
    y = pad
    white = (245, 245, 245, 255)

    def text(s: str, x: int, y_top: int, bold: bool = False) -> None:
        baseline = y_top + row - max(2, round(4 * scale))
        cv2.putText(panel, s, (x, baseline), font, fs, white, thick + (1 if bold else 0), cv2.LINE_AA)

    if title:
        text(title, pad, y, bold=True)
        y += row
    for name, value in scores.items():
        v = float(np.clip(value, 0.0, 1.0)) if np.isfinite(value) else 0.0
        text(SHORT_LABELS.get(name, name), pad, y)
        x0 = pad * 2 + label_w
        y0, y1 = y + round(row * 0.22), y + round(row * 0.78)
        cv2.rectangle(panel, (x0, y0), (x0 + bar_w, y1), (70, 70, 78, 255), -1)
        cv2.rectangle(panel, (x0, y0), (x0 + round(bar_w * v), y1), (*_group_colour(name), 255), -1)
        text(f"{value:.2f}", x0 + bar_w + pad, y)
        y += row
    if total is not None:
        text("total", pad, y, bold=True)
        x0 = pad * 2 + label_w
        v = float(np.clip(total, 0.0, 1.0))
        y0, y1 = y + round(row * 0.18), y + round(row * 0.82)
        cv2.rectangle(panel, (x0, y0), (x0 + bar_w, y1), (70, 70, 78, 255), -1)
        cv2.rectangle(panel, (x0, y0), (x0 + round(bar_w * v), y1), (255, 255, 255, 255), -1)
        text(f"{total:.2f}", x0 + bar_w + pad, y, bold=True)
    return panel


def _drawable(frames: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(a new float RGB tensor to draw on, the alpha channel as float [T,H,W,1] or None).

    Takes every clip Score takes: C = 3, 4 (alpha kept beside) or 1 (grey becomes RGB: the panel has
    colour), float in 0..1 or uint8 in 0..255. RGB float frames keep their dtype; others become float32.
    """
    from .clip_validation import to_rgb01

    if frames.ndim != 4 or frames.shape[-1] not in (1, 3, 4):
        raise ValueError(f"frames: expected [T,H,W,C] with C = 3, 4 or 1, got shape {tuple(frames.shape)}")
    c = frames.shape[-1]
    if c == 3 and frames.is_floating_point():
        return frames.clone(), None
    alpha = None
    if c == 4:
        alpha = frames[..., 3:].to(torch.float32, copy=True)  # written into below: never the input's memory
        if frames.dtype == torch.uint8:
            alpha /= 255.0
    return to_rgb01(frames, "frames", clamp=True), alpha


def blend_panel(frames: torch.Tensor, panel: np.ndarray, position: str = "top-left",
                opacity: float = 0.85) -> torch.Tensor:
    """Alpha-blend an RGBA panel onto every frame of [T,H,W,C] frames (returns a new tensor; see `_drawable`
    for C and dtypes; RGBA frames stay RGBA, the panel made opaque where it is drawn)."""
    if position not in POSITIONS:
        raise ValueError(f"position must be one of {POSITIONS}, got {position!r}")
    out, alpha_ch = _drawable(frames)
    _, h, w, _ = out.shape
    margin = max(2, round(8 * panel_scale(h, w)))
    ph, pw = min(panel.shape[0], h - margin), min(panel.shape[1], w - margin)
    if ph <= 0 or pw <= 0:
        return out if alpha_ch is None else torch.cat([out, alpha_ch], dim=-1)
    patch = torch.from_numpy(panel[:ph, :pw]).to(device=out.device, dtype=torch.float32) / 255.0
    y0 = margin if position.startswith("top") else h - ph - margin
    x0 = margin if position.endswith("left") else w - pw - margin
    region = out[:, y0:y0 + ph, x0:x0 + pw, :].float()
    alpha = patch[..., 3:] * float(np.clip(opacity, 0.0, 1.0))
    out[:, y0:y0 + ph, x0:x0 + pw, :] = (region * (1 - alpha) + patch[..., :3] * alpha).to(out.dtype)
    if alpha_ch is None:
        return out
    a = alpha_ch[:, y0:y0 + ph, x0:x0 + pw, :]
    alpha_ch[:, y0:y0 + ph, x0:x0 + pw, :] = a + alpha * (1 - a)  # the panel shows on transparent frames too
    return torch.cat([out, alpha_ch.to(out.dtype)], dim=-1)


def draw_scores(frames: torch.Tensor, scores: Mapping[str, float], total: float | None,
                position: str = "top-left", opacity: float = 0.85, title: str | None = None) -> torch.Tensor:
    """Frames [T,H,W,C] with the score panel drawn on each."""
    scale = panel_scale(frames.shape[1], frames.shape[2])
    return blend_panel(frames, render_panel(scores, total, scale, title), position, opacity)
