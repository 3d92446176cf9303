"""Frame sampling and image preprocessing exactly as the official `reward_infer.py` does it.

The official pipeline decodes uint8 RGB frames, squashes each to 224×224 with PIL bicubic (a=-0.5,
antialiased when shrinking), rounds back to uint8, then applies CLIP mean/std. Torch's float bicubic uses
a=-0.75 and gives different values, so the resize goes through PIL (one call per frame, not per pixel).
"""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image

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


def to_uint8(frames: torch.Tensor) -> np.ndarray:
    """ComfyUI float frames in 0..1 → uint8 [T,H,W,3], as a decoded video would be."""
    return (frames.detach().float().clamp(0, 1) * 255.0).round().to(torch.uint8).cpu().numpy()


def resize_uint8(frames: np.ndarray, size: int = IMAGE_SIZE) -> np.ndarray:
    """PIL bicubic squash of each uint8 frame to size×size (no crop, aspect not kept)."""
    out = np.empty((frames.shape[0], size, size, 3), dtype=np.uint8)
    for i, frame in enumerate(frames):
        out[i] = np.asarray(Image.fromarray(frame).resize((size, size), Image.BICUBIC))
    return out


def normalize(frames_uint8: np.ndarray) -> torch.Tensor:
    """uint8 [T,H,W,3] → float32 [T,3,H,W] with CLIP mean/std (ToTensor then Normalize)."""
    x = torch.from_numpy(frames_uint8).permute(0, 3, 1, 2).float().div_(255.0)
    mean = torch.tensor(CLIP_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(CLIP_STD).view(1, 3, 1, 1)
    return (x - mean) / std


def preprocess_frames(frames: torch.Tensor, size: int = IMAGE_SIZE) -> torch.Tensor:
    """Float frames [T,H,W,3] in 0..1 → the official `img_all` for one clip: [T,3,size,size]."""
    return normalize(resize_uint8(to_uint8(frames), size))


# sampled_clip results by input tensor: the two BLIP models and ActionCLIP read the same img_all of the
# same frame tensors (the facade hands each scorer the same objects), so the PIL resize runs once, not 3x.
_SAMPLED: dict[int, tuple[torch.Tensor, int, torch.Tensor]] = {}  # id → (tensor, version, result)
_SAMPLED_MAX = 16


def sampled_clip(frames: torch.Tensor) -> torch.Tensor:
    """The 24 (or fewer) frames the official code feeds every model, preprocessed: [t,3,224,224].

    Memoised for the same, unmodified tensor object (its in-place version counter is checked) until
    `forget_sampled_clips()`; callers must not modify the result in place.
    """
    hit = _SAMPLED.get(id(frames))
    version = _version(frames)
    if hit is not None and hit[0] is frames and hit[1] == version:
        return hit[2]
    out = preprocess_frames(frames[sample_frame_indices(frames.shape[0])])
    if len(_SAMPLED) >= _SAMPLED_MAX:
        _SAMPLED.pop(next(iter(_SAMPLED)))
    _SAMPLED[id(frames)] = (frames, version, out)
    return out


def _version(t: torch.Tensor) -> int:
    """The in-place version counter; -1 for inference tensors (ComfyUI runs nodes under inference_mode),
    which keep none: for those the memo relies on the facade forgetting it after each call."""
    return -1 if t.is_inference() else t._version


def forget_sampled_clips() -> None:
    """Drop the memo (and the frame tensors it keeps alive); the facade calls it after each scoring call."""
    _SAMPLED.clear()
