"""Character recogniser and gallery: strict official keys, the cached gallery (hit, incremental update, other
weights), the official query crops, and identity scoring on drawn characters with a small recogniser built from
the same classes as the official ViT-L one."""

from __future__ import annotations

import hashlib
import os
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from animereward_testkit.characters import SMALL, draw_character, make_gallery, small_model
from PIL import Image

from animereward import character_gallery as cg
from animereward.character_recognizer import (
    CharacterRecognizer,
    build_recognizer,
    masked_square_crop,
    query_crops,
    select_track_frames,
)
from animereward.checkpoints import CheckpointError


def official_pth(tmp_path: Path, model: CharacterRecognizer, extra: bool = True) -> Path:
    """An official-style training checkpoint: {'model': state} with the pretraining parts beside the recogniser."""
    state = dict(model.state_dict())
    if extra:
        state["text_encoder.embeddings.word_embeddings.weight"] = torch.zeros(10, 8)
        state["visual_encoder_m.cls_token"] = torch.zeros(1, 1, SMALL["width"])
        state["vision_proj_m.weight"] = torch.zeros(SMALL["embed_dim"], SMALL["width"])
        state["temp"] = torch.tensor(0.07)
    path = tmp_path / "animate_recoginzer.pth"
    torch.save({"model": state, "epoch": 3}, path)
    return path


def test_official_keys_load_strictly_and_key_the_cache(tmp_path: Path) -> None:
    ref = small_model()
    path = official_pth(tmp_path, ref)
    model = build_recognizer(path, **SMALL)
    for k, v in ref.state_dict().items():
        assert torch.equal(model.state_dict()[k], v), k
    assert model.weights_hash == hashlib.sha256(path.read_bytes()).hexdigest()
    assert (tmp_path / "animate_recoginzer.safetensors").is_file()  # converted once; the next load reads it
    again = build_recognizer(path, **SMALL)
    assert again.weights_hash == model.weights_hash  # from the copy's header: the same key for the cache
    assert torch.equal(again.vision_proj.weight, ref.vision_proj.weight)
    x = torch.randn(2, 3, 224, 224)
    assert torch.allclose(model.embed(x), ref.embed(x), atol=1e-6)
    assert model.embed(x).shape == (2, SMALL["embed_dim"])


def test_missing_and_misshapen_keys_are_refused(tmp_path: Path) -> None:
    ref = small_model()
    state = dict(ref.state_dict())
    del state["vision_proj.bias"]
    state["visual_encoder.norm.weight"] = torch.ones(SMALL["width"] + 1)
    state["unknown_head.weight"] = torch.zeros(3)
    torch.save({"model": state}, tmp_path / "bad.pth")
    with pytest.raises(CheckpointError) as err:
        build_recognizer(tmp_path / "bad.pth", **SMALL)
    msg = str(err.value)
    assert "vision_proj.bias" in msg and "visual_encoder.norm.weight" in msg and "unknown_head.weight" in msg
    assert not (tmp_path / "bad.safetensors").exists()  # a refused file leaves no converted copy


def test_official_query_frame_choice_and_crop() -> None:
    masks = [np.zeros((4, 4), bool) for _ in range(20)]
    for i in range(3, 20):  # present in 17 frames: step 2, first 8 of every 2nd
        masks[i][1:3, 1:2] = True
    assert select_track_frames(masks) == [3, 5, 7, 9, 11, 13, 15, 17]
    assert select_track_frames(masks[:10]) is None  # 7 frames < 8
    frame = np.full((6, 8, 3), 200, np.uint8)
    mask = np.zeros((6, 8), bool)
    mask[1:5, 2:4] = True  # 4 high, 2 wide → padded to 4×4 with a black column each side
    mask[1, 2] = False
    sq = masked_square_crop(frame, mask)
    assert sq.shape == (4, 4, 3)
    assert (sq[:, 0] == 0).all() and (sq[:, 3] == 0).all() and sq[0, 1].sum() == 0 and (sq[1:, 1:3] == 200).all()


