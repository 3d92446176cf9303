"""Conformance of the Idefics2 regression scorers (visual_smoothness, visual_appeal) to the official models.

A tiny checkpoint folder in the official format (config.json with the official `architectures`, safetensors
with exactly the key names and shapes the official Mantis class holds, a word-level tokenizer and an Idefics2
processor) is written at test time by tests/golden/idefics2/tiny_checkpoint.py. golden.json holds what the
official Mantis Idefics2ForSequenceClassification (transformers 4.41) computed on it; README.md there says how.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
from pathlib import Path

import pytest
import torch
from torch import nn

from animereward.idefics2_regression import (
    REGRESSION_QUERY_PROMPT,
    build_eval_prompt,
    build_scorer,
    official_position_ids,
    scorer_class,
)
from animereward.scorer_protocol import ClipBatch

GOLDEN_DIR = Path(__file__).resolve().parents[1] / "golden" / "idefics2"
GOLDEN = json.loads((GOLDEN_DIR / "golden.json").read_text())
OFFICIAL_KEYS: dict[str, list[int]] = json.loads((GOLDEN_DIR / "official_keys.json").read_text())


def _load_tiny():
    spec = importlib.util.spec_from_file_location(
        "idefics2_tiny_checkpoint", GOLDEN_DIR / "tiny_checkpoint.py"
    )
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


tiny = _load_tiny()


def _frames(clips) -> list[torch.Tensor]:
    return [torch.from_numpy(c).float() / 255.0 for c in clips]


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny.write_checkpoint(tmp_path_factory.mktemp("idefics2") / "checkpoint-final", OFFICIAL_KEYS)


@pytest.fixture(scope="module")
def scorer(folder: Path) -> nn.Module:
    return build_scorer("visual_appeal", folder, max_batch=2)


def test_prompt_text_is_the_official_one() -> None:
    assert hashlib.sha256(REGRESSION_QUERY_PROMPT.encode()).hexdigest() == GOLDEN["prompt_sha256"]
    p = build_eval_prompt("a cat <image> runs", 3)
    assert p.endswith(
        'the text prompt is "a cat  runs",\nall the frames of video are as follows:\n<image> <image> <image> '
    )
    assert p.count("<image>") == 3
    assert build_eval_prompt(None, 1).count('""') == 1


def test_our_class_has_exactly_the_official_keys() -> None:
    from transformers import Idefics2Config

    tok = tiny.build_tokenizer()
    cfg = Idefics2Config(**tiny.config_dict(len(tok), tok.convert_tokens_to_ids("<image>")))
    with torch.device("meta"):
        model = scorer_class()(cfg)
    ours = {k: list(v.shape) for k, v in model.state_dict().items()}
    assert ours == OFFICIAL_KEYS
    assert {"score.weight", "score.bias"} <= set(ours) and all(
        k.startswith(("model.", "score.")) for k in ours
    )


def test_matches_the_official_mantis_golden(scorer: nn.Module) -> None:
    clips = tiny.golden_clips()
    inputs = scorer.preprocess(ClipBatch(frames=_frames(clips), prompts=list(tiny.PROMPTS)))
    for i, g in enumerate(GOLDEN["clips"]):
        n = len(g["input_ids"])
        assert inputs["input_ids"][i, :n].tolist() == g["input_ids"]  # processor + prompt + frame sampling
        assert int(inputs["attention_mask"][i].sum()) == n
        f, h, w = inputs["image_sizes"][i].tolist()
        assert [1, f, 3, h, w] == g["pixel_values_shape"]
        px = inputs["pixel_values"][i, :f, :, :h, :w].double().sum().item()
        assert px == pytest.approx(g["pixel_values_sum"], rel=1e-6)
    scores = scorer(**inputs)
    assert scores.shape == (2,) and scores.dtype == torch.float32 and torch.isfinite(scores).all()
    expected = torch.tensor([g["score"] for g in GOLDEN["clips"]])
    torch.testing.assert_close(scorer.last_raw_scores, expected, atol=2e-5, rtol=0)
    torch.testing.assert_close(scores, expected.clamp(0, 1), atol=2e-5, rtol=0)


def test_official_position_ids_differ_from_the_shifted_formula() -> None:
    """For a full-width grid (n = buckets) the official ids are the identity, each bucket used once."""
    mask = torch.ones(1, 4, 8, dtype=torch.bool)
    ids = official_position_ids(mask, 8).view(4, 8)
    assert ids[0].tolist() == list(range(8))
    assert ids[:, 0].tolist() == [0, 16, 32, 48]


def test_equals_manual_idefics2_model_plus_linear(folder: Path, scorer: nn.Module) -> None:
    """Batched, right-padded scorer == stock transformers Idefics2Model + Linear run clip by clip.

    Sizes 48x48 (3x3 patches) and 42x98 (3x7) are grids where the official and the stock position ids agree,
    so the stock model is a valid reference for the wiring (pooling, padding, head, /100).
    """
    from PIL import Image
    from safetensors.torch import load_file
    from transformers import AutoConfig, Idefics2Model

    from animereward.preprocess import sample_frame_indices, to_uint8

    g = torch.Generator().manual_seed(3)
    frames = [torch.rand(26, 48, 48, 3, generator=g), torch.rand(9, 42, 98, 3, generator=g)]
    prompts = [tiny.PROMPTS[1], tiny.PROMPTS[0]]
    inputs = scorer.preprocess(ClipBatch(frames=frames, prompts=prompts))
    assert inputs["input_ids"].shape[0] == 2 and (inputs["attention_mask"] == 0).any()  # really padded
    scorer.max_batch = 2
    batched = scorer.raw_scores(**inputs)
    scorer.max_batch = 1
    single = scorer.raw_scores(**inputs)
    scorer.max_batch = 2

    config = AutoConfig.from_pretrained(folder)
    state = load_file(str(folder / "model.safetensors"))
    ref = Idefics2Model(config).eval()
    ref.load_state_dict(
        {k[len("model.") :]: v for k, v in state.items() if k.startswith("model.")}, strict=True
    )
    head = nn.Linear(config.text_config.hidden_size, 1)
    head.load_state_dict({"weight": state["score.weight"], "bias": state["score.bias"]})
    manual = []
    for clip, prompt in zip(frames, prompts, strict=True):
        images = [Image.fromarray(f) for f in to_uint8(clip[sample_frame_indices(clip.shape[0])])]
        enc = scorer.processor(
            text=build_eval_prompt(prompt, len(images)), images=images, return_tensors="pt"
        )
        with torch.no_grad():
            hidden = ref(**enc, use_cache=False).last_hidden_state
            manual.append(head(hidden[0, -1])[0] / 100)
    manual_t = torch.stack(manual)
    torch.testing.assert_close(batched, manual_t, atol=1e-5, rtol=0)
    torch.testing.assert_close(single, manual_t, atol=1e-5, rtol=0)


def test_clamp_policy_keeps_raw(scorer: nn.Module) -> None:
    inputs = scorer.preprocess(ClipBatch(frames=_frames(tiny.golden_clips()), prompts=list(tiny.PROMPTS)))
    with torch.no_grad():
        scorer.score.bias += 200.0  # logits ~ 250 -> raw ~ 2.5
    try:
        scores = scorer(**inputs)
    finally:
        with torch.no_grad():
            scorer.score.bias -= 200.0
    assert torch.equal(scores, torch.ones(2))
    assert (scorer.last_raw_scores > 1.5).all()


def test_missing_and_unexpected_keys_are_errors(tmp_path: Path) -> None:
    bad = tiny.write_checkpoint(
        tmp_path / "missing",
        OFFICIAL_KEYS,
        drop=("score.bias", "model.connector.perceiver_resampler.latents"),
    )
    with pytest.raises(
        ValueError, match=r"missing keys \(2\).*model\.connector\.perceiver_resampler\.latents.*score\.bias"
    ):
        build_scorer("visual_smoothness", bad)
    extra = tiny.write_checkpoint(tmp_path / "extra", OFFICIAL_KEYS, extra={"lm_head.weight": [4, 4]})
    with pytest.raises(ValueError, match=r"unexpected keys \(1\).*lm_head\.weight"):
        build_scorer("visual_smoothness", extra)
    shapes = dict(OFFICIAL_KEYS, **{"score.weight": [2, OFFICIAL_KEYS["score.weight"][1]]})
    wrong = tiny.write_checkpoint(tmp_path / "shape", shapes)
    with pytest.raises(ValueError, match=r"shape mismatches: score\.weight"):
        build_scorer("visual_smoothness", wrong)


def test_option_errors(folder: Path) -> None:
    with pytest.raises(ValueError, match="CUDA"):
        build_scorer("visual_appeal", folder, quantization="8bit", device="cpu")
    with pytest.raises(ValueError, match="CUDA"):
        build_scorer("visual_appeal", folder, quantization="4bit")
    with pytest.raises(ValueError, match="quantization must be one of"):
        build_scorer("visual_appeal", folder, quantization="3bit")
    with pytest.raises(ValueError, match="serves"):
        build_scorer("visual_motion", folder)
    with pytest.raises(ValueError, match=r"no config\.json"):
        build_scorer("visual_appeal", folder.parent / "nowhere")


def test_bfloat16(folder: Path) -> None:
    scorer = build_scorer("visual_smoothness", folder, dtype=torch.bfloat16)
    assert scorer.name == "visual_smoothness" and scorer.score.weight.dtype == torch.bfloat16
    inputs = scorer.preprocess(ClipBatch(frames=_frames(tiny.golden_clips()), prompts=list(tiny.PROMPTS)))
    assert inputs["pixel_values"].dtype == torch.bfloat16
    scores = scorer(**inputs)
    assert scores.dtype == torch.float32 and scores.shape == (2,)
    expected = torch.tensor([g["score"] for g in GOLDEN["clips"]])
    torch.testing.assert_close(scorer.last_raw_scores, expected, atol=0.05, rtol=0)


@pytest.mark.parametrize("official_size", [False, True], ids=["tiny-processor", "official-378-980"])
def test_fast_pixels_equal_the_processor_bit_for_bit(scorer: nn.Module, official_size: bool) -> None:
    """clip_pixel_values + text-only processor call == one processor(text, images) call, for frames that are
    shrunk, enlarged, portrait, landscape and odd-sized; with the official folders' size settings too."""
    import copy

    from PIL import Image

    from animereward.idefics2_regression import clip_pixel_values, pixel_recipe
    from animereward.preprocess import sample_frame_indices, to_uint8

    processor = copy.deepcopy(scorer.processor)
    if official_size:
        processor.image_processor.size = {"shortest_edge": 378, "longest_edge": 980}
    recipe = pixel_recipe(processor.image_processor)
    assert recipe is not None
    g = torch.Generator().manual_seed(11)
    shapes = [(30, 240, 416), (5, 17, 9), (3, 120, 44), (2, 1000, 1100)] if official_size else \
        [(30, 240, 416), (5, 17, 9), (3, 120, 44), (4, 28, 28), (2, 113, 300)]
    for t, h, w in shapes:
        frames = torch.rand(t, h, w, 3, generator=g)
        images = [Image.fromarray(f) for f in to_uint8(frames[sample_frame_indices(t)])]
        prompt = build_eval_prompt(tiny.PROMPTS[0], len(images))
        want = processor(text=prompt, images=images, return_tensors="pt")
        got = clip_pixel_values(processor, recipe, frames)
        assert got.dtype == torch.float32 and torch.equal(got, want["pixel_values"][0]), (t, h, w)
        assert bool(want["pixel_attention_mask"].all())  # one clip, one size: no padding to reproduce
        text = processor(text=prompt, return_tensors="pt")
        assert torch.equal(text["input_ids"], want["input_ids"])
        assert torch.equal(text["attention_mask"], want["attention_mask"])


def test_other_image_processors_are_called_as_they_are(scorer: nn.Module) -> None:
    """Image splitting (not the official setting) has no fast recipe: the processor itself makes the pixels."""
    import copy

    from animereward.idefics2_regression import clip_pixel_values, pixel_recipe

    processor = copy.deepcopy(scorer.processor)
    processor.image_processor.do_image_splitting = True
    assert pixel_recipe(processor.image_processor) is None
    frames = torch.rand(3, 40, 60, 3, generator=torch.Generator().manual_seed(5))
    got = clip_pixel_values(processor, None, frames)
    assert got.shape[0] == 3 * 5  # four crops + the whole image per frame


def test_both_regression_models_share_the_pixels_of_a_call(folder: Path, scorer: nn.Module) -> None:
    other = build_scorer("visual_smoothness", folder)
    frames = [torch.rand(6, 40, 64, 3, generator=torch.Generator().manual_seed(6))]
    batch = ClipBatch(frames=frames, prompts=[tiny.PROMPTS[0]])
    a = scorer.preprocess(batch)
    entries = batch.memo.size()[0]
    b = other.preprocess(batch)
    assert batch.memo.size()[0] == entries  # nothing new computed
    assert all(torch.equal(a[k], b[k]) for k in a)
