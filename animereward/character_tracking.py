"""Find the characters of a clip and follow them: Grounding-DINO on the first frame, SAM2 video propagation.

Official: `reward/character/samurai/samurai_with_gdino_t2v.py` (`infer_groundino`) and `scripts/demo.py`.
Facts this port keeps:
- detection: `AutoModelForZeroShotObjectDetection` (Grounding-DINO-base, an HF folder
  `IP_checkpoints/grouding-dino-base`) on one image with the text "character.", box and text thresholds 0.5;
  more than 5 boxes → the 5 largest by area; boxes are rounded to integer x, y, w, h before tracking;
- tracking: each box is a SAM2.1 hiera-base+ box prompt on frame 0, propagated forward through the clip; a
  pixel belongs to an object where its mask logit is > 0; objects are written into one label map in order,
  so where masks overlap the later object wins (the official `mask.npy`, object ids 1..K).
Where we differ (documented in docs/character.md):
- the official code detects on the clip's key image (the i2v input, resized and centre-cropped to the clip's
  frame size); we detect on the clip's first frame, which is that image for an image-to-video model;
- the official tracker is SAMURAI (SAM2 plus a Kalman-filtered, motion-aware choice of masks and memory
  frames); `tracking="samurai"` (the default) runs it on transformers' `Sam2VideoModel` (`samurai.py`),
  `tracking="sam2"` runs plain SAM2 propagation; all objects run in one session (transformers runs each object
  through the model separately, with its own memory, and SAMURAI keeps a Kalman filter per object, as separate
  official runs do);
- the official demo runs under CUDA fp16 autocast; we run in the dtype the models were loaded in.

transformers' `Sam2VideoModel` arrived in 4.56, the methods SAMURAI hooks (`samurai.HOOKED_METHODS`) in 4.57.1;
an older transformers (ComfyUI installs its own) gets `CharacterModelsUnavailable` naming the version, and the
other dimensions keep working.
"""

from __future__ import annotations

import importlib
from contextlib import nullcontext
from dataclasses import dataclass, field
from types import ModuleType, SimpleNamespace
from typing import Any, Literal

import numpy as np
import torch

from .samurai import SamuraiTracking, missing_hooks

REQUIRED_TRANSFORMERS = "4.57.1"  # Sam2VideoModel (4.56) with the methods SAMURAI hooks (4.57.1; 4.57.0 was yanked)
DETECTION_PROMPT = "character."
BOX_THRESHOLD = 0.5
TEXT_THRESHOLD = 0.5
MAX_CHARACTERS = 5
TRACKING = ("samurai", "sam2")  # the official pipeline's tracker first
_CLASSES = ("GroundingDinoForObjectDetection", "GroundingDinoProcessor", "Sam2VideoModel", "Sam2VideoProcessor")


class CharacterModelsUnavailable(ImportError):
    """The transformers in this Python lacks the detector or tracker classes character_consistency needs."""


def transformers_classes(module: ModuleType | Any | None = None) -> SimpleNamespace:
    """The four transformers classes (the tracker with SAMURAI's hook points), or `CharacterModelsUnavailable`
    with the version to install."""
    if module is None:
        module = importlib.import_module("transformers")
    missing = []
    found = {}
    for name in _CLASSES:
        try:
            found[name] = getattr(module, name)
        except (AttributeError, ImportError):
            missing.append(name)
    if "Sam2VideoModel" in found:
        missing += [f"Sam2VideoModel.{m} (SAMURAI tracking)" for m in missing_hooks(found["Sam2VideoModel"])]
    if missing:
        have = getattr(module, "__version__", "unknown")
        raise CharacterModelsUnavailable(
            f"character_consistency needs transformers >= {REQUIRED_TRANSFORMERS} (it uses {', '.join(missing)}); "
            f"this Python has transformers {have}. Update it in ComfyUI's Python with "
            f"`python -m pip install 'transformers>={REQUIRED_TRANSFORMERS}'`, or leave character_consistency "
            "off: the other dimensions work without it.")
    return SimpleNamespace(**found)


Box = tuple[int, int, int, int]  # x1, y1, x2, y2 in pixels, as the tracker receives it


def official_box(x1: float, y1: float, x2: float, y2: float) -> Box:
    """The official rounding: the box is saved as round(x), round(y), round(w), round(h), read back as x, y, x+w, y+h."""
    x, y, w, h = round(x1), round(y1), round(x2 - x1), round(y2 - y1)
    return (x, y, x + w, y + h)


