"""User input → validated clips, with errors that name the argument (and clip index) at fault.

What is accepted, and what is done with it:

- frames: a torch tensor or numpy array `[T,H,W,C]` (ComfyUI's IMAGE layout), `[T,H,W]` (greyscale), or a list
  of frames `[H,W,C]`/`[H,W]` of one size. C = 3 (RGB), 4 (RGBA: the alpha channel is dropped, not
  composited: ComfyUI's IMAGE has no alpha and the reward models never saw one) or 1 (greyscale: replicated
  to RGB). dtypes: float32/float16/bfloat16/float64 in 0..1, or uint8 in 0..255 (divided by 255). Other
  integer dtypes are read as values, so 0..255 in int64 fails the range check with a hint.
- T = 0 is an error. T = 1 is allowed and defined: every model sees that one frame (the BLIP models average
  over one frame; ActionCLIP's 8 segments are 8 copies of it, i.e. a perfectly still clip; Idefics2 gets one
  `<image>`); the flow metrics need two frames and define their own T = 1 result (see flow_metrics).
- values: NaN/Inf is an error naming the clip. Values slightly outside 0..1 (within [-0.01, 1.01], e.g. fp16
  rounding after a VAE decode) are clamped with a `ClipValueWarning`; further out is an error giving the range
  seen and a hint (0..255 values? -1..1 values?).
- Long clips: only the frames some enabled dimension reads are ever touched (the official sampling reads at
  most 24 of the first 144 frames). Selection happens on the input as given (no float32 copy of the clip), and
  the value checks cover the selected frames only: a frame no dimension reads cannot change a score.
- first_frame: `[H,W,C]` or `[1,H,W,C]`, same channel/dtype/value rules.
- prompts: a dimension that reads the prompt (DIMENSIONS[...].needs_prompt) requires a non-empty, non-blank
  string for every clip: None, "" and whitespace-only are errors naming the dimension and the input. (The
  official models would score an empty prompt, but the result measures nothing the artist asked for; the
  ComfyUI nodes treat an empty prompt box the same way.)
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from .dimensions import DIMENSIONS
from .preprocess import sample_frame_indices

SLACK = 0.01  # values within [-SLACK, 1 + SLACK] are clamped with a warning; beyond: error
_FLOATS = (torch.float32, torch.float16, torch.bfloat16, torch.float64)


class ClipInputError(ValueError):
    """A clip, prompt or first frame that cannot be scored; the message names the argument."""


class ClipValueWarning(UserWarning):
    """Frame values slightly outside 0..1 were clamped."""


def _shape_hint(shape: tuple[int, ...]) -> str:
    if len(shape) == 4 and shape[1] in (1, 3, 4) and shape[-1] not in (1, 3, 4):
        return " It looks channels-first [T,C,H,W]: permute it to [T,H,W,C] (x.permute(0, 2, 3, 1))."
    return ""


@dataclass
class RawClip:
    """One clip as given, not yet copied or converted: frames are selected first, then converted."""

    arg: str  # how error messages name it: "frames", "clips[3]", ...
    source: torch.Tensor | np.ndarray | list[Any]  # [T,H,W,C] tensor/array, or a list of [H,W,C] frames
    num_frames: int
    height: int
    width: int
    channels: int

    def select(self, indices: Sequence[int]) -> torch.Tensor:
        """Frames `indices` as a CPU tensor [t,H,W,C] in the input dtype (a view when all frames are asked)."""
        idx = list(indices)
        everything = idx == list(range(self.num_frames))
        src = self.source
        if isinstance(src, list):
            return torch.stack([_frame_tensor(src[i], f"{self.arg}[{i}]") for i in idx])
        if isinstance(src, np.ndarray):
            arr = src if everything else src[idx]  # fancy indexing copies only the chosen frames
            if not (arr.flags.writeable and arr.flags.c_contiguous):
                arr = np.array(arr, order="C")  # torch needs a writable, positively strided array
            return torch.from_numpy(arr)
        out = src if everything else src[idx]
        return out.cpu() if out.device.type != "cpu" else out


def _as_array_like(x: Any, arg: str) -> torch.Tensor | np.ndarray:
    if isinstance(x, torch.Tensor):
        return x
    if isinstance(x, np.ndarray):
        if x.dtype == object:
            raise ClipInputError(f"{arg}: a numpy array of Python objects cannot be frames; stack the frames first")
        return x
    raise ClipInputError(f"{arg}: expected a torch tensor or numpy array, got {type(x).__name__}")


def _frame_tensor(frame: Any, arg: str) -> torch.Tensor:
    """One frame of a list → [H,W,C] tensor (greyscale [H,W] gets a channel axis)."""
    f = _as_array_like(frame, arg)
    t = torch.from_numpy(np.array(f, order="C")) if isinstance(f, np.ndarray) else f.cpu()
    return t[..., None] if t.ndim == 2 else t


def _check_dtype(dtype: Any, arg: str) -> None:
    name = str(dtype)
    if "bool" in name or "complex" in name:
        raise ClipInputError(f"{arg}: frames of dtype {name} cannot be scored; pass float in 0..1 or uint8")


def _check_channels(c: int, shape: tuple[int, ...], arg: str) -> None:
    if c not in (1, 3, 4):
        raise ClipInputError(
            f"{arg}: expected channels-last frames [T,H,W,C] with C = 3 (RGB), 4 (RGBA) or 1 (grey); got shape "
            f"{shape}.{_shape_hint(shape)}"
        )


def as_clip(frames: Any, arg: str = "frames") -> RawClip:
    """Check the shape of one clip and wrap it without copying (see the module docstring for what is accepted)."""
    if frames is None:
        raise ClipInputError(f"{arg}: no frames given (None)")
    if isinstance(frames, (list, tuple)):
        if not frames:
            raise ClipInputError(f"{arg}: the clip is empty (a list of 0 frames); a clip needs at least one frame")
        sizes, dtypes = [], []
        for i, f in enumerate(frames):
            a = _as_array_like(f, f"{arg}[{i}]")
            if a.ndim not in (2, 3):
                raise ClipInputError(f"{arg}[{i}]: a frame must be [H,W,C] or [H,W], got shape {tuple(a.shape)}")
            sizes.append(tuple(a.shape) if a.ndim == 3 else (*a.shape, 1))
            _check_dtype(a.dtype, f"{arg}[{i}]")
            dtypes.append(str(a.dtype).replace("torch.", ""))
        odd = [i for i, s in enumerate(sizes) if s != sizes[0]]
        if odd:
            raise ClipInputError(
                f"{arg}: frames of one clip must all have the same size; frame 0 is {sizes[0]} (H,W,C) but frame "
                f"{odd[0]} is {sizes[odd[0]]}" + (f" (and {len(odd) - 1} more differ)" if len(odd) > 1 else "")
                + ". Resize them to one size first."
            )
        if len(set(dtypes)) > 1:
            raise ClipInputError(f"{arg}: frames of one clip must share one dtype, got {sorted(set(dtypes))}")
        h, w, c = sizes[0]
        _check_channels(c, (len(frames), h, w, c), arg)
        clip = RawClip(arg, list(frames), len(frames), h, w, c)
    else:
        x = _as_array_like(frames, arg)
        _check_dtype(x.dtype, arg)
        if x.ndim == 3:  # [T,H,W] greyscale
            x = x[..., None]
        if x.ndim == 5:
            raise ClipInputError(
                f"{arg}: got a batch of clips {tuple(x.shape)}; score one clip [T,H,W,C] here, or use score_batch"
            )
        if x.ndim != 4:
            raise ClipInputError(f"{arg}: expected a clip [T,H,W,C] (or [T,H,W] greyscale), got shape {tuple(x.shape)}")
        t, h, w, c = (int(s) for s in x.shape)
        _check_channels(c, tuple(x.shape), arg)
        clip = RawClip(arg, x, t, h, w, c)
    if clip.num_frames == 0:
        raise ClipInputError(f"{arg}: the clip is empty (0 frames); a clip needs at least one frame")
    if clip.height == 0 or clip.width == 0:
        raise ClipInputError(f"{arg}: frames of size {clip.height}x{clip.width} have no pixels")
    return clip


def as_image(image: Any, arg: str = "first_frame") -> torch.Tensor:
    """A key image [H,W,C] or [1,H,W,C] → float32 [H,W,3] in 0..1 on the CPU (same rules as frames)."""
    if image is None:
        raise ClipInputError(f"{arg}: no image given (None)")
    x = _as_array_like(image, arg)
    _check_dtype(x.dtype, arg)
    if x.ndim == 4:
        if x.shape[0] != 1:
            raise ClipInputError(
                f"{arg}: expected one image [H,W,C] or [1,H,W,C], got a batch of {x.shape[0]} images "
                f"{tuple(x.shape)}; pass the first frame only (image[0:1])"
            )
        x = x[0]
    if x.ndim == 2:
        x = x[..., None]
    if x.ndim != 3:
        raise ClipInputError(f"{arg}: expected an image [H,W,C] or [1,H,W,C], got shape {tuple(image.shape)}")
    _check_channels(int(x.shape[-1]), tuple(image.shape), arg)
    if x.shape[0] == 0 or x.shape[1] == 0:
        raise ClipInputError(f"{arg}: an image of size {x.shape[0]}x{x.shape[1]} has no pixels")
    clip = RawClip(arg, x[None], 1, int(x.shape[0]), int(x.shape[1]), int(x.shape[2]))
    return to_rgb01(clip.select([0]), arg)[0]


def check_values(x: torch.Tensor, arg: str) -> bool:
    """NaN/Inf and range checks on the selected frames; True when they need clamping (slightly outside 0..1)."""
    if x.dtype == torch.uint8:
        return False
    # One aminmax pass finds NaN (it propagates) and Inf (it is the min or max) too: torch.isfinite over a
    # long clip costs many times more on the CPU. The per-frame search runs only to word the error.
    lo, hi = (float(v) for v in torch.aminmax(x if x.is_floating_point() else x.to(torch.float64)))
    if not (math.isfinite(lo) and math.isfinite(hi)):
        bad = (~torch.isfinite(x)).flatten(1).any(1).nonzero().flatten().tolist() if x.ndim == 4 else []
        what = "NaN" if math.isnan(lo) or math.isnan(hi) else "Inf"
        where = f" in {len(bad)} of the frames read (first: position {bad[0]} of the sampled frames)" if bad else ""
        raise ClipInputError(
            f"{arg}: contains {what} values{where}; the clip cannot be scored. This usually means the VAE decode "
            f"or the sampler produced NaNs (try fp32/bf16 VAE decoding)."
        )
    if lo >= 0.0 and hi <= 1.0:
        return False
    if lo >= -SLACK and hi <= 1.0 + SLACK:
        warnings.warn(
            f"{arg}: values range over [{lo:.4g}, {hi:.4g}], slightly outside 0..1 (fp16 rounding?); clamped to 0..1",
            ClipValueWarning,
            stacklevel=3,
        )
        return True
    hint = ""
    if hi > 1.0 + SLACK and hi <= 255.0 + SLACK and lo >= -SLACK:
        hint = " Did you pass 0..255 values? Divide by 255, or pass a uint8 tensor."
    elif lo < -SLACK and lo >= -1.0 - SLACK and hi <= 1.0 + SLACK:
        hint = " Did you pass -1..1 values (a VAE output before rescaling)? Use (x + 1) / 2."
    raise ClipInputError(f"{arg}: values range over [{lo:.4g}, {hi:.4g}]; expected 0..1 (ComfyUI IMAGE).{hint}")


def to_rgb01(x: torch.Tensor, arg: str, clamp: bool | None = None) -> torch.Tensor:
    """Selected frames [...,C] (any accepted dtype) → float32 [...,3] in 0..1; no copy when already so.

    clamp: None runs `check_values` first; True/False says the check was already done.
    """
    if clamp is None:
        clamp = check_values(x, arg)
    c = x.shape[-1]
    if c == 4:
        x = x[..., :3]
    if x.dtype == torch.uint8:
        x = x.to(torch.float32).div_(255.0)
    elif x.dtype != torch.float32:
        x = x.to(torch.float32)
    if clamp:
        x = x.clamp(0.0, 1.0)
    if c == 1:
        x = x.expand(*x.shape[:-1], 3).contiguous()
    return x


@dataclass
class ValidatedClip:
    """One clip reduced to the frames some dimension reads, checked, still in the input dtype."""

    arg: str
    num_frames: int  # of the original clip
    indices: list[int]  # original frame numbers held in `frames`
    frames: torch.Tensor  # [len(indices),H,W,C], input dtype, CPU
    clamp: bool

    def frames_for(self, wanted: Sequence[int]) -> torch.Tensor:
        """float32 RGB [t,H,W,3] of the original frames `wanted` (which must be among `indices`)."""
        pos = {f: i for i, f in enumerate(self.indices)}
        sel = [pos[f] for f in wanted]
        x = self.frames if sel == list(range(len(self.indices))) else self.frames[sel]
        return to_rgb01(x, self.arg, clamp=self.clamp)


FramePlan = Callable[[int], list[int]]


def official_plan(num_frames: int) -> list[int]:
    """The frames the five official models read: 24 uniform indices of the first min(T,144)."""
    return sample_frame_indices(num_frames)


def validate_clip(clip: RawClip, plans: Sequence[FramePlan]) -> ValidatedClip:
    """Select the union of the frames the plans read (nothing else is copied or converted), then check them."""
    wanted = sorted({i for plan in plans for i in plan(clip.num_frames)})
    frames = clip.select(wanted)
    _check_dtype(frames.dtype, clip.arg)
    return ValidatedClip(clip.arg, clip.num_frames, wanted, frames, check_values(frames, clip.arg))


def clip_list(clips: Any, arg: str = "clips") -> list[RawClip]:
    """score_batch's `clips`: a list of clips, or one tensor/array [N,T,H,W,C] (views, no copy)."""
    if isinstance(clips, (torch.Tensor, np.ndarray)):
        if clips.ndim != 5:
            raise ClipInputError(
                f"{arg}: one tensor must be a batch of clips [N,T,H,W,C], got shape {tuple(clips.shape)}; "
                f"for one clip use score(), or pass [clip]"
            )
        items: list[Any] = [clips[i] for i in range(clips.shape[0])]
    elif isinstance(clips, (list, tuple)):
        items = list(clips)
    else:
        raise ClipInputError(f"{arg}: expected a list of clips or a tensor [N,T,H,W,C], got {type(clips).__name__}")
    if not items:
        raise ClipInputError(f"{arg}: no clips given (an empty batch)")
    return [as_clip(c, f"{arg}[{i}]") for i, c in enumerate(items)]


