"""character_consistency against the official BLIP retrieval code (GitHub bilibili/Index-anisora@171fe63,
reward/character/BLIP), run once outside this repo on deterministic weights and drawn inputs
(tests/golden/character/README.md says how). Here our recogniser, gallery and `score_tracks` run on the same
weights and inputs, without the official code, and must give:

- the official ViT-L recogniser's exact key names, shapes and dtypes (296 keys);
- the same preprocessing bits, byte for byte: gallery images after the bicubic squash; per tracked object the
  same frames, masked crop, square padding and JPEG file (same bytes as the official `cv2.imwrite`), and the
  same 224² crop the official dataset reads back (PIL) and squashes (bilinear);
- gallery and query embeddings within 1e-5, and per object the identity distribution, top-1 identity and
  probability, and the clip's score within 1e-5 (measured difference ≤ 5e-7, fp32, CPU).

The goldens are sensitive at that tolerance: leaving out the JPEG round trip moves the scores by up to 6e-3,
bicubic query resizing by 3e-3, bilinear gallery resizing by 1.7e-3, no mask blackout by 0.1, no square
padding by 0.28, L2-normalised embeddings by 0.55, not lower-casing names by 0.52 (README.md).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

from animereward import character_gallery as cg
from animereward.character_consistency import score_tracks
from animereward.character_recognizer import (
    JPEG_QUALITY,
    CharacterRecognizer,
    gallery_image,
    jpeg_roundtrip,
    masked_square_crop,
    query_crops,
    select_track_frames,
    state_fingerprint,
)
from animereward.character_tracking import Tracks
from animereward.preprocess import IMAGE_SIZE, resize_uint8
from tests.golden.character import recipe
from tests.golden.deterministic_weights import deterministic_state_dict

GOLDEN_DIR = Path(__file__).resolve().parents[1] / "golden" / "character"
ATOL = 1e-5


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture(scope="module")
def golden() -> dict:
    return json.loads((GOLDEN_DIR / "expected.json").read_text())


@pytest.fixture(scope="module")
def golden_embeddings() -> dict[str, torch.Tensor]:
    return load_file(str(GOLDEN_DIR / "embeddings.safetensors"))


@pytest.fixture(scope="module")
def recognizer(golden: dict) -> CharacterRecognizer:
    model = CharacterRecognizer(**recipe.SIZES).eval()
    shapes = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    state = deterministic_state_dict(shapes, recipe.WEIGHTS_SEED)
    for key, fp in golden["recipe_fingerprint"].items():  # the weights recipe is the one the goldens used
        assert float(state[key].double().sum()) == pytest.approx(fp["sum"], abs=1e-9)
        assert float(state[key].flatten()[0]) == fp["first"]
    model.load_state_dict(state, strict=True)
    model.weights_hash = state_fingerprint(model)
    return model


@pytest.fixture(scope="module")
def gallery_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The recipe's gallery written as PNG files plus its official-format list `gallerys.json`."""
    root = tmp_path_factory.mktemp("character_gallery")
    for i, (rel, *_rest) in enumerate(recipe.GALLERY):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(recipe.gallery_image(i)).save(root / rel)
    listing = [{"image": rel, "caption": caption} for rel, caption, *_ in recipe.GALLERY]
    (root / "gallerys.json").write_text(json.dumps(listing))
    return root


@pytest.fixture(scope="module")
def gallery(gallery_root: Path, recognizer: CharacterRecognizer) -> cg.GalleryEmbeddings:
    return cg.load_gallery(cg.GalleryIndex.from_json(gallery_root, gallery_root / "gallerys.json"), recognizer)


def test_our_recogniser_has_the_official_vit_l_keys() -> None:
    official = json.loads((GOLDEN_DIR / "official_keys.json").read_text())
    with torch.device("meta"):
        ours = CharacterRecognizer()  # official sizes
    assert [[k, list(v.shape), str(v.dtype).replace("torch.", "")] for k, v in ours.state_dict().items()] == official


def test_inputs_are_the_ones_the_goldens_were_made_from(golden: dict) -> None:
    assert [recipe.sha256(recipe.gallery_image(i)) for i in range(len(recipe.GALLERY))] == golden["gallery_input_sha256"]
    for name, case in golden["clips"].items():
        frames, labels = recipe.clip(name)
        assert (recipe.sha256(frames), recipe.sha256(labels)) == (case["frames_sha256"], case["labels_sha256"])