def _device_dtype(model: torch.nn.Module) -> tuple[torch.device, torch.dtype]:
    p = next(model.parameters())
    return p.device, p.dtype


@torch.no_grad()
def detect_characters(model: Any, processor: Any, image: np.ndarray, *, box_threshold: float = BOX_THRESHOLD,
                      text_threshold: float = TEXT_THRESHOLD, max_characters: int = MAX_CHARACTERS) -> list[Box]:
    """Boxes of the characters Grounding-DINO finds in one uint8 RGB image [H,W,3] (official prompt, thresholds)."""
    from PIL import Image

    device, dtype = _device_dtype(model)
    inputs = processor(images=Image.fromarray(image), text=DETECTION_PROMPT, return_tensors="pt")
    inputs = {k: (v.to(device, dtype) if v.is_floating_point() else v.to(device)) for k, v in inputs.items()}
    outputs = model(**inputs)
    result = processor.post_process_grounded_object_detection(
        outputs, inputs["input_ids"], threshold=box_threshold, text_threshold=text_threshold,
        target_sizes=[image.shape[:2]])[0]
    boxes = [tuple(float(v) for v in b) for b in result["boxes"].float().cpu().tolist()]
    if len(boxes) > max_characters:
        boxes = sorted(boxes, key=lambda b: (b[2] - b[0]) * (b[3] - b[1]), reverse=True)[:max_characters]
    return [official_box(*b) for b in boxes]


@torch.no_grad()
def track_characters(model: Any, processor: Any, frames: np.ndarray, boxes: list[Box], *,
                     tracking: Literal["samurai", "sam2"] = "samurai") -> np.ndarray:
    """SAM2 propagation of first-frame boxes through uint8 frames [T,H,W,3] → label map uint16 [T,H,W].

    0 is background, k (1-based) is the k-th box; where masks overlap the later object wins (official order).
    `tracking`: "samurai" (official: motion-aware mask and memory choice, `samurai.py`) or "sam2" (plain).
    """
    if tracking not in TRACKING:
        raise ValueError(f"tracking must be one of {TRACKING}, not {tracking!r}")
    t, h, w = frames.shape[:3]
    labels = np.zeros((t, h, w), dtype=np.uint16)
    if not boxes:
        return labels
    device, dtype = _device_dtype(model)
    session = processor.init_video_session(video=list(frames), inference_device=device, dtype=dtype)
    ids = list(range(1, len(boxes) + 1))
    processor.add_inputs_to_inference_session(session, frame_idx=0, obj_ids=ids,
                                              input_boxes=[[list(map(float, b)) for b in boxes]])
    with SamuraiTracking(model) if tracking == "samurai" else nullcontext():
        for out in model.propagate_in_video_iterator(session, start_frame_idx=0):
            masks = processor.post_process_masks([out.pred_masks], original_sizes=[[h, w]], binarize=True,
                                                 mask_threshold=0.0)[0]  # [K,1,H,W] bool, object order
            frame = labels[out.frame_idx]
            for k, obj_id in enumerate(session.obj_ids):
                frame[masks[k, 0].cpu().numpy().astype(bool)] = obj_id
    return labels


@dataclass
class Tracks:
    """The characters of one clip: first-frame boxes and the per-frame label map (None with a reason)."""

    boxes: list[Box]
    labels: np.ndarray | None
    reason: str | None = None
    seconds: dict[str, float] = field(default_factory=dict)

    def masks(self, object_id: int) -> list[np.ndarray]:
        """Boolean masks [H,W] of one object (1-based), one per frame."""
        if self.labels is None:
            return []
        return [frame == object_id for frame in self.labels]


def find_tracks(detector: Any, detector_processor: Any, tracker: Any, tracker_processor: Any,
                frames: np.ndarray, *, tracking: Literal["samurai", "sam2"] = "samurai") -> Tracks:
    """Detect on frame 0, track through the clip. No character found → `Tracks(labels=None, reason=...)`."""
    import time

    t0 = time.perf_counter()
    boxes = detect_characters(detector, detector_processor, frames[0])
    t1 = time.perf_counter()
    if not boxes:
        return Tracks([], None, f"no character detected in the first frame (Grounding-DINO, text "
                                f"{DETECTION_PROMPT!r}, thresholds {BOX_THRESHOLD}/{TEXT_THRESHOLD})",
                      {"detect": t1 - t0})
    labels = track_characters(tracker, tracker_processor, frames, boxes, tracking=tracking)
    return Tracks(boxes, labels, None, {"detect": t1 - t0, "track": time.perf_counter() - t1})
