"""character_consistency for one clip: tracked characters → recogniser crops → gallery identity probability.

The official `evaluation`: each tracked object seen in at least 8 frames gives 8 crops; its score is the
top-1 identity probability (softmax over identities, mean over its 8 frames); the clip's score is the mean
over its objects. A clip with no detected character, or whose characters are seen in fewer than 8 frames,
gets `score=None` with the reason (never a made-up number).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from .character_gallery import GalleryEmbeddings
from .character_recognizer import QUERY_FRAMES, CharacterRecognizer, IdentityScore, query_crops
from .character_tracking import Tracks


@dataclass
class CharacterResult:
    score: float | None
    reason: str | None  # why score is None
    objects: list[IdentityScore | None]  # per tracked object (None: seen in fewer than 8 frames)
    seconds: dict[str, float] = field(default_factory=dict)


def score_tracks(frames: np.ndarray, tracks: Tracks, recognizer: CharacterRecognizer,
                 gallery: GalleryEmbeddings, *, jpeg: bool = True) -> CharacterResult:
    """Score a clip's tracked characters (uint8 frames [T,H,W,3]) against the gallery."""
    seconds = dict(tracks.seconds)
    if tracks.labels is None:
        return CharacterResult(None, tracks.reason or "no character tracked", [], seconds)
    t0 = time.perf_counter()
    objects: list[IdentityScore | None] = []
    for object_id in range(1, len(tracks.boxes) + 1):
        crops = query_crops(frames, tracks.masks(object_id), jpeg=jpeg)
        objects.append(None if crops is None else gallery.score(recognizer.embed(crops)))
    seconds["recognise"] = time.perf_counter() - t0
    scored = [o.probability for o in objects if o is not None]
    if not scored:
        return CharacterResult(None, f"no tracked character is visible in {QUERY_FRAMES} frames or more "
                               f"({len(objects)} detected)", objects, seconds)
    return CharacterResult(float(np.mean(scored)), None, objects, seconds)
