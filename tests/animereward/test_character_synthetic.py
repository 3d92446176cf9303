"""character_consistency on the library's clip generator (`animereward/synthetic_clips.py`): two named
characters ("red": oval body and hat, "blue": box body and belt), a gallery folder drawn by the same code, and
the generator's ground-truth label maps.

- recognise → score on the ground-truth tracks: a clip that keeps its characters scores higher than its twin
  where one character takes the other's look (colours and shape) from frame 8 on, for each character and two
  seeds; the character that does not change scores exactly the same;
- detect → track (SAMURAI) → recognise → score with the test kit's small random detector and tracker: the
  pipeline runs end to end and gives the outcome pinned for this seed. Random weights measure nothing here
  (the boxes and masks are unrelated to the characters); the test pins the plumbing, not a quality.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from animereward_testkit.characters import small_detector, small_model, small_tracker
from PIL import Image

from animereward import character_gallery as cg
from animereward.character_consistency import CharacterResult, score_tracks
from animereward.character_recognizer import CharacterRecognizer, state_fingerprint
from animereward.character_tracking import MAX_CHARACTERS, Tracks, find_tracks
from animereward.synthetic_clips import (
    CHARACTER_LOOKS,
    CharacterClip,
    character_gallery_images,
    make_character_clip,
    make_clip,
)

NAMES = ("red", "blue")
OTHER = {"red": "blue", "blue": "red"}
CHANGE_AT = 8
# The test kit's random recogniser separates the two looks only weakly (top-1 0.56 on its own character,
# 0.51-0.53 once it changes: see docs/character.md). Scaling its projection by 3 scales the similarities by 9
# (a softmax temperature of 1/9), so the kept-vs-changed gap is large enough to show; the ranking is the same.
PROJECTION_SCALE = 3.0


def uint8(clip: CharacterClip) -> np.ndarray:
    return (clip.frames.numpy() * 255 + 0.5).astype(np.uint8)


def sharp_recognizer() -> CharacterRecognizer:
    model = small_model()
    with torch.no_grad():
        model.vision_proj.weight.mul_(PROJECTION_SCALE)
        model.vision_proj.bias.mul_(PROJECTION_SCALE)
    model.weights_hash = state_fingerprint(model)
    return model


def write_gallery(root: Path, names: tuple[str, ...] = NAMES) -> Path:
    """The artist's folder convention `<root>/<name>/<i>.png`, images from the generator."""
    for name in names:
        (root / name).mkdir(parents=True)
        for i, img in enumerate(character_gallery_images(name)):
            Image.fromarray(img).save(root / name / f"{i}.png")
    return root


@pytest.fixture(scope="module")
def recognizer_and_gallery(tmp_path_factory: pytest.TempPathFactory):
    model = sharp_recognizer()
    gallery = cg.load_gallery(cg.GalleryIndex.from_folders(write_gallery(tmp_path_factory.mktemp("gallery"))),
                              model)
    assert gallery.identities == ["blue", "red"]
    return model, gallery


def score_ground_truth(clip: CharacterClip, model: CharacterRecognizer, gallery: cg.GalleryEmbeddings
                       ) -> CharacterResult:
    """The generator's label maps as the tracks (object k = the k-th character); boxes are not read here."""
    return score_tracks(uint8(clip), Tracks([(0, 0, 1, 1)] * len(clip.characters), clip.labels), model, gallery)


def test_the_generator_draws_characters_and_their_label_maps() -> None:
    clip = make_character_clip(0, NAMES, frames=4)
    assert clip.frames.shape == (4, 96, 160, 3) and clip.labels.shape == (4, 96, 160)
    assert clip.labels.dtype == np.uint16 and set(np.unique(clip.labels)) == {0, 1, 2}
    frames = clip.frames.numpy()
    for k, name in enumerate(NAMES, start=1):  # the body colour is on the pixels labelled with its character
        body = np.array(CHARACTER_LOOKS[name].body, np.float32)
        on_body = np.abs(frames - body).max(axis=-1) < 1e-3
        assert on_body[clip.labels == k].sum() > 100 and not on_body[clip.labels != k].any()
    # the scene is the plain generator's: away from the characters (and their anti-aliased edge pixel) the
    # pixels are make_clip's
    near = np.pad(clip.labels > 0, ((0, 0), (1, 1), (1, 1)))
    near = np.any([near[:, 1 + dy:97 + dy, 1 + dx:161 + dx] for dy in (-1, 0, 1) for dx in (-1, 0, 1)], axis=0)
    plain = make_clip(0, frames=4).numpy()
    assert np.array_equal(frames[~near], plain[~near]) and not np.array_equal(frames[near], plain[near])
    assert torch.equal(make_clip(0, frames=4, characters=NAMES), clip.frames)
    assert np.array_equal(make_character_clip(0, NAMES, frames=4).labels, clip.labels)  # deterministic
    with pytest.raises(ValueError, match="unknown character look"):
        make_character_clip(0, ("purple",))
    with pytest.raises(ValueError, match="not among the characters"):
        make_character_clip(0, ("red",), change_at=2, change_to={"blue": "red"})
    with pytest.raises(ValueError, match="frame index"):
        make_character_clip(0, NAMES, change_at=-1)
    with pytest.raises(ValueError, match="needs change_at"):
        make_clip(0, characters=NAMES, change_to={"red": "blue"})


