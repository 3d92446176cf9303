"""The `character_consistency` scorer: the registry's `build_scorer` for the sixth dimension.

It puts the library parts together (character_tracking: Grounding-DINO detection on the first frame and
SAM2 video tracking; character_recognizer: the BLIP ViT-L recogniser; character_gallery: the gallery and
its embeddings cache; character_consistency: the official score) behind the scorer contract of
scorer_protocol, so the facade batches, places, releases and cancels it like the other dimensions.

Files (weights_layout, kind "parts"): the character folder (official `reward/character/`) holding
`IP_checkpoints/blip_checkpoints/animate_recoginzer.pth` (or its `.safetensors` copy),
`IP_checkpoints/grouding-dino-base/` (HF folder, safetensors), the SAM2.1 tracker (the official
`sam2_checkpoints/sam2.1_hiera_base_plus.pt`, or an HF folder such as `facebook/sam2.1-hiera-base-plus`: both
through sam2_checkpoint), and, optionally, the official gallery `videos/` with its list `gallerys.json`.
Tracking is the official SAMURAI (character_tracking's default).

The gallery is chosen per call (`ClipBatch.settings[GALLERY_SETTING]`: a folder `<root>/<name>/<images>`,
the artist's characters); without one the official gallery is used; with neither, scoring fails with a message
saying how to add one. Embeddings of a gallery are computed once per recogniser (character_gallery's disk
cache, incremental) and kept in memory while its images are unchanged.

A clip with no detected character, or whose characters are seen in fewer than 8 frames, has no score: the
forward returns NaN for it and `last_reasons` says why (the facade turns that into `unscored`).

The recogniser's size is read from its checkpoint (width from `vision_proj`, depth from the blocks, 64-wide
heads as in ViT-L/16), so the same code loads the official ViT-L and the small test recognisers.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from . import cancel
from .character_gallery import GalleryEmbeddings, GalleryError, GalleryIndex, load_gallery
from .character_recognizer import CHECKPOINT_KEY, CharacterRecognizer, load_weights, weights_hash
from .checkpoints import load_checkpoint_dict
from .preprocess import to_uint8
from .scorer_protocol import ClipBatch
from .weights_layout import gallery_list, locate_parts

log = logging.getLogger(__name__)

DIMENSION = "character_consistency"
# The per-call setting naming the gallery folder (`<root>/<identity>/<images>`); None: the official gallery.
GALLERY_SETTING = "character_gallery"
HEAD_WIDTH = 64  # ViT-L/16: 1024 wide, 16 heads


class NoGalleryError(GalleryError):
    """character_consistency was asked to score with no gallery to score against."""


def recognizer_sizes(state: Mapping[str, torch.Tensor]) -> dict[str, int]:
    """width, depth, heads and embed_dim of a recogniser checkpoint (read from its tensors' shapes)."""
    proj = state.get("vision_proj.weight")
    if proj is None or proj.ndim != 2:
        return {}  # not a recogniser: the strict load names what is missing
    blocks = {k.split(".")[2] for k in state if k.startswith("visual_encoder.blocks.")}
    width = int(proj.shape[1])
    return {"width": width, "depth": len(blocks), "heads": max(1, width // HEAD_WIDTH),
            "embed_dim": int(proj.shape[0])}


def load_recognizer(path: Path, *, dtype: torch.dtype, device: str | torch.device) -> CharacterRecognizer:
    """The recogniser from `animate_recoginzer.pth` (key `model`) or its `.safetensors` copy, strict keys."""
    built: list[CharacterRecognizer] = []

    def check(state: dict[str, torch.Tensor]) -> None:
        with torch.device("meta"):
            model = CharacterRecognizer(**recognizer_sizes(state))
        load_weights(model, state, f"{DIMENSION} recogniser {path}")
        built.append(model)

    load_checkpoint_dict(Path(path), CHECKPOINT_KEY, check=check)
    model = built[-1]
    model.weights_hash = weights_hash(Path(path))
    return model.to(device=device, dtype=dtype).eval().requires_grad_(False)


def _pretrained(cls: Any, folder: Path, what: str, **kwargs: Any) -> Any:
    """`cls.from_pretrained(folder)` from safetensors only, every key accounted for; failures name the folder."""
    from .idefics2_regression import check_json_files, checkpoint_shapes

    check_json_files(folder)
    checkpoint_shapes(folder)  # a weights file that is not safetensors (LFS pointer, .bin only) is named here
    try:
        model, info = cls.from_pretrained(folder, use_safetensors=True, output_loading_info=True, **kwargs)
    except Exception as exc:
        raise ValueError(f"unreadable: {folder} ({what}): {type(exc).__name__}: {str(exc)[:300]}; fetch the "
                         "folder's files again") from exc
    problems = {k: v for k, v in info.items() if v and k in ("missing_keys", "unexpected_keys", "mismatched_keys")}
    if problems:
        raise ValueError(f"{folder} ({what}): the weights do not fit the model: {problems}")
    return model


def load_detector(folder: Path, *, dtype: torch.dtype, device: str | torch.device) -> tuple[nn.Module, Any]:
    """Grounding-DINO and its processor from the official HF folder `IP_checkpoints/grouding-dino-base`."""
    from .character_tracking import transformers_classes

    tf = transformers_classes()
    model = _pretrained(tf.GroundingDinoForObjectDetection, folder, "Grounding-DINO", dtype=dtype)
    try:
        processor = tf.GroundingDinoProcessor.from_pretrained(folder)
    except Exception as exc:
        raise ValueError(f"unreadable: {folder} (Grounding-DINO processor: preprocessor_config.json, "
                         f"tokenizer files): {type(exc).__name__}: {str(exc)[:300]}") from exc
    return model.to(device).eval().requires_grad_(False), processor


def load_tracker(path: Path, *, dtype: torch.dtype, device: str | torch.device) -> tuple[nn.Module, Any]:
    """SAM2.1 video model and its processor from the official `.pt` or an HF folder (sam2_checkpoint: strict
    keys, hostile files named)."""
    from .character_tracking import transformers_classes
    from .sam2_checkpoint import load_sam2_video_model, sam2_video_processor

    transformers_classes()
    model = load_sam2_video_model(Path(path), dtype=dtype, device=device)
    model = model.to(device).eval().requires_grad_(False)
    return model, sam2_video_processor(Path(path), image_size=int(model.config.image_size))


@dataclass(frozen=True)
class GalleryRef:
    """Which gallery one call scores against: an images root, and the official list file (None: folders)."""

    root: Path
    listing: Path | None = None

    def index(self) -> GalleryIndex:
        """The gallery's images (no image is read); a list or folder that cannot be read is a GalleryError
        naming it."""
        if self.listing is None:
            return GalleryIndex.from_folders(self.root)
        try:
            return GalleryIndex.from_json(self.root, self.listing)
        except GalleryError:
            raise
        except (OSError, ValueError, KeyError, TypeError, RecursionError) as exc:
            raise GalleryError(f"unreadable: {self.listing}: the official gallery list ({type(exc).__name__}: "
                               f"{str(exc)[:200]}); it must be the official gallerys.json (a list of "
                               f'{{"image": <path under {self.root}>, "caption": <name>}}) and name images '
                               "that are there") from exc


class CharacterScorer(nn.Module):
    """Detector, tracker and recogniser as one module (ComfyUI's model management moves them together)."""

    name = DIMENSION

    def __init__(self, recognizer: CharacterRecognizer, detector: nn.Module, detector_processor: Any,
                 tracker: nn.Module, tracker_processor: Any, official_gallery: GalleryRef | None = None) -> None:
        super().__init__()
        self.recognizer = recognizer
        self.detector = detector
        self.tracker = tracker
        self.detector_processor = detector_processor
        self.tracker_processor = tracker_processor
        self.official_gallery = official_gallery
        self.last_reasons: list[str | None] = []
        self.last_results: list[Any] = []  # character_consistency.CharacterResult per clip of the last forward
        self._galleries: dict[GalleryRef, tuple[tuple, GalleryEmbeddings]] = {}
        self._lock = threading.Lock()

    def gallery_ref(self, setting: object) -> GalleryRef:
        """The gallery a call asked for (a folder path), else the official one; neither: NoGalleryError."""
        if setting is not None:
            return GalleryRef(Path(setting))  # type: ignore[arg-type]
        if self.official_gallery is not None:
            return self.official_gallery
        raise NoGalleryError(
            f"{DIMENSION} has no gallery of characters to compare with: put a folder per character, with a few "
            "images each, in models/animereward/characters/<name>/ (and pick it in AnimeReward Character "
            "Gallery), or the official gallery (videos/ with gallerys.json) in the character folder")

    def gallery(self, ref: GalleryRef) -> GalleryEmbeddings:
        """The gallery's embeddings, recomputed (incrementally, through the disk cache) when its images changed."""
        index = ref.index()
        stamps = tuple(e.stamp for e in index.entries)
        with self._lock:
            held = self._galleries.get(ref)
            if held is not None and held[0] == stamps:
                return held[1]
            emb = load_gallery(index, self.recognizer)
            self._galleries[ref] = (stamps, emb)
            return emb

    def preprocess(self, batch: ClipBatch) -> dict[str, Any]:
        """uint8 frames [T,H,W,3] per clip (the consecutive frames the registry's "window" plan gives) and
        the gallery to score against."""
        return {"frames": [to_uint8(f) for f in batch.frames],
                "gallery": self.gallery_ref(batch.settings.get(GALLERY_SETTING))}

    def forward(self, frames: list[Any], gallery: GalleryRef) -> torch.Tensor:
        """One score per clip (NaN where `last_reasons` says why there is none)."""
        from .character_consistency import score_tracks
        from .character_tracking import find_tracks

        embeddings = self.gallery(gallery)
        scores, reasons, results = [], [], []
        for clip in frames:
            cancel.check()
            tracks = find_tracks(self.detector, self.detector_processor, self.tracker, self.tracker_processor, clip)
            result = score_tracks(clip, tracks, self.recognizer, embeddings)
            results.append(result)
            scores.append(float("nan") if result.score is None else result.score)
            reasons.append(result.reason if result.score is None else None)
        self.last_reasons, self.last_results = reasons, results
        return torch.tensor(scores, dtype=torch.float32)


def official_gallery(folder: Path) -> GalleryRef | None:
    """The official gallery of a character folder (videos/ and its gallerys.json), when both are there."""
    parts = locate_parts(folder, DIMENSION)
    images = parts.get("gallery")
    listing = gallery_list(folder)
    return GalleryRef(images, listing) if images is not None and listing is not None else None


def build_scorer(dimension: str, weights: Path | str, *, dtype: torch.dtype = torch.float32,
                 device: str | torch.device = "cpu") -> CharacterScorer:
    """The scorer from a character folder (what weights_layout.locate gives for this dimension)."""
    if dimension != DIMENSION:
        raise ValueError(f"character_scorer builds only {DIMENSION!r}, not {dimension!r}")
    from .character_tracking import transformers_classes

    transformers_classes()  # an old transformers: the message naming the version, before any file is read
    folder = Path(weights)
    parts = locate_parts(folder, DIMENSION)
    recognizer = load_recognizer(parts["recognizer"], dtype=dtype, device=device)  # type: ignore[arg-type]
    detector, det_proc = load_detector(parts["detector"], dtype=dtype, device=device)  # type: ignore[arg-type]
    tracker, trk_proc = load_tracker(parts["tracker"], dtype=dtype, device=device)  # type: ignore[arg-type]
    return CharacterScorer(recognizer, detector, det_proc, tracker, trk_proc, official_gallery(folder))