def test_gallery_cache_hit_is_20x_cheaper_and_updates_incrementally(tmp_path: Path) -> None:
    model = small_model()
    root = make_gallery(tmp_path / "characters", per_identity=6)
    t0 = time.perf_counter()
    first = cg.load_gallery(cg.GalleryIndex.from_folders(root), model)
    recompute = time.perf_counter() - t0
    assert (first.computed, first.reused) == (12, 0)
    assert first.identities == ["akane", "bo"]
    cache = cg.cache_path(root, model.weights_hash)
    assert cache.is_file()

    hits = []
    for _ in range(3):
        t0 = time.perf_counter()
        again = cg.load_gallery(cg.GalleryIndex.from_folders(root), model)
        hits.append(time.perf_counter() - t0)
        assert (again.computed, again.reused) == (0, 12)
        assert torch.equal(again.embeddings, first.embeddings)
    ratio = recompute / min(hits)
    print(f"gallery of 12 images: recompute {recompute * 1e3:.1f} ms, cached {min(hits) * 1e3:.2f} ms, "
          f"ratio {ratio:.0f}x")
    assert ratio >= 20

    # A new identity folder: only its images are embedded; the old rows are reused bit for bit.
    (root / "Chiyo").mkdir()
    img, _ = draw_character("Akane", bg=30)
    Image.fromarray(img).save(root / "Chiyo" / "a.png")
    grown = cg.load_gallery(cg.GalleryIndex.from_folders(root), model)
    assert (grown.computed, grown.reused) == (1, 12)
    assert grown.identities == ["akane", "bo", "chiyo"]
    assert torch.equal(grown.embeddings[:12], first.embeddings)
    # A changed image is re-embedded, a deleted one dropped.
    img2, _ = draw_character("Bo", bg=250)
    Image.fromarray(img2).save(root / "Bo" / "0.png")
    os.utime(root / "Bo" / "0.png", ns=(1, 1))
    (root / "Akane" / "5.png").unlink()
    changed = cg.load_gallery(cg.GalleryIndex.from_folders(root), model)
    assert (changed.computed, changed.reused) == (1, 11)
    assert changed.embeddings.shape[0] == 12
    # Another recogniser never reads these embeddings.
    other = small_model(seed=1)
    fresh = cg.load_gallery(cg.GalleryIndex.from_folders(root), other)
    assert fresh.computed == 12 and cg.cache_path(root, other.weights_hash) != cache


def test_damaged_cache_is_recomputed_and_empty_gallery_is_explained(tmp_path: Path) -> None:
    model = small_model()
    root = make_gallery(tmp_path / "characters", per_identity=1)
    cg.cache_path(root, model.weights_hash).write_bytes(b"not safetensors")
    assert cg.load_gallery(cg.GalleryIndex.from_folders(root), model).computed == 2
    (tmp_path / "empty").mkdir()
    with pytest.raises(cg.GalleryError, match="no images"):
        cg.load_gallery(cg.GalleryIndex.from_folders(tmp_path / "empty"), model)


def test_official_json_gallery_groups_names_case_insensitively(tmp_path: Path) -> None:
    root = make_gallery(tmp_path / "videos", per_identity=2)
    index = tmp_path / "gallerys.json"
    index.write_text('[{"image": "Akane/0.png", "caption": "Akane"}, {"image": "Akane/1.png", "caption": "akane"},'
                     ' {"image": "Bo/0.png", "caption": "BO"}]')
    gal = cg.GalleryIndex.from_json(root, index)
    assert gal.identities() == ["akane", "bo"]
    bad = tmp_path / "bad.json"
    bad.write_text('[{"image": "../x.png", "caption": "x"}]')
    with pytest.raises(cg.GalleryError, match="outside"):
        cg.GalleryIndex.from_json(root, bad)


def test_identity_probability_matches_the_official_grouping() -> None:
    """The official `evaluation` on one query: mean sims per name, softmax, mean over frames, top-1."""
    torch.manual_seed(0)
    q, g = torch.randn(8, 16), torch.randn(5, 16)
    names = ["A", "b", "a", "B", "c"]
    gallery = cg.GalleryEmbeddings(["a", "b", "c"], g, torch.tensor([0, 1, 0, 1, 2]))
    got = gallery.score(q)
    sims = (q[None] @ g.t())  # official: [B=1,N=8,G]
    grouped = torch.stack([sims[:, :, [0, 2]].mean(-1), sims[:, :, [1, 3]].mean(-1), sims[:, :, [4]].mean(-1)], -1)
    expected = torch.softmax(grouped, -1).mean(1)[0]
    assert torch.allclose(got.distribution, expected, atol=1e-6)
    assert got.probability == pytest.approx(float(expected.max()), abs=1e-6)
    assert got.identity == ["a", "b", "c"][int(expected.argmax())]
    assert names  # the official names list this stands for


@pytest.mark.parametrize("who", ["Akane", "Bo"])
def test_a_tracked_character_scores_its_own_identity_first(tmp_path: Path, who: str) -> None:
    model = small_model()
    gallery = cg.load_gallery(cg.GalleryIndex.from_folders(make_gallery(tmp_path / "characters")), model)
    frames, masks = zip(*(draw_character(who, size=128, jitter=j - 5) for j in range(10)), strict=True)
    crops = query_crops(np.stack(frames), list(masks))
    assert crops is not None and crops.shape == (8, 3, 224, 224)
    result = gallery.score(model.embed(crops))
    assert result.identity == who.lower()
    assert result.probability > 0.5
