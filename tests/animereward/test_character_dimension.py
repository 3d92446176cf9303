"""character_consistency as a registered dimension (library side): its files in the official layout, the
facade scoring it from a folder, a clip without a character (no score, a reason, totals over the others),
the ranking, the gallery chosen per call, and an older transformers.

Small random Grounding-DINO / SAM2 / recogniser weights of the real classes, written to disk in the official
layout (animereward_testkit.character_weights); nothing is downloaded.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from animereward_testkit.character_weights import (
    DETECTOR_DIR,
    RECOGNIZER_PTH,
    TRACKER_DIR,
    two_character_clip,
    write_character_root,
    write_user_characters,
)

from animereward import AnimeReward
from animereward import dimensions as registry
from animereward.dimensions import DIMENSIONS
from animereward.scores import RewardScores, rank, weighted_totals
from animereward.weights_layout import (
    MissingWeightsError,
    available_dimensions,
    locate,
    locate_parts,
    looks_like_weights_root,
    missing_files,
)

C = "character_consistency"


@pytest.fixture(scope="module")
def roots(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("character_roots")
    return {"ok": write_character_root(base / "ok"), "blank": write_character_root(base / "blank", blank=True)}


def test_the_registry_offers_it_with_several_files() -> None:
    dim = DIMENSIONS[C]
    assert dim.available and C in registry.weighted() and dim.official_key == "character_consist"
    assert dim.files is not None and dim.files.kind == "parts" and dim.files.official == "character/IP_checkpoints"
    assert [p.name for p in dim.files.parts] == ["recognizer", "detector", "tracker", "gallery"]
    assert [p.name for p in dim.files.parts if not p.required] == ["gallery"]


@pytest.mark.parametrize("where", ["code", "reward", "hub"])
def test_found_in_each_accepted_layout(tmp_path: Path, roots: dict[str, Path], where: str) -> None:
    """root/character/ (the official code's reward/ folder), root/reward/character/, or the hub's reward/ folder
    holding IP_checkpoints/ directly."""
    src = roots["ok"] / "character"
    folder = {"code": tmp_path / "character", "reward": tmp_path / "reward" / "character", "hub": tmp_path}[where]
    shutil.copytree(src, folder, dirs_exist_ok=True)
    assert looks_like_weights_root(tmp_path)
    assert available_dimensions(tmp_path)[C] is True
    assert locate(tmp_path, C) == folder
    parts = locate_parts(folder, C)
    assert parts["recognizer"] == folder / "IP_checkpoints/blip_checkpoints/animate_recoginzer.pth"
    assert parts["detector"] == folder / "IP_checkpoints/grouding-dino-base"
    assert parts["tracker"] == folder / "IP_checkpoints/sam2.1-hiera-base-plus"
    assert parts["gallery"] == folder / "videos"


def test_missing_parts_are_listed_and_the_gallery_is_optional(tmp_path: Path, roots: dict[str, Path]) -> None:
    root = tmp_path / "r"
    shutil.copytree(roots["ok"], root)
    shutil.rmtree(root / "character" / "videos")  # no official gallery: still complete
    assert available_dimensions(root)[C] is True
    assert locate_parts(locate(root, C), C)["gallery"] is None
    (root / DETECTOR_DIR / "preprocessor_config.json").unlink()
    shutil.rmtree(root / TRACKER_DIR)
    missing = missing_files(root, [C])[C]
    assert missing == [root / DETECTOR_DIR / "preprocessor_config.json",
                       root / "character/IP_checkpoints/sam2_checkpoints/sam2.1_hiera_base_plus.pt"]
    with pytest.raises(MissingWeightsError) as err:
        AnimeReward.from_folder(root, [C])
    msg = str(err.value)
    for needle in ("grouding-dino-base/preprocessor_config.json", "character/IP_checkpoints/sam2_checkpoints/"
                   "sam2.1_hiera_base_plus.pt", "sam2.1-hiera-base-plus/", "gallerys.json"):
        assert needle in msg
    assert available_dimensions(root)[C] is False
    assert available_dimensions(tmp_path / "nothing")[C] is False


def test_the_official_sam2_pt_is_found_and_read(tmp_path: Path, roots: dict[str, Path]) -> None:
    """The official file name is what the layout asks for first; a broken one is named when it is read."""
    root = tmp_path / "r"
    shutil.copytree(roots["ok"], root)
    shutil.rmtree(root / TRACKER_DIR)
    pt = root / "character/IP_checkpoints/sam2_checkpoints/sam2.1_hiera_base_plus.pt"
    pt.parent.mkdir(parents=True)
    pt.write_bytes(b"version https://git-lfs.github.com/spec/v1\noid sha256:1\nsize 9\n")
    assert locate_parts(locate(root, C), C)["tracker"] == pt
    with pytest.raises(Exception, match=r"sam2\.1_hiera_base_plus\.pt.*Git LFS pointer"):
        AnimeReward.from_folder(root, [C]).scorer(C)


def test_scores_a_two_character_clip_and_a_clip_without_one(roots: dict[str, Path]) -> None:
    reward = AnimeReward.from_folder(roots["ok"], [C, "flow_motion"])
    clip = two_character_clip(8)
    result = reward.score(clip)
    assert C in result.scores and 1 / 2 <= result.scores[C] <= 1.0  # two identities in the official gallery
    assert result.official()["character_consist"] == result.scores[C]
    assert result.weights == {C: 0.5, "flow_motion": 0.5} and not result.unscored
    # the gallery's embeddings were cached beside the official gallery's images
    assert list((roots["ok"] / "character" / "videos").glob(".embeddings-*.safetensors"))

    blank = AnimeReward.from_folder(roots["blank"], [C, "flow_motion"])
    none = blank.score(clip)
    assert C not in none.scores and "no character detected" in none.unscored[C]
    assert none.weights == {"flow_motion": 1.0} and none.total == pytest.approx(none.scores["flow_motion"])
    data = none.to_dict()
    assert data["unscored"][C] == none.unscored[C] and C not in data["scores"]
    back = RewardScores.from_dict(data)
    assert back.unscored == none.unscored and back.scores == none.scores
    only = blank.score(clip, dimensions=[C])
    assert only.total is None and only.weights == {} and RewardScores.from_json(only.to_json()).total is None


def test_totals_compare_candidates_on_the_same_dimensions() -> None:
    w = {"a": 0.5, "b": 0.25, "c": 0.25}
    scores = [{"a": 0.2, "b": 0.4, "c": 0.9}, {"a": 0.8, "b": 0.2}, {"a": 0.3, "b": 0.3, "c": 0.0}]
    totals = weighted_totals(scores, w)  # c is missing for clip 1: left out of every total
    assert [u for _, u in totals] == [{"a": 2 / 3, "b": 1 / 3}] * 3
    assert [t for t, _ in totals] == pytest.approx([0.8 / 3, 1.8 / 3, 0.9 / 3])
    # nothing with a weight scored on every clip: each clip's own; none at all: no total
    own = weighted_totals([{"c": 0.9}, {}], {"c": 1.0})
    assert own == [(0.9, {"c": 1.0}), (None, {})]
    assert weighted_totals([{"a": 0.5}], {"a": 0.0, "c": 1.0}) == [(None, {})]
    assert rank([0.2, None, 0.9, None, 0.2]) == [2, 0, 4, 1, 3]  # no total: last, in generation order


def test_a_user_gallery_is_used_when_the_call_names_it(tmp_path: Path, roots: dict[str, Path]) -> None:
    users = write_user_characters(tmp_path / "characters")
    reward = AnimeReward.from_folder(roots["ok"], [C])
    mine = reward.with_settings(character_gallery=users)
    assert mine.scorer(C) is reward.scorer(C)  # the same loaded models
    result = mine.score(two_character_clip(8))
    assert C in result.scores
    assert list(users.glob(".embeddings-*.safetensors"))  # embedded against the user's folder
    scorer = reward.scorer(C)
    assert {ref.root for ref in scorer._galleries} >= {users}

    nogallery = tmp_path / "nogallery"
    shutil.copytree(roots["ok"], nogallery)
    shutil.rmtree(nogallery / "character" / "videos")
    with pytest.raises(ValueError, match=r"no gallery of characters.*models/animereward/characters/<name>/"):
        AnimeReward.from_folder(nogallery, [C]).score(two_character_clip(8))


def test_an_old_transformers_is_named_and_the_other_dimensions_work(monkeypatch, roots: dict[str, Path]) -> None:
    from animereward import character_tracking
    from animereward.character_tracking import CharacterModelsUnavailable

    def old(module=None) -> None:
        raise CharacterModelsUnavailable(
            f"character_consistency needs transformers >= {character_tracking.REQUIRED_TRANSFORMERS} (it uses "
            "Sam2VideoModel); this Python has transformers 4.46.3.")

    monkeypatch.setattr(character_tracking, "transformers_classes", old)
    reward = AnimeReward.from_folder(roots["ok"], [C, "flow_motion"])
    with pytest.raises(CharacterModelsUnavailable, match=character_tracking.REQUIRED_TRANSFORMERS):
        reward.score(two_character_clip(8))
    assert 0.0 <= AnimeReward.from_folder(roots["ok"], ["flow_motion"]).score(two_character_clip(8)).total <= 1.0


def test_a_broken_file_is_named(tmp_path: Path, roots: dict[str, Path]) -> None:
    root = tmp_path / "r"
    shutil.copytree(roots["ok"], root)
    (root / RECOGNIZER_PTH).write_bytes(b"version https://git-lfs.github.com/spec/v1\noid sha256:1\nsize 9\n")
    with pytest.raises(Exception, match=r"animate_recoginzer\.pth.*Git LFS pointer"):
        AnimeReward.from_folder(root, [C]).scorer(C)
    root2 = tmp_path / "r2"
    shutil.copytree(roots["ok"], root2)
    (root2 / DETECTOR_DIR / "config.json").write_text("{broken")
    with pytest.raises(ValueError, match=r"grouding-dino-base/config\.json: not a JSON object"):
        AnimeReward.from_folder(root2, [C]).scorer(C)
    root3 = tmp_path / "r3"
    shutil.copytree(roots["ok"], root3)
    (root3 / "character/BLIP/data/gallerys.json").write_text('[{"image": "../../../etc/passwd", "caption": "x"}]')
    with pytest.raises(ValueError, match=r"points outside"):
        AnimeReward.from_folder(root3, [C]).score(two_character_clip(8))