def prompt_list(prompts: Any, n: int, arg: str = "prompts") -> list[str | None]:
    """One prompt for every clip (a string or None), or one per clip (a list of n)."""
    if prompts is None or isinstance(prompts, str):
        return [prompts] * n
    if isinstance(prompts, (list, tuple)):
        if len(prompts) != n:
            raise ClipInputError(f"{arg}: {len(prompts)} prompts for {n} clips; give one per clip, or one string for all")
        for i, p in enumerate(prompts):
            if p is not None and not isinstance(p, str):
                raise ClipInputError(f"{arg}[{i}]: a prompt must be a string, got {type(p).__name__}")
        return list(prompts)
    raise ClipInputError(f"{arg}: expected a string, a list of strings or None, got {type(prompts).__name__}")


def first_frame_list(first_frames: Any, n: int, arg: str = "first_frames") -> list[torch.Tensor | None]:
    """One key image shared by all clips ([H,W,C] or [1,H,W,C]), one per clip (a list, or [n,H,W,C]), or None."""
    if first_frames is None:
        return [None] * n
    if isinstance(first_frames, (list, tuple)):
        if len(first_frames) != n:
            raise ClipInputError(f"{arg}: {len(first_frames)} images for {n} clips; give one per clip, or one for all")
        return [None if f is None else as_image(f, f"{arg}[{i}]") for i, f in enumerate(first_frames)]
    x = _as_array_like(first_frames, arg)
    if x.ndim == 4 and x.shape[0] > 1:
        if x.shape[0] != n:
            raise ClipInputError(
                f"{arg}: a batch of {x.shape[0]} images for {n} clips; give one per clip, or one for all"
            )
        return [as_image(x[i], f"{arg}[{i}]") for i in range(n)]
    image = as_image(x, arg)
    return [image] * n