def test_gallery_preprocessing_and_embeddings(golden: dict, golden_embeddings: dict, gallery_root: Path,
                                              gallery: cg.GalleryEmbeddings) -> None:
    for i, (rel, *_rest) in enumerate(recipe.GALLERY):  # PIL bicubic squash to 224², exact
        with Image.open(gallery_root / rel) as im:
            resized = resize_uint8(np.asarray(im.convert("RGB"))[None], IMAGE_SIZE, Image.BICUBIC)[0]
        assert sha(resized.tobytes()) == golden["gallery_resized_sha256"][i], rel
        assert gallery_image(gallery_root / rel).shape == (3, IMAGE_SIZE, IMAGE_SIZE)
    # identities in the official grouping's order (first appearance, lower-cased): akane, bo, chiyo
    assert gallery.identities == golden["clips"]["two_characters"]["identity_names"]
    torch.testing.assert_close(gallery.embeddings, golden_embeddings["gallery_embeddings"], atol=ATOL, rtol=0)


def test_query_crops_are_the_official_bytes(golden: dict) -> None:
    """Frame choice, mask, bounding box, square padding and JPEG file: same bytes as the official crops on disk;
    read back and squashed to 224² bilinear: the same pixels the official dataset feeds the ViT."""
    checked = 0
    for name, case in golden["clips"].items():
        frames, labels = recipe.clip(name)
        official_ids = {o["object_id"] for o in case["objects"]}
        for k in range(1, int(labels.max()) + 1):
            masks = [lab == k for lab in labels]
            chosen = select_track_frames(masks)
            if k not in official_ids:  # the official loader skipped it (fewer than 8 frames with the object)
                assert chosen is None and query_crops(frames, masks) is None
                continue
            obj = next(o for o in case["objects"] if o["object_id"] == k)
            assert chosen is not None and len(chosen) == 8
            for j, i in enumerate(chosen):
                square = masked_square_crop(frames[i], masks[i])
                ok, buf = cv2.imencode(".jpg", np.ascontiguousarray(square[:, :, ::-1]),
                                       [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
                assert ok and sha(buf.tobytes()) == obj["mask_crop_jpeg_sha256"][j], (name, k, j)
                crop = resize_uint8(jpeg_roundtrip(square)[None], IMAGE_SIZE, Image.BILINEAR)[0]
                assert sha(crop.tobytes()) == obj["crop_224_sha256"][j], (name, k, j)
                checked += 1
    assert checked == 32  # 4 scored objects × 8 crops; the 6-frame object was skipped by both


def test_query_embeddings_identity_probabilities_and_score(golden: dict, golden_embeddings: dict,
                                                           recognizer: CharacterRecognizer,
                                                           gallery: cg.GalleryEmbeddings) -> None:
    for name, case in golden["clips"].items():
        frames, labels = recipe.clip(name)
        tracks = Tracks([(0, 0, 1, 1)] * int(labels.max()), labels)
        result = score_tracks(frames, tracks, recognizer, gallery)
        scored = {o["object_id"]: o for o in case["objects"]}
        assert [i + 1 for i, o in enumerate(result.objects) if o is not None] == sorted(scored)
        for k, obj in scored.items():
            query = recognizer.embed(query_crops(frames, tracks.masks(k)))
            torch.testing.assert_close(query, golden_embeddings[f"query/{name}/{k}"], atol=ATOL, rtol=0)
            ours = result.objects[k - 1]
            order = [gallery.identities.index(n) for n in case["identity_names"]]
            np.testing.assert_allclose(ours.distribution[order].numpy(), obj["distribution"], atol=ATOL, rtol=0)
            assert ours.identity == obj["top1"]
            assert ours.probability == pytest.approx(obj["top1_probability"], abs=ATOL)
        assert result.score == pytest.approx(case["score"], abs=ATOL), name


def test_the_goldens_see_the_jpeg_round_trip(golden: dict, recognizer: CharacterRecognizer,
                                             gallery: cg.GalleryEmbeddings) -> None:
    """Sensitivity: without the JPEG step the score leaves the tolerance (so the comparison above can fail)."""
    frames, labels = recipe.clip("two_characters")
    tracks = Tracks([(0, 0, 1, 1)] * int(labels.max()), labels)
    no_jpeg = score_tracks(frames, tracks, recognizer, gallery, jpeg=False).score
    assert abs(no_jpeg - golden["clips"]["two_characters"]["score"]) > 20 * ATOL


def test_folder_gallery_gives_the_same_rows(tmp_path: Path, recognizer: CharacterRecognizer,
                                            golden_embeddings: dict) -> None:
    """The artist's folder layout (`<identity>/<images>`) embeds the same images: same rows, by path."""
    for i, (rel, *_rest) in enumerate(recipe.GALLERY):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(recipe.gallery_image(i)).save(tmp_path / rel)
    index = cg.GalleryIndex.from_folders(tmp_path)
    loaded = cg.load_gallery(index, recognizer)
    assert sorted(loaded.identities) == ["akane", "bo", "chiyo"]
    row = {rel: i for i, (rel, *_rest) in enumerate(recipe.GALLERY)}
    for j, entry in enumerate(index.entries):
        torch.testing.assert_close(loaded.embeddings[j], golden_embeddings["gallery_embeddings"][row[entry.relpath]],
                                   atol=ATOL, rtol=0)
