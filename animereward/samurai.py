"""SAMURAI's motion-aware tracking on top of transformers' `Sam2VideoModel`, as the official AnimeReward runs it.

SAMURAI (Yang et al. 2024, `yangchris11/samurai`; vendored by the official code under
`reward/character/samurai/`, config `configs/samurai/sam2.1_hiera_b+.yaml`) changes plain SAM2 video tracking
in three places, all reproduced here:

1. **Motion-aware mask choice.** On a tracked frame SAM2's decoder proposes 3 masks with predicted IoUs; plain
   SAM2 keeps the highest predicted IoU. SAMURAI runs a constant-velocity Kalman filter on the chosen mask's box
   ([cx, cy, w/h, h]) and, once the track has been stable for `stable_frames_threshold` frames (predicted IoU
   above `stable_ious_threshold` each time), keeps the mask with the highest
   `kf_score_weight · IoU(Kalman box, mask box) + (1 - kf_score_weight) · predicted IoU`.
2. **Motion-aware memory.** Plain SAM2 conditions a frame on the last `num_maskmem - 1` frames. SAMURAI takes
   the last `num_maskmem - 1` frames whose predicted IoU is above `memory_bank_iou_threshold` and whose object
   score logit is above `memory_bank_obj_score_threshold` (frames 2.. only), plus always the previous frame.
   The official config also names `memory_bank_kf_score_threshold`, but its code reads a per-frame key
   (`kf_score`) that nothing ever writes, so the Kalman score never filters memory there; `None` (the default)
   keeps that behaviour, a number applies the threshold.
3. **Object presence.** A frame's masks and object pointer count the object as present when its object score
   logit is above `min_obj_score_logits` (-1) instead of SAM2's 0; the memory encoder's "occluded" embedding
   still uses 0.

How it sits on transformers 4.57.1+ (the first release with `_gather_memory_frame_outputs`; tested with 4.57.6
and 5.23.0): `SamuraiTracking` is a context manager around one propagation. The model keeps its class and
weights; for the duration it gets one forward hook and instance overrides of three methods, all removed on exit:
- a forward hook on `model.mask_decoder` reads the 3 proposals (masks, predicted IoUs, object score), makes the
  choice above, and hands transformers a one-hot score so that its own `argmax` picks SAMURAI's mask (masks,
  object pointer and memory then all follow that choice, as in SAMURAI); it also hands back +1 / -1 as the
  object score (present / absent by SAMURAI's `> -1`) for transformers' `> 0` presence test;
- `_run_single_frame_inference` marks which object and frame the hook is working for, restores the true object
  score in the stored output and stores the frame's `FrameScores` beside it;
- `_encode_new_memory` gets the true object score (the occlusion embedding keeps SAM2's `> 0`; transformers 5
  encodes memory after the frame, from the stored output, which already holds the true score);
- `_gather_memory_frame_outputs` picks the memory frames by `memory_frames` (conditioning frames unchanged).
Object pointers are not touched (SAMURAI does not change them). Frames with mask prompts, or propagation in
reverse, are left to plain SAM2 (the character pipeline uses neither). The Kalman filter below is written
from the published equations (the DeepSORT filter SAMURAI uses), not copied.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

HOOKED_METHODS = ("_run_single_frame_inference", "_encode_new_memory", "_gather_memory_frame_outputs")


def missing_hooks(model_class: type) -> list[str]:
    """The methods SAMURAI overrides that this `Sam2VideoModel` class lacks (transformers 4.56 has no
    `_gather_memory_frame_outputs`)."""
    return [name for name in HOOKED_METHODS if not callable(getattr(model_class, name, None))]


@dataclass(frozen=True)
class SamuraiConfig:
    """SAMURAI's constants, as `configs/samurai/sam2.1_hiera_b+.yaml` sets them (the official AnimeReward's)."""

    stable_frames_threshold: int = 15
    stable_ious_threshold: float = 0.3
    min_obj_score_logits: float = -1.0
    kf_score_weight: float = 0.25
    memory_bank_iou_threshold: float = 0.5
    memory_bank_obj_score_threshold: float = 0.0
    memory_bank_kf_score_threshold: float | None = None  # config says 0.0; the official code never applies it


Box = Sequence[float]  # x1, y1, x2, y2 (pixels; [0, 0, 0, 0] = no mask)
EMPTY_BOX = (0, 0, 0, 0)


def xyxy_to_xyah(box: Box) -> np.ndarray:
    """Corner box → centre x, centre y, aspect w/h, height (a zero height counts as 1, as SAMURAI does)."""
    x1, y1, x2, y2 = (float(v) for v in box)
    h = y2 - y1
    if h == 0:
        h = 1.0
    return np.array([(x1 + x2) / 2, (y1 + y2) / 2, (x2 - x1) / h, h])


def xyah_to_xyxy(xyah: Sequence[float]) -> tuple[float, float, float, float]:
    cx, cy, a, h = (float(v) for v in xyah[:4])
    w = a * h
    return (cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2)


def box_iou(a: Box, b: Box) -> float:
    """IoU of two corner boxes; 0 when `b` is the empty box or the union is 0 (SAMURAI's conventions)."""
    if tuple(b) == EMPTY_BOX:
        return 0.0
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return float(inter / union) if union != 0 else 0.0


def mask_box(mask: torch.Tensor) -> tuple[int, int, int, int]:
    """Tight box of a boolean mask [H, W] with inclusive max corners (SAMURAI's), or the empty box."""
    rows = torch.nonzero(mask.any(dim=1))
    if rows.numel() == 0:
        return EMPTY_BOX
    cols = torch.nonzero(mask.any(dim=0))
    return (int(cols[0]), int(rows[0]), int(cols[-1]), int(rows[-1]))


def proposal_box(low_res_mask: torch.Tensor, image_size: int) -> tuple[int, int, int, int]:
    """Box of one decoder proposal [h, w] (logits) at the model's input size, as SAMURAI measures it: bilinear
    upsampling to image_size², logit > 0."""
    high = F.interpolate(low_res_mask[None, None].float(), size=(image_size, image_size), mode="bilinear",
                         align_corners=False)[0, 0]
    return mask_box(high > 0)


class KalmanBoxFilter:
    """Constant-velocity Kalman filter on [cx, cy, a, h] and their velocities (8 states, one frame per step).

    Noise is proportional to the box height, as in DeepSORT/SAMURAI: position std h/20, velocity std h/160, the
    aspect ratio almost fixed (1e-2, velocity 1e-5; measurement 1e-1). A new track starts with twice the
    position std and ten times the velocity std, velocities 0.
    """

    POSITION = 1.0 / 20
    VELOCITY = 1.0 / 160

    def __init__(self) -> None:
        self.motion = np.eye(8)
        self.motion[:4, 4:] = np.eye(4)  # x_{t+1} = x_t + v_t
        self.observe = np.eye(4, 8)

    def _std(self, h: float, pos: float, vel: float, aspect: float, aspect_vel: float) -> np.ndarray:
        return np.array([pos * h, pos * h, aspect, pos * h, vel * h, vel * h, aspect_vel, vel * h])

    def initiate(self, xyah: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        h = float(xyah[3])
        std = self._std(h, 2 * self.POSITION, 10 * self.VELOCITY, 1e-2, 1e-5)
        return np.r_[np.asarray(xyah, dtype=float), np.zeros(4)], np.diag(std**2)

    def predict(self, mean: np.ndarray, cov: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        q = np.diag(self._std(float(mean[3]), self.POSITION, self.VELOCITY, 1e-2, 1e-5) ** 2)
        return self.motion @ mean, self.motion @ cov @ self.motion.T + q

    def project(self, mean: np.ndarray, cov: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        h = float(mean[3])
        r = np.diag(np.array([self.POSITION * h, self.POSITION * h, 1e-1, self.POSITION * h]) ** 2)
        return self.observe @ mean, self.observe @ cov @ self.observe.T + r

    def update(self, mean: np.ndarray, cov: np.ndarray, xyah: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        z_mean, s = self.project(mean, cov)
        gain = np.linalg.solve(s, (cov @ self.observe.T).T).T  # P Hᵀ S⁻¹ (S is symmetric)
        new_mean = mean + gain @ (np.asarray(xyah, dtype=float) - z_mean)
        return new_mean, cov - gain @ s @ gain.T


@dataclass
class ObjectMotion:
    """One object's Kalman state and how many consecutive frames its track has been stable."""

    mean: np.ndarray | None = None
    cov: np.ndarray | None = None
    stable_frames: int = 0


@dataclass(frozen=True)
class MaskChoice:
    """Which of the multimask proposals SAMURAI keeps, and why ("start", "warm-up" or "motion")."""

    index: int
    phase: str
    kf_ious: tuple[float, ...] | None = None
    weighted: tuple[float, ...] | None = None

    @property
    def kf_score(self) -> float | None:
        return None if self.kf_ious is None else self.kf_ious[self.index]


def choose_mask(motion: ObjectMotion, ious: Sequence[float], box_of: Callable[[int], Box],
                config: SamuraiConfig, kf: KalmanBoxFilter) -> MaskChoice:
    """SAMURAI's mask choice among the proposals of one tracked frame; advances `motion` by one frame.

    `ious` are the decoder's predicted IoUs, `box_of(i)` the box of proposal i at the model's input size.
    (Re)start: the best predicted IoU, the filter starts from its box. Warm-up (fewer than
    `stable_frames_threshold` stable frames): still the best predicted IoU; the filter is updated with its box
    while the predicted IoU stays above `stable_ious_threshold`, else the track restarts next frame. After
    warm-up: the best weighted score, the filter is updated with its box (or restarts if its predicted IoU is
    below the threshold).
    """
    ious = np.asarray(ious, dtype=np.float64)
    if motion.mean is None or motion.stable_frames == 0:
        best = int(np.argmax(ious))
        motion.mean, motion.cov = kf.initiate(xyxy_to_xyah(box_of(best)))
        motion.stable_frames += 1
        return MaskChoice(best, "start")
    motion.mean, motion.cov = kf.predict(motion.mean, motion.cov)
    if motion.stable_frames < config.stable_frames_threshold:
        best = int(np.argmax(ious))
        if ious[best] > config.stable_ious_threshold:
            motion.mean, motion.cov = kf.update(motion.mean, motion.cov, xyxy_to_xyah(box_of(best)))
            motion.stable_frames += 1
        else:
            motion.stable_frames = 0
        return MaskChoice(best, "warm-up")
    predicted = xyah_to_xyxy(motion.mean[:4])
    boxes = [box_of(i) for i in range(len(ious))]
    kf_ious = np.array([box_iou(predicted, b) for b in boxes])
    weighted = config.kf_score_weight * kf_ious + (1 - config.kf_score_weight) * ious
    best = int(np.argmax(weighted))
    if ious[best] < config.stable_ious_threshold:
        motion.stable_frames = 0
    else:
        motion.mean, motion.cov = kf.update(motion.mean, motion.cov, xyxy_to_xyah(boxes[best]))
    return MaskChoice(best, "motion", tuple(kf_ious.tolist()), tuple(weighted.tolist()))


@dataclass(frozen=True)
class FrameScores:
    """What SAMURAI's memory selection reads of a tracked frame: predicted IoU, object score logit, Kalman IoU."""

    iou: float
    object_score: float
    kf_score: float | None = None

    def qualifies(self, config: SamuraiConfig) -> bool:
        kf_ok = (config.memory_bank_kf_score_threshold is None or self.kf_score is None
                 or self.kf_score > config.memory_bank_kf_score_threshold)
        return (self.iou > config.memory_bank_iou_threshold
                and self.object_score > config.memory_bank_obj_score_threshold and kf_ok)


def memory_frames(frame_idx: int, scores: Mapping[int, FrameScores | None], num_maskmem: int,
                  max_object_pointers: int, config: SamuraiConfig) -> list[int]:
    """The non-conditioning frames SAMURAI puts in the memory bank of `frame_idx`, oldest first.

    Frames frame_idx-1 down to 2 whose scores qualify (the search stops after `max_object_pointers - 1` of
    them, as the official loop does), plus frame_idx-1 in any case; the last `num_maskmem - 1` of those.
    """
    if num_maskmem <= 1:
        return []
    chosen: list[int] = []
    for i in range(frame_idx - 1, 1, -1):
        s = scores.get(i)
        if s is not None and s.qualifies(config):
            chosen.insert(0, i)
        if len(chosen) >= max_object_pointers - 1:
            break
    if frame_idx - 1 not in chosen:
        chosen.append(frame_idx - 1)
    return chosen[-(num_maskmem - 1):]


@dataclass
class _Step:
    obj_idx: int
    frame_idx: int
    object_score_logits: torch.Tensor | None = None
    scores: FrameScores | None = None


@dataclass
class TrackRecord:
    """One object on one frame, for tests and measurements: the mask choice and the memory frames used."""

    frame_idx: int
    obj_idx: int
    ious: tuple[float, ...] = ()
    choice: MaskChoice | None = None
    memory: list[int] | None = None


@dataclass
class SamuraiTracking:
    """Context manager: SAMURAI's mask choice and memory on one `Sam2VideoModel` while it is active.

        with SamuraiTracking(model):
            for out in model.propagate_in_video_iterator(session, start_frame_idx=0): ...

    Kalman state is per object index and lives in this object, so use one per inference session.
    `records` keeps what was chosen on each tracked frame (plain data, for tests and benchmarks).
    """

    model: Any
    config: SamuraiConfig = field(default_factory=SamuraiConfig)
    records: dict[tuple[int, int], TrackRecord] = field(default_factory=dict)  # by (frame_idx, obj_idx)

    def __post_init__(self) -> None:
        self._kf = KalmanBoxFilter()
        self._motion: dict[int, ObjectMotion] = {}
        self._step: _Step | None = None
        self._handle: Any = None
        self._originals: dict[str, Any] = {}

    # --- installation -------------------------------------------------------------------------------------
    def __enter__(self) -> SamuraiTracking:
        model = self.model
        if missing := missing_hooks(type(model)):
            raise RuntimeError(f"SAMURAI tracking cannot hook this {type(model).__name__}: it has no "
                               f"{', '.join(missing)} (transformers >= 4.57.1 has them)")
        for name in HOOKED_METHODS:
            if name in vars(model):
                raise RuntimeError(f"{type(model).__name__}.{name} is already overridden on this model "
                                   "(nested SamuraiTracking?)")
            self._originals[name] = getattr(model, name)
        model._run_single_frame_inference = self._run_single_frame_inference
        model._encode_new_memory = self._encode_new_memory
        model._gather_memory_frame_outputs = self._gather_memory_frame_outputs
        self._handle = model.mask_decoder.register_forward_hook(self._after_mask_decoder)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._handle is not None:
            self._handle.remove()
            self._handle = None
        for name in self._originals:
            vars(self.model).pop(name, None)
        self._originals.clear()
        self._step = None

    # --- the overrides ------------------------------------------------------------------------------------
    def _run_single_frame_inference(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
        original = self._originals["_run_single_frame_inference"]
        a = inspect.signature(original).bind(*args, **kwargs).arguments
        engaged = (a.get("mask_inputs") is None and a.get("prev_sam_mask_logits") is None
                   and not a.get("reverse", False))
        self._step = _Step(int(a["obj_idx"]), int(a["frame_idx"])) if engaged else None
        try:
            out = original(*args, **kwargs)
            step = self._step
        finally:
            self._step = None
        if step is not None and step.object_score_logits is not None:
            out["object_score_logits"] = step.object_score_logits
            out["samurai"] = step.scores
        return out

    def _encode_new_memory(self, *args: Any, **kwargs: Any) -> Any:
        original = self._originals["_encode_new_memory"]
        step = self._step
        if step is not None and step.object_score_logits is not None:
            bound = inspect.signature(original).bind(*args, **kwargs)
            bound.arguments["object_score_logits"] = step.object_score_logits
            return original(*bound.args, **bound.kwargs)
        return original(*args, **kwargs)

    def _after_mask_decoder(self, module: Any, inputs: Any, output: tuple) -> tuple | None:
        step = self._step
        if step is None:
            return None
        masks, iou_pred, tokens, object_score_logits = output
        cfg = self.config
        step.object_score_logits = object_score_logits
        ious = tuple(float(v) for v in iou_pred[0, 0].float().cpu())
        object_score = float(object_score_logits.flatten()[0])
        # transformers counts the object present where the score is > 0: hand it SAMURAI's verdict (> min) as ±1
        presence = torch.where(object_score_logits > cfg.min_obj_score_logits, 1.0, -1.0).to(object_score_logits)
        if masks.shape[2] == 1:  # single-mask output (the prompted frame): no choice to make
            step.scores = FrameScores(ious[0], object_score)
            return masks, iou_pred, tokens, presence
        appearing = object_score > cfg.min_obj_score_logits
        size = int(self.model.image_size)

        def box_of(i: int) -> Box:
            return proposal_box(masks[0, 0, i], size) if appearing else EMPTY_BOX  # absent: "no object" masks

        motion = self._motion.setdefault(step.obj_idx, ObjectMotion())
        choice = choose_mask(motion, ious, box_of, cfg, self._kf)
        step.scores = FrameScores(ious[choice.index], object_score, choice.kf_score)
        rec = self._record(step)
        rec.choice, rec.ious = choice, ious
        # transformers keeps argmax(iou_pred): give it SAMURAI's choice as a one-hot score.
        one_hot = torch.zeros_like(iou_pred)
        one_hot[..., choice.index] = 1
        return masks, one_hot, tokens, presence

    def _gather_memory_frame_outputs(self, *args: Any, **kwargs: Any) -> list[tuple[int, Any]]:
        original = self._originals["_gather_memory_frame_outputs"]
        pairs = original(*args, **kwargs)
        a = inspect.signature(original).bind(*args, **kwargs).arguments
        if a.get("track_in_reverse_time", False):
            return pairs
        session, obj_idx, frame_idx = a["inference_session"], int(a["obj_idx"]), int(a["frame_idx"])
        non_cond = session.output_dict_per_obj[obj_idx]["non_cond_frame_outputs"]
        scores = {i: out.get("samurai") for i, out in non_cond.items()}
        n = int(self.model.num_maskmem)
        frames = memory_frames(frame_idx, scores, n, int(self.model.config.max_object_pointers_in_encoder),
                               self.config)
        rec = self._record(_Step(obj_idx, frame_idx))
        rec.memory = [i for i in frames if i in non_cond]
        kept = [(0, out) for offset, out in pairs if offset == 0]  # conditioning frames, as transformers has them
        # A conditioning frame that transformers left out of those (5.x limits their number) may still serve as a
        # recent frame, as in SAM2/SAMURAI.
        kept_ids = {id(out) for _, out in kept}
        cond = session.output_dict_per_obj[obj_idx]["cond_frame_outputs"]
        unselected = {i: out for i, out in cond.items() if id(out) not in kept_ids}
        # offset r = r-th most recent chosen frame (the temporal encoding plain SAM2 gives "r frames ago")
        return kept + [(r, non_cond.get(frames[-r], unselected.get(frames[-r])))
                       for r in range(n - 1, 0, -1) if r <= len(frames)]

    def _record(self, step: _Step) -> TrackRecord:
        key = (step.frame_idx, step.obj_idx)
        if key not in self.records:
            self.records[key] = TrackRecord(step.frame_idx, step.obj_idx)
        return self.records[key]
