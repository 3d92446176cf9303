"""Character detection and tracking on transformers' Grounding-DINO and SAM2 video classes (small random
configs of the real classes), the defined no-character result, the message for an old transformers, and the
clip score from tracked characters: a clip that keeps its character scores higher than one whose character
changes mid-clip."""

from __future__ import annotations

import types
from pathlib import Path

import numpy as np
import pytest
import torch
from animereward_testkit.characters import (
    draw_character,
    make_gallery,
    small_detector,
    small_model,
    small_tracker,
)

from animereward import character_gallery as cg
from animereward.character_consistency import score_tracks
from animereward.character_tracking import (
    MAX_CHARACTERS,
    REQUIRED_TRANSFORMERS,
    CharacterModelsUnavailable,
    Tracks,
    detect_characters,
    find_tracks,
    official_box,
    transformers_classes,
)


@pytest.fixture(scope="module")
def detector():
    return small_detector()


@pytest.fixture(scope="module")
def tracker():
    return small_tracker()


def clip_of(names: list[str], size: int = 96) -> tuple[np.ndarray, np.ndarray]:
    """uint8 frames [T,H,W,3] with one character per frame (name per frame) and the label map of object 1."""
    frames, masks = zip(*(draw_character(n, size=size, jitter=(i % 5) - 2) for i, n in enumerate(names)),
                        strict=True)
    return np.stack(frames), np.stack(masks).astype(np.uint16)


def test_old_transformers_gets_the_version_to_install() -> None:
    old = types.SimpleNamespace(__version__="4.46.3", GroundingDinoForObjectDetection=object,
                                GroundingDinoProcessor=object)
    with pytest.raises(CharacterModelsUnavailable) as err:
        transformers_classes(old)
    msg = str(err.value)
    assert REQUIRED_TRANSFORMERS in msg and "4.46.3" in msg and "Sam2VideoModel" in msg
    assert "other dimensions" in msg
    assert transformers_classes().Sam2VideoModel.__name__ == "Sam2VideoModel"  # this venv's 4.57 has them


def test_official_box_rounding() -> None:
    assert official_box(10.4, 20.6, 50.5, 80.2) == (10, 21, 50, 81)  # w=round(40.1)=40, h=round(59.6)=60


def test_detection_keeps_the_five_largest_boxes(detector) -> None:
    model, proc = detector
    frames, _ = clip_of(["Akane"])
    boxes = detect_characters(model, proc, frames[0], box_threshold=0.0, text_threshold=0.0)
    assert len(boxes) == MAX_CHARACTERS  # 10 queries all pass threshold 0: the 5 largest stay
    areas = [(b[2] - b[0]) * (b[3] - b[1]) for b in boxes]
    assert all(isinstance(v, int) for b in boxes for v in b)
    assert areas == sorted(areas, reverse=True)


def test_no_character_detected_is_a_none_score_with_a_reason(detector, tracker) -> None:
    model, proc = detector
    # A detector whose decoder outputs are all zero scores every query sigmoid(0) = 0.5, not above the
    # official 0.5 threshold: nothing is detected.
    blank = type(model)(model.config).eval()
    blank.load_state_dict(model.state_dict())
    with torch.no_grad():
        blank.model.decoder.layer_norm.weight.zero_()
        blank.model.decoder.layer_norm.bias.zero_()
    frames, _ = clip_of(["Akane"] * 4)
    tracks = find_tracks(blank, proc, *tracker, frames)
    assert tracks.labels is None and tracks.boxes == []
    assert "no character detected" in tracks.reason
    result = score_tracks(frames, tracks, small_model(), None)  # type: ignore[arg-type]
    assert result.score is None and result.reason == tracks.reason


def test_detect_track_recognise_end_to_end(detector, tracker, tmp_path: Path) -> None:
    frames, _ = clip_of(["Akane"] * 9)
    tracks = find_tracks(*detector, *tracker, frames[:, :, :])
    assert tracks.reason is None and 1 <= len(tracks.boxes) <= MAX_CHARACTERS
    assert tracks.labels is not None and tracks.labels.shape == frames.shape[:3] and tracks.labels.dtype == np.uint16
    assert int(tracks.labels.max()) <= len(tracks.boxes)
    model = small_model()
    gallery = cg.load_gallery(cg.GalleryIndex.from_folders(make_gallery(tmp_path / "characters")), model)
    result = score_tracks(frames, tracks, model, gallery)
    assert len(result.objects) == len(tracks.boxes)
    if result.score is None:  # random tracker weights may lose every object: then the reason says so
        assert "8 frames" in result.reason
    else:
        assert 1 / len(gallery.identities) <= result.score <= 1
    assert {"detect", "track", "recognise"} <= set(result.seconds)


def test_a_kept_character_scores_higher_than_one_that_changes(tmp_path: Path) -> None:
    model = small_model()
    gallery = cg.load_gallery(cg.GalleryIndex.from_folders(make_gallery(tmp_path / "characters")), model)
    kept_frames, kept_labels = clip_of(["Akane"] * 16)
    changed_frames, changed_labels = clip_of(["Akane"] * 8 + ["Bo"] * 8)
    kept = score_tracks(kept_frames, Tracks([(0, 0, 1, 1)], kept_labels), model, gallery)
    changed = score_tracks(changed_frames, Tracks([(0, 0, 1, 1)], changed_labels), model, gallery)
    assert kept.objects[0].identity == "akane"
    print(f"kept {kept.score:.3f} vs changed {changed.score:.3f}")
    assert kept.score > changed.score + 0.1
    # Seen in fewer than 8 frames: no score, and the reason says so.
    short = score_tracks(kept_frames[:7], Tracks([(0, 0, 1, 1)], kept_labels[:7]), model, gallery)
    assert short.score is None and "8 frames" in short.reason and short.objects == [None]