def test_a_changed_twin_differs_only_from_change_at_on() -> None:
    kept = make_character_clip(1, NAMES)
    changed = make_character_clip(1, NAMES, change_at=CHANGE_AT, change_to={"red": "blue"})
    assert changed.change_to == {"red": "blue"}
    assert torch.equal(kept.frames[:CHANGE_AT], changed.frames[:CHANGE_AT])
    assert np.array_equal(kept.labels[:CHANGE_AT], changed.labels[:CHANGE_AT])
    red_body, blue_body = (np.array(CHARACTER_LOOKS[n].body, np.float32) for n in NAMES)
    for t in range(CHANGE_AT, 16):  # red now wears blue's colours and box body
        red_pixels = changed.frames[t].numpy()[changed.labels[t] == 1]
        assert (np.abs(red_pixels - blue_body).max(axis=-1) < 1e-3).sum() > 100
        assert not (np.abs(red_pixels - red_body).max(axis=-1) < 1e-3).any()
        assert not np.array_equal(changed.labels[t], kept.labels[t])  # the shape changed too
    swapped = make_character_clip(1, NAMES, change_at=CHANGE_AT)
    assert swapped.change_to == {"red": "blue", "blue": "red"}  # default: each takes the next one's look


def test_gallery_images_are_the_characters_in_a_few_poses() -> None:
    imgs = character_gallery_images("blue", count=4, size=64)
    assert len(imgs) == 4 and all(i.shape == (64, 64, 3) and i.dtype == np.uint8 for i in imgs)
    assert len({i.tobytes() for i in imgs}) == 4  # four different poses
    assert all(np.array_equal(a, b) for a, b in zip(imgs, character_gallery_images("blue", count=4, size=64),
                                                     strict=True))


@pytest.mark.parametrize("seed", [0, 1])
def test_a_kept_character_scores_higher_than_one_that_changes_mid_clip(recognizer_and_gallery, seed: int) -> None:
    model, gallery = recognizer_and_gallery
    kept = score_ground_truth(make_character_clip(seed, NAMES), model, gallery)
    assert [o.identity for o in kept.objects] == list(NAMES)  # each recognised as itself
    for k, name in enumerate(NAMES):
        changed = score_ground_truth(
            make_character_clip(seed, NAMES, change_at=CHANGE_AT, change_to={name: OTHER[name]}), model, gallery)
        print(f"seed {seed}: {name} kept {kept.objects[k].probability:.3f} vs changed "
              f"{changed.objects[k].probability:.3f}; clip {kept.score:.3f} vs {changed.score:.3f}")
        assert kept.objects[k].probability > changed.objects[k].probability + 0.2
        assert kept.score > changed.score + 0.1
        other = 1 - k  # the character that keeps its look: the same crops, the same score
        assert changed.objects[other].identity == NAMES[other]
        assert changed.objects[other].probability == pytest.approx(kept.objects[other].probability, abs=1e-6)


@pytest.fixture(scope="module")
def detector():
    return small_detector()


@pytest.fixture(scope="module")
def tracker():
    return small_tracker()


def test_detect_track_recognise_score_end_to_end_on_the_generator(detector, tracker, recognizer_and_gallery
                                                                   ) -> None:
    """Random detector and tracker: the outcome pinned for seed 0 (10 frames), whatever it means."""
    model, gallery = recognizer_and_gallery
    frames = uint8(make_character_clip(0, NAMES, frames=10))
    tracks = find_tracks(*detector, *tracker, frames)  # SAMURAI, the default
    assert tracks.reason is None
    # The random Grounding-DINO's sigmoid scores pass the official 0.5 on all 10 queries: the 5 largest stay.
    assert tracks.boxes == PINNED_BOXES and len(tracks.boxes) == MAX_CHARACTERS
    assert tracks.labels is not None and tracks.labels.shape == frames.shape[:3]
    result = score_tracks(frames, tracks, model, gallery)
    assert {"detect", "track", "recognise"} <= set(result.seconds)
    scored = [i for i, o in enumerate(result.objects) if o is not None]
    print("objects", [(o.identity, round(o.probability, 4)) if o else None for o in result.objects],
          "score", result.score, "reason", result.reason)
    assert scored == PINNED_SCORED
    assert result.score is not None and 0 <= result.score <= 1 and result.reason is None
    # A mask pixel whose logit sits at 0 may flip with the float summation order (threads): 1e-3 allows it.
    assert result.score == pytest.approx(PINNED_SCORE, abs=1e-3)


# Seed 0's outcome (transformers 4.57.6, torch of this venv; the same with 1 and 2 intra-op threads): five
# 16×10 boxes at fixed places (the random encoder's top proposals, not the characters), five noise tracks each
# seen in at least 8 of the 10 frames, all recognised as "red" with ≈ 0.60.
PINNED_BOXES = [(95, 79, 111, 89), (49, 79, 65, 89), (72, 7, 88, 17), (72, 79, 88, 89), (26, 79, 42, 89)]
PINNED_SCORED = [0, 1, 2, 3, 4]
PINNED_SCORE = 0.5970640182495117