def missing_input(dimension: str, prompt: str | None, first_frame: object, blank_prompt_ok: bool = False
                  ) -> str | None:
    """The input a dimension reads that this clip lacks: "prompt" (None, or blank unless `blank_prompt_ok`),
    "first_frame" (None), or None when it has what it reads. The one definition of "has its inputs" (the
    facade, the scorers and the nodes all ask here). A scorer called directly accepts a blank prompt (the
    official model scores it); the facade and the nodes do not (it measures nothing the artist asked for)."""
    dim = DIMENSIONS[dimension]
    if dim.needs_prompt and (prompt is None or (not blank_prompt_ok and not prompt.strip())):
        return "prompt"
    if dim.needs_first_frame and first_frame is None:
        return "first_frame"
    return None


def require_inputs(
    dimensions: Sequence[str],
    prompts: Sequence[str | None],
    first_frames: Sequence[torch.Tensor | None],
    prompt_arg: str = "prompts",
    first_frame_arg: str = "first_frames",
    blank_prompt_ok: bool = False,
) -> None:
    """Every dimension that reads the prompt/first frame gets one for every clip, else one error naming all."""
    problems: list[str] = []
    n = len(prompts)
    for d in dimensions:
        dim = DIMENSIONS[d]
        if dim.needs_prompt:
            bad = [i for i, p in enumerate(prompts) if missing_input(d, p, None, blank_prompt_ok) == "prompt"]
            if bad:
                which = prompt_arg if n == 1 else f"{prompt_arg} (clips {bad})"
                empty = "missing" if all(prompts[i] is None for i in bad) else "empty or missing"
                problems.append(f"{d} is enabled and reads the text prompt, but '{which}' is {empty}")
        if dim.needs_first_frame:
            bad = [i for i, f in enumerate(first_frames) if f is None]
            if bad:
                which = first_frame_arg if n == 1 else f"{first_frame_arg} (clips {bad})"
                problems.append(f"{d} is enabled and reads the first frame (key image), but '{which}' is missing")
    if problems:
        raise ClipInputError(
            "; ".join(problems) + ". Pass the input, or leave those dimensions out (dimensions=[...])."
        )


