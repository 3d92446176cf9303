"""Frame sampling and image preprocessing exactly as the official `reward_infer.py` does it, done fast.

The official pipeline decodes uint8 RGB frames, squashes each to 224×224 with PIL bicubic (a=-0.5,
antialiased when shrinking), rounds back to uint8, then applies CLIP mean/std. Every step here gives the
same bits, only faster:
- float → uint8: one OpenCV pass (`convertScaleAbs`: x·255 rounded half-to-even and saturated, in float32,
  as torch's `round` does), 10x faster than the torch op chain;
- resize: PIL itself (torch's antialiased bicubic differs by 1-2 levels on some pixels), one call per frame,
  the frames spread over a few threads (PIL releases the GIL while it resamples);
- normalisation: a 256-entry table per channel built with the official float32 ops (ToTensor's /255, then
  Normalize's (x - mean) / std), applied with `cv2.LUT`: the same floats, 8x faster than the arithmetic.
Per-clip results go through the call's `ClipMemo` (clip_memo.py), so the dimensions of one call share them.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import torch
from PIL import Image

from .clip_memo import ClipMemo, memoised

MAX_NUM_FRAMES = 24  # frames the reward models see
MAX_LENGTH = 144  # only the first 144 frames are sampled from
IMAGE_SIZE = 224
MOTION_FRAMES = 8
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


def sample_frame_indices(num_frames: int) -> list[int]:
    """Official uniform sampling: all frames when T <= 24, else 24 steps over the first min(T,144)."""
    if num_frames <= 0:
        raise ValueError(f"a clip needs at least one frame, got {num_frames}")
    if num_frames > MAX_NUM_FRAMES:
        span = min(num_frames, MAX_LENGTH)
        return np.arange(0, span, span / MAX_NUM_FRAMES).astype(int).tolist()
    return list(range(num_frames))


def motion_frame_indices(num_sampled: int) -> list[int]:
    """Official motion subsampling: `linspace(0, n-1, 8).long()` over the already sampled frames."""
    return torch.linspace(0, num_sampled - 1, steps=MOTION_FRAMES).long().tolist()


def to_uint8(frames: torch.Tensor, indices: list[int] | None = None) -> np.ndarray:
    """ComfyUI float frames [T,H,W,3] in 0..1 → uint8, as a decoded video would be: round(clamp(x)·255).

    indices: convert only these frames (no float copy of the selection is made)."""
    import cv2

    x = frames.detach()
    if indices is not None and (x.dtype != torch.float32 or x.device.type != "cpu"):
        x, indices = x[indices], None  # select before converting or copying to the CPU
    arr = (x if x.dtype == torch.float32 else x.float()).cpu().numpy()
    picked = range(arr.shape[0]) if indices is None else indices
    out = np.empty((len(picked), *arr.shape[1:]), dtype=np.uint8)
    for i, k in enumerate(picked):
        frame = arr[k]
        if frame.size == 0:
            continue
        frame = np.ascontiguousarray(frame)
        if float(frame.min()) < 0.0:  # convertScaleAbs takes |x|: clamp negatives first (never after validation)
            frame = np.maximum(frame, 0.0)
        out[i] = cv2.convertScaleAbs(frame.reshape(frame.shape[0], -1), alpha=255.0).reshape(frame.shape)
    return out


@functools.cache
def _pool() -> ThreadPoolExecutor:
    """Threads for per-frame PIL work; one more than the cores, as PIL holds the GIL between resamples."""
    return ThreadPoolExecutor(max_workers=min(8, (os.cpu_count() or 1) + 1), thread_name_prefix="animereward-pil")


def map_frames(fn: Callable[[int], Any], count: int) -> None:
    """Run fn(0..count-1) on the PIL threads (inline for one item); re-raises the first error."""
    if count <= 1:
        for i in range(count):
            fn(i)
        return
    for _ in _pool().map(fn, range(count)):
        pass


def resize_uint8(frames: np.ndarray, size: int | tuple[int, int] = IMAGE_SIZE,
                 resample: int = Image.BICUBIC) -> np.ndarray:
    """PIL resize of each uint8 frame [T,H,W,3] to size (an int: size×size, else (height, width)); aspect not
    kept. PIL returns the image itself when the size is unchanged, so that case copies."""
    h, w = (size, size) if isinstance(size, int) else size
    out = np.empty((frames.shape[0], h, w, 3), dtype=np.uint8)

    def one(i: int) -> None:
        out[i] = np.asarray(Image.fromarray(frames[i]).resize((w, h), resample))

    map_frames(one, frames.shape[0])
    return out


def channel_lut(fn: Callable[[torch.Tensor], torch.Tensor]) -> np.ndarray:
    """A [1,256,3] float32 table for cv2.LUT: fn applied to every uint8 value, as a [256,3] → [256,3] map.

    Built by running the real normalisation on the 256 possible values, so the table holds the very floats the
    elementwise ops would produce."""
    ramp = torch.arange(256, dtype=torch.uint8)[:, None].expand(256, 3)
    return np.ascontiguousarray(fn(ramp).to(torch.float32).numpy().reshape(1, 256, 3))


def apply_lut(frames_uint8: np.ndarray, lut: np.ndarray) -> torch.Tensor:
    """uint8 [T,H,W,3] → float32 [T,3,H,W] through a per-channel table (a channels-last view, no copy)."""
    import cv2

    t, h, w, _ = frames_uint8.shape
    if t == 0 or h == 0 or w == 0:
        return torch.empty((t, 3, h, w), dtype=torch.float32)
    flat = np.ascontiguousarray(frames_uint8).reshape(t * h, w, 3)
    return torch.from_numpy(cv2.LUT(flat, lut).reshape(t, h, w, 3)).permute(0, 3, 1, 2)


def _clip_normalize(values: torch.Tensor) -> torch.Tensor:
    """The official ToTensor then Normalize, on [...,3] uint8 values (float32 throughout)."""
    x = values.float().div(255.0)
    return (x - torch.tensor(CLIP_MEAN)) / torch.tensor(CLIP_STD)


@functools.cache
def _clip_lut() -> np.ndarray:
    return channel_lut(_clip_normalize)


def normalize(frames_uint8: np.ndarray) -> torch.Tensor:
    """uint8 [T,H,W,3] → float32 [T,3,H,W] with CLIP mean/std (ToTensor then Normalize)."""
    return apply_lut(frames_uint8, _clip_lut())


def preprocess_frames(frames: torch.Tensor, size: int = IMAGE_SIZE) -> torch.Tensor:
    """Float frames [T,H,W,3] in 0..1 → the official `img_all` for one clip: [T,3,size,size]."""
    return normalize(resize_uint8(to_uint8(frames), size))


def sampled_uint8(frames: torch.Tensor, memo: ClipMemo | None = None) -> np.ndarray:
    """The official frame sample of a clip as uint8 [t,H,W,3] (memoised in the call's memo, see clip_memo)."""
    return memoised(memo, frames, "sampled_uint8",
                    lambda: to_uint8(frames, sample_frame_indices(frames.shape[0])))


def sampled_clip(frames: torch.Tensor, memo: ClipMemo | None = None) -> torch.Tensor:
    """The 24 (or fewer) frames the official code feeds every model, preprocessed: [t,3,224,224].

    Memoised in `memo` (the call's) for the same, unmodified tensor object; do not modify it in place.
    """
    return memoised(memo, frames, "img_all", lambda: normalize(resize_uint8(sampled_uint8(frames, memo))))

