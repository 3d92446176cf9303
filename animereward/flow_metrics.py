"""Weight-free flow metrics: `flow_smoothness` and `flow_motion` from OpenCV DIS optical flow.

Both look at every consecutive frame pair of a clip (all frames, no sampling: smoothness is about neighbours),
on frames resized to a working size:

- working size: long side 256 px, never upscaled; a side under 32 px is raised to 32 (DIS works on 8-px
  patches over a few pyramid levels, and a 2-pixel-high frame has none). 256 px keeps the shape-level motion
  that smoothness is about, averages away grain and compression noise, measures every clip at one scale (so
  scores do not depend on resolution), and keeps a DIS call to a few milliseconds on a CPU.
- flow: `cv2.DISOpticalFlow_create(DISOPTICAL_FLOW_PRESET_MEDIUM)` on grayscale uint8 (Rec.601 luma of the
  working-size frame), both ways (t->t+1 and t+1->t). MEDIUM, not FAST: on flat-coloured cel shading
  (textureless interiors, motion carried by outlines) FAST's coarser finest scale leaves wrong flow at edges,
  which the warping error then blames on the clip: on the synthetic clips FAST's warping error on clean motion
  is 1.7x MEDIUM's (0.0087 vs 0.0052) and the smallest clean-vs-freeze margin over 8 seeds drops from 0.14 to
  0.08. MEDIUM costs about twice FAST. The resize and the warping statistics run beside the DIS calls on a
  helper thread, so a clip costs about its DIS calls. What that is on your machine (ms per DIS call, frames/s
  at 480p, seconds for an 81-frame clip, DIS's share of the time): `python -m bench flow`.

flow_smoothness (higher = smoother) = exp(-E_warp / TAU_WARP - A / TAU_ACCEL), two terms:
- E_warp, temporal warping error (Lai et al. 2018 style): frame t+1 is warped onto t along the forward flow
  (cv2.remap, bilinear); pixels whose flow fails the forward-backward test of Sundaram et al. 2010 / Ruder
  et al. 2016, |f_fw + f_bw(x + f_fw)|^2 < ALPHA (|f_fw|^2 + |f_bw(x + f_fw)|^2) + BETA with their constants
  ALPHA = 0.01, BETA = 0.5 px^2, or that leave the frame, are occluded and left out; E_t = mean |RGB_t - warped|
  over the rest (0..1 scale, mean of the channels; all pixels if none passes). Catches flicker, distortion,
  popping.
- A, trajectory acceleration: |f_t+1(x + f_t(x)) - f_t(x)| averaged over pixels, per frame triple, divided by
  the working diagonal. Warping error alone cannot see a freeze then jump (frozen pairs warp perfectly and DIS
  tracks the jump: measured E_warp 0.0047 for freeze vs 0.0052 for clean) and sees trackable jitter only
  weakly (0.014); A sees both (clean 0.0006, freeze 0.0038, jitter 0.025). Side effect, by design: animation held on twos/threes counts
  as less smooth than the same motion on ones.
- both are root-mean-squares over pairs/triples, so one bad transition is not averaged away.
- TAU_WARP = 0.03 (a mean error of 3 % of full scale, ~8 grey levels, costs a factor e), TAU_ACCEL = 0.01
  (1 % of the diagonal per frame of change in velocity costs e). Clean synthetic cel motion scores ~0.76-0.84.
  These were set on the synthetic clips; calibrate them on real clips before comparing across datasets.

flow_motion (higher = more motion) = 1 - exp(-m / TAU_MOTION), m = mean |forward flow| over pixels and pairs /
working diagonal, TAU_MOTION = 0.005: motion averaging 0.5 % of the diagonal per frame over the whole frame
(~1.5 px at 256 wide; a character crossing a third of the frame in two seconds is about 0.002) gives 0.63, a
still clip 0.

T = 1: flow_smoothness = 1.0 (nothing can be unsmooth), flow_motion = 0.0. T = 2: no triple, A = 0.

cv2 is imported inside functions: importing this module stays cheap.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from .cancel import check
from .scorer_protocol import ClipBatch

WORK_LONG_SIDE = 256
MIN_SHORT_SIDE = 32
ALPHA = 0.01
BETA = 0.5
TAU_WARP = 0.03
TAU_ACCEL = 0.01
TAU_MOTION = 0.005
FLOW_DIMENSIONS_SERVED: tuple[str, ...] = ("flow_smoothness", "flow_motion")


def _rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(x, dtype=np.float64)))) if x.size else 0.0


@dataclass
class FlowStats:
    """Measurements of one clip: per pair (length T-1) and per triple (length T-2); empty when too short."""

    warp: np.ndarray  # mean |RGB_t - warped RGB_t+1| over flow-consistent pixels (0..1 scale)
    occluded: np.ndarray  # fraction of pixels failing the forward-backward test (diagnostic)
    magnitude: np.ndarray  # mean |forward flow| / working-frame diagonal
    accel: np.ndarray  # mean |f_t+1(x + f_t(x)) - f_t(x)| / diagonal (trajectory acceleration)

    @property
    def warp_error(self) -> float:
        return _rms(self.warp)

    @property
    def accel_error(self) -> float:
        return _rms(self.accel)

    @property
    def smoothness(self) -> float:
        if self.warp.size == 0:
            return 1.0
        return smoothness_from(self.warp_error, self.accel_error)

    @property
    def motion(self) -> float:
        if self.magnitude.size == 0:
            return 0.0
        return motion_from(float(np.mean(self.magnitude)))


def smoothness_from(warp_error: float, accel_error: float) -> float:
    """exp(-E_warp / TAU_WARP - A / TAU_ACCEL), in (0, 1]."""
    return math.exp(-warp_error / TAU_WARP - accel_error / TAU_ACCEL)


def motion_from(mean_magnitude: float) -> float:
    """1 - exp(-m / TAU_MOTION), in [0, 1)."""
    return 1.0 - math.exp(-mean_magnitude / TAU_MOTION)


def _frames_array(frames: torch.Tensor | np.ndarray) -> np.ndarray:
    """[T,H,W,3] (or one [H,W,3] frame) as a uint8 or float32 array; no copy for CPU float32/uint8 tensors."""
    if isinstance(frames, torch.Tensor):
        t = frames.detach().cpu()
        frames = (t if t.dtype in (torch.uint8, torch.float32) else t.float()).numpy()
    arr = np.asarray(frames)
    if arr.ndim == 3:
        arr = arr[None]
    if arr.ndim != 4 or arr.shape[-1] != 3 or arr.shape[0] == 0:
        raise ValueError(f"frames must be [T,H,W,3] with T >= 1, got {arr.shape}")
    return arr if arr.dtype in (np.uint8, np.float32) else arr.astype(np.float32)


def _small_frame(arr: np.ndarray, k: int, size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Frame k at the working size: float32 RGB clipped to 0..1, and its Rec.601 luma as uint8 (for DIS)."""
    import cv2

    frame = arr[k]
    h, w = size
    if frame.shape[:2] != (h, w):
        interp = cv2.INTER_AREA if h * w < frame.shape[0] * frame.shape[1] else cv2.INTER_LINEAR
        frame = cv2.resize(frame, (w, h), interpolation=interp)
    small = frame.astype(np.float32) / np.float32(255.0) if frame.dtype == np.uint8 else np.array(frame)
    np.clip(small, 0.0, 1.0, out=small)
    luma = cv2.cvtColor(small, cv2.COLOR_RGB2GRAY)
    return small, np.clip(np.rint(luma * 255.0), 0, 255).astype(np.uint8)


