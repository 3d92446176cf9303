"""Score panels drawn onto frames: one bar per dimension with its value, and the total.

The panel is rendered once per clip with OpenCV (the scores are the same on every frame) and then
alpha-blended onto all frames of the clip in one tensor operation, so the cost per frame is one blend.
Sizes scale with the frame's short side, so the panel stays legible from 256 px to 1080 px frames, and the
panel never takes more than MAX_PANEL_FRACTION of the frame's width or height (on small frames it is drawn
smaller). Position "auto" puts it in the corner where the clip shows least (least detail and motion), so it
does not cover the character.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import torch

from .cancel import check
from .dimensions import DIMENSIONS

CORNERS = ("top-left", "top-right", "bottom-left", "bottom-right")
POSITIONS = ("auto", *CORNERS)
MAX_PANEL_FRACTION = 0.42  # of the frame's width and of its height
MIN_SCALE = 0.5  # below this OpenCV's Hershey font is unreadable: shrink the rendered panel instead
SLICE_BYTES = 64 * 1024**2  # float32 bytes copied or blended between two Cancel checks


def short_label(name: str) -> str:
    """The registry's short label of a dimension; other names (e.g. "total") as they are."""
    dim = DIMENSIONS.get(name)
    return dim.short_label if dim else name


_BAR_COLOURS = {  # RGB, by dimension group
    "appearance": (96, 180, 255),
    "consistency": (255, 190, 80),
    "flow": (140, 220, 140),
}


def _group_colour(name: str) -> tuple[int, int, int]:
    dim = DIMENSIONS.get(name)
    return _BAR_COLOURS.get(dim.group if dim else "flow", (200, 200, 200))


def panel_scale(frame_height: int, frame_width: int) -> float:
    """1.0 at a 480 px short side, from 0.75 (small frames: the text stays readable) to 2.4."""
    return float(np.clip(min(frame_height, frame_width) / 480.0, 0.75, 2.4))


def panel_rows(scores: Mapping[str, float], unscored: Mapping[str, str] | None = None) -> dict[str, float | None]:
    """The panel's rows in registry order: each score, and None ("n/a") for a dimension without a score."""
    rows: dict[str, float | None] = {d: None for d in (unscored or {})}
    rows.update(scores)
    order = {d: i for i, d in enumerate(DIMENSIONS)}
    return dict(sorted(rows.items(), key=lambda kv: order.get(kv[0], len(order))))


def render_panel(scores: Mapping[str, float | None], total: float | None, scale: float = 1.0,
                 title: str | None = None) -> np.ndarray:
    """RGBA uint8 panel: optional title, one labelled bar per score ("n/a" and no bar for None), and the total
    in bold."""
    import cv2

    font = cv2.FONT_HERSHEY_SIMPLEX
    fs = 0.45 * scale
    thick = max(1, round(1.2 * scale))
    row = max(10, round(18 * scale))
    pad = max(3, round(6 * scale))
    label_w = max(cv2.getTextSize(short_label(n), font, fs, thick)[0][0] for n in (*scores, "total"))
    bar_w = round(90 * scale)
    value_w = cv2.getTextSize("0.00", font, fs, thick)[0][0]
    rows = len(scores) + (1 if total is not None else 0) + (1 if title else 0)
    width = pad * 4 + label_w + bar_w + value_w
    height = pad * 2 + rows * row
    panel = np.zeros((height, width, 4), np.uint8)
    panel[..., :3] = (20, 20, 24)
    panel[..., 3] = 235  # nearly opaque: text over a busy frame stays readable
    y = pad
    white = (245, 245, 245, 255)

    def text(s: str, x: int, y_top: int, bold: bool = False) -> None:
        baseline = y_top + row - max(2, round(4 * scale))
        cv2.putText(panel, s, (x, baseline), font, fs, white, thick + (1 if bold else 0), cv2.LINE_AA)

    if title:
        text(title, pad, y, bold=True)
        y += row
    for name, value in scores.items():
        if value is None:
            text(short_label(name), pad, y)
            text("n/a", pad * 2 + label_w + bar_w + pad, y)
            y += row
            continue
        v = float(np.clip(value, 0.0, 1.0)) if np.isfinite(value) else 0.0
        text(short_label(name), pad, y)
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


