"""A contact sheet for best-of-N: one row per candidate (best first), a few frames each, with its panel."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import torch

from .clip_validation import to_rgb01
from .overlay import render_panel


def thumbnail_indices(num_frames: int, per_row: int) -> list[int]:
    """Evenly spaced frame indices including the first and the last frame."""
    per_row = max(1, min(per_row, num_frames))
    return torch.linspace(0, num_frames - 1, per_row).round().long().tolist()


def contact_sheet(clips: torch.Tensor, order: Sequence[int], scores: Sequence[Mapping[str, float | None]],
                  totals: Sequence[float | None], frames_per_row: int = 4, thumb_height: int = 256,
                  gap: int = 4, titles: Sequence[str] | None = None) -> torch.Tensor:
    """clips [N,T,H,W,C] → one RGB image; row r = candidate order[r]: its score panel, then k frames.

    C is 3, 4 (alpha dropped, as the scorers do) or 1 (grey shown as grey); any dtype Score accepts (uint8
    is read as 0..255). The panel sits in its own column so it covers none of the frames being compared.
    `titles` (one per row, in `order`) replaces the default "#rank  clip c" panel titles.
    """
    import cv2

    n, t, h, w, c = clips.shape
    idx = thumbnail_indices(t, frames_per_row)
    th = min(thumb_height, h)
    tw = max(1, round(w * th / h))
    k = len(idx)
    # one gather of the N·k shown frames (best first), not a copy of every frame of every clip
    rows = (torch.tensor(list(order))[:, None] * t + torch.tensor(idx)[None, :]).reshape(-1)
    picked = clips.reshape(n * t, h, w, c).index_select(0, rows.to(clips.device)).cpu()
    picked = to_rgb01(picked, "clips", clamp=True)  # float32 RGB 0..1 of the shown frames only
    panels = [_fit_panel(scores[c], totals[c], titles[rank] if titles else f"#{rank + 1}  clip {c}", th)
              for rank, c in enumerate(order)]
    pw = max(p.shape[1] for p in panels)
    rh = max(th, *(p.shape[0] for p in panels))  # tiny thumbnails: the panel's minimum size sets the row
    sheet = np.full((n * rh + (n - 1) * gap, pw + gap + k * (tw + gap) - gap, 3), 0.08, dtype=np.float32)
    frames = picked.contiguous().numpy()
    for rank, panel in enumerate(panels):
        y = rank * (rh + gap)
        sheet[y:y + panel.shape[0], :panel.shape[1]] = panel[..., :3] / 255.0
        for j in range(k):  # each thumbnail is written straight into its cell
            x = pw + gap + j * (tw + gap)
            f = frames[rank * k + j]
            # INTER_AREA: an exact box filter, much faster on a CPU than antialiased interpolate (cost per
            # frame: python -m bench nodes)
            sheet[y:y + th, x:x + tw] = f if (th, tw) == (h, w) else cv2.resize(
                f, (tw, th), interpolation=cv2.INTER_AREA)
    np.clip(sheet, 0.0, 1.0, out=sheet)
    return torch.from_numpy(sheet).unsqueeze(0)


def _fit_panel(scores: Mapping[str, float | None], total: float | None, title: str, height: int) -> np.ndarray:
    """Render the panel at the largest scale (up to 1.6) whose height fits the thumbnail row."""
    panel = render_panel(scores, total, 1.0, title)
    scale = min(1.6, height / panel.shape[0])
    return panel if abs(scale - 1.0) < 1e-3 else render_panel(scores, total, scale, title)