def working_frames(frames: torch.Tensor | np.ndarray) -> np.ndarray:
    """[T,H,W,3] float in 0..1 (torch or numpy) or uint8 -> float32 [T,h,w,3] in 0..1 at the working size.

    Frames are resized one at a time before any other conversion, so a long full-resolution clip is never
    copied whole (a 49x480x832 float clip is 235 MB).
    """
    arr = _frames_array(frames)
    size = working_size(arr.shape[1], arr.shape[2])
    return np.stack([_small_frame(arr, k, size)[0] for k in range(arr.shape[0])])


def working_size(height: int, width: int) -> tuple[int, int]:
    """(h, w) the flow runs at: long side <= WORK_LONG_SIDE (aspect kept), each side >= MIN_SHORT_SIDE."""
    scale = min(1.0, WORK_LONG_SIDE / max(height, width))
    return max(MIN_SHORT_SIDE, round(height * scale)), max(MIN_SHORT_SIDE, round(width * scale))


def _dis() -> Any:
    import cv2

    return cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)


def _sq(v: np.ndarray) -> np.ndarray:
    """Squared norm of a [h,w,2] vector field (two multiplies: faster than a reduce over the last axis)."""
    return v[..., 0] * v[..., 0] + v[..., 1] * v[..., 1]


class _PairStatistics:
    """The per-pair measurements, added pair by pair in order (the acceleration reads the previous pair)."""

    def __init__(self, t: int, h: int, w: int) -> None:
        self.h, self.w = h, w
        self.gx, self.gy = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
        self.diag = math.hypot(h, w)
        self.warp = np.empty(t - 1, dtype=np.float32)
        self.occl = np.empty(t - 1, dtype=np.float32)
        self.mag = np.empty(t - 1, dtype=np.float32)
        self.accel = np.empty(max(0, t - 2), dtype=np.float32)
        self.prev: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None

    def add(self, i: int, fw: np.ndarray, bw: np.ndarray, rgb0: np.ndarray, rgb1: np.ndarray) -> None:
        import cv2

        h, w = self.h, self.w
        map_x, map_y = self.gx + fw[..., 0], self.gy + fw[..., 1]
        warped = cv2.remap(rgb1, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        bw_at = cv2.remap(bw, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        fw2 = _sq(fw)
        inside = (map_x >= 0) & (map_x <= w - 1) & (map_y >= 0) & (map_y <= h - 1)
        ok = inside & (_sq(fw + bw_at) < ALPHA * (fw2 + _sq(bw_at)) + BETA)
        diff = cv2.absdiff(rgb0, warped).reshape(-1, 3)
        n_ok = int(np.count_nonzero(ok))
        # sum over the consistent pixels of the channel mean, as one matrix-vector product
        self.warp[i] = float((ok.reshape(-1).astype(np.float32) @ diff).sum()) / (3 * n_ok) if n_ok \
            else float(diff.mean())
        self.occl[i] = 1.0 - n_ok / ok.size
        self.mag[i] = float(np.sqrt(fw2).mean()) / self.diag
        if self.prev is not None:  # this pair's flow, read where the previous pair's flow carried each pixel
            prev_fw, prev_x, prev_y = self.prev
            here = cv2.remap(fw, prev_x, prev_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
            self.accel[i - 1] = float(np.sqrt(_sq(here - prev_fw)).mean()) / self.diag
        self.prev = (fw, map_x, map_y)

    def result(self) -> FlowStats:
        return FlowStats(self.warp, self.occl, self.mag, self.accel)


def clip_flow_stats(frames: torch.Tensor | np.ndarray, dis: Any = None) -> FlowStats:
    """DIS flow both ways on every consecutive pair; warping error, occlusion, motion, acceleration.

    DIS runs on this thread; the per-frame resize and the per-pair statistics run in order on one helper
    thread beside it (both release the GIL), so the clip costs about its DIS calls (see bench/bench_flow.py).
    """
    from concurrent.futures import ThreadPoolExecutor

    arr = _frames_array(frames)
    t = arr.shape[0]
    size = working_size(arr.shape[1], arr.shape[2])
    if t < 2:
        _small_frame(arr, 0, size)  # same checks and conversions as a longer clip
        empty = np.zeros(0, dtype=np.float32)
        return FlowStats(empty, empty, empty, empty)
    dis = dis if dis is not None else _dis()
    pairs = _PairStatistics(t, *size)
    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="animereward-flow")
    try:
        smalls = [pool.submit(_small_frame, arr, k, size) for k in range(t)]
        added = []
        rgb0, gray0 = smalls[0].result()
        for i in range(t - 1):
            check()  # Cancel between frame pairs (a long clip is seconds of DIS)
            rgb1, gray1 = smalls[i + 1].result()
            fw = dis.calc(gray0, gray1, None)
            bw = dis.calc(gray1, gray0, None)
            added.append(pool.submit(pairs.add, i, fw, bw, rgb0, rgb1))
            rgb0, gray0 = rgb1, gray1
        for done in added:
            done.result()
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
    return pairs.result()


def flow_scores(frames: torch.Tensor | np.ndarray) -> dict[str, float]:
    """Both flow metrics from one DIS pass: {"flow_smoothness": ..., "flow_motion": ...}."""
    stats = clip_flow_stats(frames)
    return {"flow_smoothness": stats.smoothness, "flow_motion": stats.motion}


def flow_smoothness(frames: torch.Tensor | np.ndarray) -> float:
    """Temporal consistency in (0,1]: 1 = perfectly consistent (and for T = 1); see the module docstring."""
    return clip_flow_stats(frames).smoothness


def flow_motion(frames: torch.Tensor | np.ndarray) -> float:
    """Amount of motion in [0,1): 0 = still (and for T = 1); see the module docstring."""
    return clip_flow_stats(frames).motion


class FlowScorer(nn.Module):
    """Scorer-contract wrapper with no parameters.

    The measurement (DIS flow) runs in `preprocess`, which returns per-clip statistics; `forward` maps them to
    this dimension's score, batched. Both flow dimensions need the same flow fields, so the statistics go
    through the call's memo (`ClipBatch.memo`): when the facade preprocesses the same clips for `flow_motion` after
    `flow_smoothness`, DIS does not run twice. One DIS instance serves all N clips.
    """

    def __init__(self, dimension: str) -> None:
        super().__init__()
        if dimension not in FLOW_DIMENSIONS_SERVED:
            raise ValueError(f"flow_metrics serves {FLOW_DIMENSIONS_SERVED}, not {dimension!r}")
        self.name = dimension

    def preprocess(self, batch: ClipBatch) -> dict[str, torch.Tensor]:
        """`stats` [N,3] float32: (warp error, acceleration error, mean motion); NaN row for a 1-frame clip."""
        dis: list[Any] = []  # one DIS instance for every clip of the batch, made when first needed

        def measure(frames: torch.Tensor) -> FlowStats:
            if not dis:
                dis.append(_dis())
            return clip_flow_stats(frames, dis[0])

        rows = []
        for frames in batch.frames:
            stats = batch.memo.get(frames, "flow_stats", lambda f=frames: measure(f))
            if stats.warp.size == 0:
                rows.append([math.nan] * 3)
            else:
                rows.append([stats.warp_error, stats.accel_error, float(np.mean(stats.magnitude))])
        return {"stats": torch.tensor(rows, dtype=torch.float32).reshape(-1, 3)}

    def forward(self, stats: torch.Tensor) -> torch.Tensor:
        """[N,3] statistics -> scores [N] float32 in [0,1] (1-frame clips: smoothness 1, motion 0)."""
        stats = stats.float()
        single = torch.isnan(stats[:, 0])
        if self.name == "flow_smoothness":
            score = torch.exp(-stats[:, 0] / TAU_WARP - stats[:, 1] / TAU_ACCEL)
            return torch.where(single, torch.ones_like(score), score)
        score = 1.0 - torch.exp(-stats[:, 2] / TAU_MOTION)
        return torch.where(single, torch.zeros_like(score), score)


def build_scorer(dimension: str, weights: Any = None, **_: Any) -> nn.Module:
    """A flow scorer for `flow_smoothness` or `flow_motion`; weights/dtype/device are accepted and ignored."""
    return FlowScorer(dimension)
