"""Conformance of the `visual_motion` port (ActionCLIP) with the official AnimeReward motion model.

Checks that a checkpoint with exactly the official key names and shapes loads strictly through
`build_scorer` (and that a missing or an unexpected key is refused by name), and that our scores match
golden outputs of the official model run on the same deterministic weights and inputs (within 1e-4, fp32,
CPU). How the goldens were produced: tests/golden/actionclip/README.md. The full-size model is built once
per module (about 170M parameters); the forwards cost 48 ViT-B/16 frames in all.
"""

from __future__ import annotations

import ast
import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from animereward import actionclip as ac
from animereward.checkpoints import CheckpointError
from animereward.preprocess import motion_frame_indices, sample_frame_indices, sampled_clip
from animereward.scorer_protocol import ClipBatch
from tests.golden.actionclip import recipe
from tests.golden.deterministic_weights import deterministic_state_dict

GOLDEN_DIR = Path(__file__).resolve().parents[1] / "golden" / "actionclip"
SCORE_TOL = 1e-4  # the brief's bar for scores (probabilities)
FEATURE_TOL = 1e-5  # normalised 512-d features (entries ~0.04); the port is ~1e-7 off
FORBIDDEN_IMPORTS = ("mmcv", "mmaction", "mmengine", "clip", "open_clip")


@pytest.fixture(scope="module")
def shapes() -> dict[str, list[int]]:
    return json.loads((GOLDEN_DIR / "state_dict_shapes.json").read_text())


@pytest.fixture(scope="module")
def golden() -> dict:
    return json.loads((GOLDEN_DIR / "golden.json").read_text())


@pytest.fixture(scope="module")
def official_state(shapes: dict[str, list[int]]) -> dict[str, torch.Tensor]:
    return deterministic_state_dict(shapes, recipe.WEIGHTS_SEED)


@pytest.fixture(scope="module")
def checkpoint_path(
    official_state: dict[str, torch.Tensor], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Path]:
    """An mmengine-style checkpoint as the official file is laid out: {"state_dict": ..., "meta": ...}.

    Removed afterwards (with its .safetensors): 1.3 GB that pytest would otherwise keep for three runs.
    """
    path = tmp_path_factory.mktemp("actionclip") / "testvl-pre76-top187-rec69.pth"
    torch.save({"state_dict": official_state, "meta": dict(recipe.CHECKPOINT_META)}, path)
    yield path
    path.unlink(missing_ok=True)
    path.with_suffix(".safetensors").unlink(missing_ok=True)


@pytest.fixture(scope="module")
def scorer(checkpoint_path: Path) -> ac.ActionClipMotionScorer:
    return ac.build_scorer("visual_motion", checkpoint_path)


@pytest.fixture(scope="module")
def frame_case_scores(scorer: ac.ActionClipMotionScorer) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """All golden frame cases as one ClipBatch (different T), preprocessed and scored in one forward."""
    batch = ClipBatch(frames=[recipe.case_frames(c).float() / 255.0 for c in recipe.FRAME_CASES])
    inputs = scorer.preprocess(batch)
    return inputs, scorer(**inputs)


# ---- official layout and strict loading -----------------------------------------------------------------


def test_module_has_exactly_the_official_keys_and_shapes(shapes: dict[str, list[int]]) -> None:
    model = ac.ActionClip()  # uninitialised storage, never touched here
    ours = {k: list(v.shape) for k, v in model.state_dict().items()}
    assert ours == shapes
    assert len(shapes) == 375
    assert {k.split(".", 1)[0] for k in shapes} == {"clip", "adapter"}
    # a small size (tests, benchmarks) builds the same modules: the same names, smaller shapes
    with torch.device("meta"):
        small = ac.ActionClip(ac.ActionClipSize(64, 64, 12, 64, 12, 6, 32))
    assert {k: len(v.shape) for k, v in small.state_dict().items()} == {k: len(v) for k, v in shapes.items()}


def test_build_scorer_loads_the_mmengine_checkpoint_strictly(
    scorer: ac.ActionClipMotionScorer,
    checkpoint_path: Path,
    official_state: dict[str, torch.Tensor],
    frame_case_scores: tuple[dict[str, torch.Tensor], torch.Tensor],
) -> None:
    assert scorer.name == "visual_motion"
    assert torch.equal(scorer.visual.proj, official_state["clip.visual.proj"])
    assert torch.equal(
        scorer.adapter.transformer.resblocks[5].mlp.c_proj.weight,
        official_state["adapter.transformer.resblocks.5.mlp.c_proj.weight"],
    )
    # Converted once beside the .pth (animereward.checkpoints), preferred on later loads.
    assert checkpoint_path.with_suffix(".safetensors").is_file()
    # The text tower is used once at load and not kept; its features are a non-persistent buffer.
    assert scorer.text_features.shape == (2, 512) and scorer.text_features.dtype == torch.float32
    assert not any(k.startswith("text_features") for k in scorer.state_dict())
    assert not hasattr(scorer, "clip")
    inputs, scores = frame_case_scores
    assert inputs["video"].shape == (len(recipe.FRAME_CASES), 8, 3, 224, 224)
    assert inputs["video"].dtype == scorer.dtype and inputs["video"].device == scorer.device
    assert scores.shape == (len(recipe.FRAME_CASES),) and scores.dtype == torch.float32
    assert bool(((scores >= 0) & (scores <= 1)).all())