def _slice_frames(frames: torch.Tensor) -> int:
    """Frames per slice: about SLICE_BYTES of float32 RGB (at least one frame)."""
    return max(1, SLICE_BYTES // max(1, 12 * frames.shape[1] * frames.shape[2]))


def _drawable(frames: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(a new float RGB tensor to draw on, the alpha channel as float [T,H,W,1] or None).

    Takes every clip Score takes: C = 3, 4 (alpha kept beside) or 1 (grey becomes RGB: the panel has
    colour), float in 0..1 or uint8 in 0..255. RGB float frames keep their dtype; others become float32.
    """
    from .clip_validation import to_rgb01

    if frames.ndim != 4 or frames.shape[-1] not in (1, 3, 4):
        raise ValueError(f"frames: expected [T,H,W,C] with C = 3, 4 or 1, got shape {tuple(frames.shape)}")
    c = frames.shape[-1]
    keep = c == 3 and frames.is_floating_point()
    out = torch.empty((*frames.shape[:3], 3), dtype=frames.dtype if keep else torch.float32, device=frames.device)
    alpha = torch.empty((*frames.shape[:3], 1), dtype=torch.float32, device=frames.device) if c == 4 else None
    step = _slice_frames(frames)
    for t0 in range(0, frames.shape[0], step):  # a long clip is seconds of copying: Cancel between slices
        check()
        part = frames[t0:t0 + step]
        out[t0:t0 + step] = part if keep else to_rgb01(part, "frames", clamp=True)
        if alpha is not None:
            alpha[t0:t0 + step] = part[..., 3:].float() / (255.0 if frames.dtype == torch.uint8 else 1.0)
    return out, alpha


def frame_margin(frame_height: int, frame_width: int) -> int:
    """Gap between the panel and the frame's edges: 3 % of the short side."""
    return max(2, round(0.03 * min(frame_height, frame_width)))


def _corner_origin(corner: str, h: int, w: int, ph: int, pw: int, margin: int) -> tuple[int, int]:
    y0 = margin if corner.startswith("top") else h - ph - margin
    x0 = margin if corner.endswith("left") else w - pw - margin
    return y0, x0


def quietest_corner(frames: torch.Tensor, ph: int, pw: int, margin: int) -> str:
    """The corner whose panel-sized region shows least: lowest spatial detail plus temporal change of the
    luminance, on up to 8 frames spread over the clip (flat sky wins over a character)."""
    t, h, w = frames.shape[:3]
    idx = torch.linspace(0, t - 1, min(t, 8)).round().long().unique()
    grey = frames[idx, ..., :3].float().mean(dim=-1)
    best, best_cost = CORNERS[0], float("inf")
    for corner in CORNERS:
        y0, x0 = _corner_origin(corner, h, w, ph, pw, margin)
        region = grey[:, y0:y0 + ph, x0:x0 + pw]
        cost = float(region.std(dim=(1, 2)).mean())
        if region.shape[0] > 1:
            cost += float((region[1:] - region[:-1]).abs().mean())
        if cost < best_cost:
            best, best_cost = corner, cost
    return best


def fit_panel(panel: np.ndarray, frame_height: int, frame_width: int) -> np.ndarray:
    """Shrink a panel larger than MAX_PANEL_FRACTION of the frame (area resampling keeps it smooth)."""
    import cv2

    limit_h, limit_w = MAX_PANEL_FRACTION * frame_height, MAX_PANEL_FRACTION * frame_width
    f = min(1.0, limit_h / panel.shape[0], limit_w / panel.shape[1])
    if f >= 1.0:
        return panel
    size = (max(1, int(panel.shape[1] * f)), max(1, int(panel.shape[0] * f)))
    return cv2.resize(panel, size, interpolation=cv2.INTER_AREA)


def blend_panel(frames: torch.Tensor, panel: np.ndarray, position: str = "auto",
                opacity: float = 0.85) -> torch.Tensor:
    """Alpha-blend an RGBA panel onto every frame of [T,H,W,C] frames (returns a new tensor; see `_drawable`
    for C and dtypes; RGBA frames stay RGBA, the panel made opaque where it is drawn)."""
    if position not in POSITIONS:
        raise ValueError(f"position must be one of {POSITIONS}, got {position!r}")
    out, alpha_ch = _drawable(frames)
    _, h, w, _ = out.shape
    margin = frame_margin(h, w)
    panel = fit_panel(panel, h, w)
    ph, pw = min(panel.shape[0], h - margin), min(panel.shape[1], w - margin)
    if ph <= 0 or pw <= 0:
        return out if alpha_ch is None else torch.cat([out, alpha_ch], dim=-1)
    patch = torch.from_numpy(panel[:ph, :pw]).to(device=out.device, dtype=torch.float32) / 255.0
    corner = quietest_corner(out, ph, pw, margin) if position == "auto" else position
    y0, x0 = _corner_origin(corner, h, w, ph, pw, margin)
    alpha = patch[..., 3:] * float(np.clip(opacity, 0.0, 1.0))
    step = _slice_frames(out)
    for t0 in range(0, out.shape[0], step):  # in slices: bounded temporaries, Cancel between them
        check()
        region = out[t0:t0 + step, y0:y0 + ph, x0:x0 + pw, :].float()
        out[t0:t0 + step, y0:y0 + ph, x0:x0 + pw, :] = (
            region * (1 - alpha) + patch[..., :3] * alpha).to(out.dtype)
    if alpha_ch is None:
        return out
    a = alpha_ch[:, y0:y0 + ph, x0:x0 + pw, :]
    alpha_ch[:, y0:y0 + ph, x0:x0 + pw, :] = a + alpha * (1 - a)  # the panel shows on transparent frames too
    return torch.cat([out, alpha_ch.to(out.dtype)], dim=-1)


def draw_scores(frames: torch.Tensor, scores: Mapping[str, float], total: float | None,
                position: str = "auto", opacity: float = 0.85, title: str | None = None,
                unscored: Mapping[str, str] | None = None) -> torch.Tensor:
    """Frames [T,H,W,C] with the score panel drawn on each, at most MAX_PANEL_FRACTION of the frame;
    `unscored` dimensions get an "n/a" row."""
    scores = panel_rows(scores, unscored)
    h, w = frames.shape[1], frames.shape[2]
    scale = panel_scale(h, w)
    panel = render_panel(scores, total, scale, title)
    f = min(1.0, MAX_PANEL_FRACTION * h / panel.shape[0], MAX_PANEL_FRACTION * w / panel.shape[1])
    if f < 1.0:  # draw the text smaller rather than shrink the pixels, down to the smallest readable size
        panel = render_panel(scores, total, max(MIN_SCALE, scale * f), title)
    return blend_panel(frames, panel, position, opacity)