class FrameCache:
    """Converted frames shared by consecutive dimensions that read the same frames (same plan).

    Converting fp16/uint8 frames to float32, or gathering the sampled frames out of a long clip, would
    otherwise be repeated once per dimension. Views of the input cost nothing and are always kept; copies
    are kept up to `budget_bytes`, beyond which they are made again when needed (memory stays bounded).
    """

    def __init__(self, clips: Sequence[ValidatedClip], budget_bytes: int) -> None:
        self.clips = clips
        self.budget = budget_bytes
        self.plan: FramePlan | None = None
        self.items: dict[int, torch.Tensor] = {}
        self.used = 0

    def clear(self) -> None:
        self.items.clear()
        self.plan, self.used = None, 0

    def frames(self, i: int, plan: FramePlan) -> torch.Tensor:
        if plan is not self.plan:
            self.items.clear()
            self.plan, self.used = plan, 0
        hit = self.items.get(i)
        if hit is not None:
            return hit
        clip = self.clips[i]
        out = clip.frames_for(plan(clip.num_frames))
        shared = out.untyped_storage().data_ptr() == clip.frames.untyped_storage().data_ptr()
        size = 0 if shared else out.numel() * out.element_size()
        if self.used + size <= self.budget:
            self.items[i] = out
            self.used += size
        return out