def test_missing_key_is_refused_by_name(official_state: dict[str, torch.Tensor]) -> None:
    key = "adapter.transformer.resblocks.3.attn.in_proj_bias"
    state = {k: v for k, v in official_state.items() if k != key}
    with pytest.raises(CheckpointError, match=r"missing keys[\s\S]*" + re.escape(key)):
        ac.actionclip_from_state_dict(state)


def test_unexpected_key_is_refused_by_name(official_state: dict[str, torch.Tensor]) -> None:
    key = "data_preprocessor.mean"
    state = {**official_state, key: torch.zeros(3, 1, 1)}
    with pytest.raises(CheckpointError, match=r"unexpected keys[\s\S]*" + re.escape(key)):
        ac.actionclip_from_state_dict(state)


def test_adapter_for_other_segment_counts_is_refused(official_state: dict[str, torch.Tensor]) -> None:
    # The official loader asserts 8 segments (mode='self'); a 16-frame ActionCLIP must not load.
    key = "adapter.frame_position_embeddings.weight"
    state = {**official_state, key: torch.zeros(16, 512)}
    with pytest.raises(CheckpointError, match=re.escape(key)):
        ac.actionclip_from_state_dict(state)


def test_other_dimensions_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="visual_motion"):
        ac.build_scorer("visual_appeal", tmp_path / "unused.pth")


# ---- golden outputs of the official model ---------------------------------------------------------------


def test_prompt_features_match_official(scorer: ac.ActionClipMotionScorer, golden: dict) -> None:
    expected = torch.tensor(golden["text_features_head"])
    assert torch.allclose(scorer.text_features[:, :8], expected, rtol=0, atol=FEATURE_TOL)


def test_frame_sampling_matches_official(golden: dict) -> None:
    for case in recipe.FRAME_CASES:
        want = golden["frame_cases"][case.name]
        sampled = sample_frame_indices(case.num_frames)
        assert sampled == want["sampled_indices"], case.name
        assert motion_frame_indices(len(sampled)) == want["motion_indices"], case.name


def test_preprocessing_matches_official(golden: dict) -> None:
    for case in recipe.FRAME_CASES:
        want = golden["frame_cases"][case.name]
        img_all = sampled_clip(recipe.case_frames(case).float() / 255.0)
        assert img_all.shape == (len(want["sampled_indices"]), 3, 224, 224)
        assert torch.allclose(img_all.reshape(-1)[:8], torch.tensor(want["img_all_head"]), atol=1e-6)
        assert abs(float(img_all.double().sum()) - want["img_all_sum"]) < 1e-2 * max(1.0, img_all.numel() / 1e6)


def test_frame_case_scores_match_official(
    frame_case_scores: tuple[dict[str, torch.Tensor], torch.Tensor], golden: dict
) -> None:
    _, scores = frame_case_scores
    for case, got in zip(recipe.FRAME_CASES, scores.tolist(), strict=True):
        want = golden["frame_cases"][case.name]["score"]
        assert abs(got - want) < SCORE_TOL, (case.name, got, want)


def test_model_only_features_and_probs_match_official(scorer: ac.ActionClipMotionScorer, golden: dict) -> None:
    video = recipe.model_only_video()  # two clips in one batched call; the official ran them one by one
    with torch.no_grad():
        feats = scorer.encode_video(video)
        probs = scorer.probs_from_features(feats)
    normed = feats / feats.norm(dim=-1, keepdim=True)
    for i, want in enumerate(golden["model_only"]):
        assert torch.allclose(normed[i, :8], torch.tensor(want["video_features_head"]), atol=FEATURE_TOL)
        assert torch.allclose(probs[i], torch.tensor(want["probs"]), atol=SCORE_TOL)
        assert abs(float(probs[i, 0]) - want["score"]) < SCORE_TOL


def test_goldens_are_sensitive_to_frame_order(golden: dict) -> None:
    # Reversing the 8 motion frames (official model) moves each multi-frame score well past the tolerance,
    # so the goldens would catch a frame-order or adapter-position bug.
    for case in recipe.FRAME_CASES:
        want = golden["frame_cases"][case.name]
        if len(set(want["motion_indices"])) > 1:
            assert abs(want["score_frames_reversed"] - want["score"]) > 5 * SCORE_TOL, case.name


# ---- tokenizer constants --------------------------------------------------------------------------------


def test_prompt_token_ids_match_official_tokenize(golden: dict) -> None:
    ids = ac.prompt_token_ids()
    assert ids.tolist() == golden["token_ids"]  # clip.tokenize(PROMPTS), recorded from the official run
    assert golden["token_dtype"] == "torch.int32" and ids.shape == (2, ac.CONTEXT_LENGTH)
    for row in ac.PROMPT_TOKEN_IDS:
        assert row[0] == ac.SOT_TOKEN and row[-1] == ac.EOT_TOKEN


# ---- house rules --------------------------------------------------------------------------------------------


def test_layernorm_computes_in_float32() -> None:
    ln = ac.LayerNorm(8)
    x = (torch.randn(2, 8) * 300).to(torch.bfloat16)
    out = ln(x)
    assert out.dtype == torch.bfloat16
    assert torch.equal(out, torch.nn.functional.layer_norm(x.float(), (8,), eps=1e-5).to(torch.bfloat16))


def test_actionclip_imports_no_official_stack() -> None:
    tree = ast.parse(Path(ac.__file__).read_text())
    names = [a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names]
    names += [n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.level == 0]
    assert not [m for m in names if m.split(".")[0] in FORBIDDEN_IMPORTS]
