"""Small looping animated WebP previews of candidate clips, for the ranking panel.

Bounded so a dataset of thousands of groups stays small and the panel stays quick: the longer side is at most
`max_side` pixels and a clip keeps at most `max_frames` frames (evenly sampled; the frame duration grows so
the preview plays as long as the clip).
"""

from __future__ import annotations

import io

import torch

PREVIEW_EXT = "webp"
MAX_SIDE = 256
MAX_FRAMES = 32
FPS = 12.0


def preview_webp(clip: torch.Tensor, *, max_side: int = MAX_SIDE, max_frames: int = MAX_FRAMES,
                 fps: float = FPS, quality: int = 70) -> bytes:
    """One clip [T,H,W,C] (IMAGE values in [0,1]) → the bytes of a looping animated WebP."""
    from PIL import Image

    t, h, w = clip.shape[0], clip.shape[1], clip.shape[2]
    step = max(1, -(-t // max_frames))
    frames = clip[::step, :, :, :3].detach().float().clamp(0, 1).mul(255).round().to(torch.uint8).cpu().numpy()
    scale = min(1.0, max_side / max(h, w))
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    images = []
    for f in frames:
        im = Image.fromarray(f if f.shape[-1] == 3 else f[..., 0], "RGB" if f.shape[-1] == 3 else "L").convert("RGB")
        images.append(im.resize(size, Image.BILINEAR) if size != (w, h) else im)
    buf = io.BytesIO()
    images[0].save(buf, format="WEBP", save_all=True, append_images=images[1:], loop=0,
                   duration=max(1, round(1000.0 * step / fps)), quality=quality, method=4)
    return buf.getvalue()
