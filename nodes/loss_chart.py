"""The training chart as an IMAGE: loss, implicit accuracy and margin per step, one panel each.

Drawn with PIL only (no plotting library in the pack's requirements). The same series reach the page live as
`animereward.training` messages (web/js/gapo_chart.js); this image is what stays in the workflow's outputs.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

PANELS = (("loss", "loss", (31, 119, 180)), ("implicit_accuracy", "implicit accuracy", (44, 160, 44)),
          ("margin", "margin (DPO logit)", (214, 39, 40)))


def _fmt(v: float) -> str:
    return f"{v:.3g}"


def draw_chart(history: Sequence[dict], title: str, width: int = 720, panel_height: int = 150) -> torch.Tensor:
    """history: one dict per step with 'step' and the PANELS keys (None where an objective has none).
    Returns an IMAGE batch [1, H, W, 3] in [0, 1]."""
    import numpy as np
    from PIL import Image, ImageDraw, ImageFont

    font = ImageFont.load_default()
    margin_l, margin_r, top = 64, 16, 28
    height = top + len(PANELS) * (panel_height + 24) + 8
    img = Image.new("RGB", (width, height), (255, 255, 255))
    d = ImageDraw.Draw(img)
    d.text((margin_l, 8), title, fill=(0, 0, 0), font=font)
    steps = [int(h["step"]) for h in history]
    s_lo, s_hi = (min(steps), max(steps)) if steps else (0, 1)
    for i, (key, label, colour) in enumerate(PANELS):
        y0 = top + i * (panel_height + 24)
        y1 = y0 + panel_height
        x0, x1 = margin_l, width - margin_r
        d.rectangle([x0, y0, x1, y1], outline=(160, 160, 160))
        d.text((x0 + 4, y0 + 2), label, fill=colour, font=font)
        pts = [(int(h["step"]), float(h[key])) for h in history
               if h.get(key) is not None and math.isfinite(float(h[key]))]
        if not pts:
            d.text((x0 + 4, y0 + panel_height // 2), "(none for this objective)", fill=(120, 120, 120), font=font)
            continue
        lo, hi = min(v for _, v in pts), max(v for _, v in pts)
        if key == "implicit_accuracy":
            lo, hi = 0.0, 1.0
        if hi - lo < 1e-12:
            lo, hi = lo - 0.5, hi + 0.5
        d.text((4, y0), _fmt(hi), fill=(0, 0, 0), font=font)
        d.text((4, y1 - 10), _fmt(lo), fill=(0, 0, 0), font=font)
        if lo < 0 < hi:  # the zero line (margin): above it the model prefers the winner more than the reference
            yz = y1 - (0 - lo) / (hi - lo) * (panel_height - 8) - 4
            d.line([x0, yz, x1, yz], fill=(210, 210, 210))

        line = [(x0 + 4 + (s - s_lo) / max(1, s_hi - s_lo) * (x1 - x0 - 8),
                 y1 - (v - lo) / (hi - lo) * (panel_height - 8) - 4) for s, v in pts]
        if len(line) > 1:
            d.line(line, fill=colour, width=2)
        for x, y in line if len(line) <= 60 else line[-1:]:
            d.ellipse([x - 2, y - 2, x + 2, y + 2], fill=colour)
    d.text((margin_l, height - 14), f"step {s_lo} … {s_hi}", fill=(90, 90, 90), font=font)
    return torch.from_numpy(np.asarray(img, dtype=np.float32) / 255.0)[None]
