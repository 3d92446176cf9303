"""Conformance of the two BLIP consistency dimensions with the official Index-anisora code.

- The official key set (names, shapes, dtypes of the official modules' state dicts, recorded in
  tests/golden/blip/official_keys.json) loads strictly into our modules through `build_scorer` from a real
  `.pth`; a missing or an unexpected key raises with the key listed.
- Golden outputs: the official modules were run once (outside the repo, see tests/golden/blip/README.md) on
  deterministic weights and fixed inputs; our batched scorers must match within 1e-4 in fp32 on CPU.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

from animereward import blip_consistency, checkpoints
from animereward.blip_consistency import (
    IMAGE_VIDEO,
    TEXT_VIDEO,
    ImageVideoConsistency,
    TextVideoConsistency,
    build_scorer,
    load_weights,
)
from animereward.blip_text import BUNDLED_VOCAB, load_tokenizer
from animereward.checkpoints import CheckpointError
from animereward.scorer_protocol import ClipBatch

GOLDEN = Path(__file__).resolve().parents[1] / "golden"
BLIP_GOLDEN = GOLDEN / "blip"
OFFICIAL_KEYS: dict[str, list[tuple[str, list[int], str]]] = json.loads((BLIP_GOLDEN / "official_keys.json").read_text())
CASES = json.loads((BLIP_GOLDEN / "cases.json").read_text())
EXPECTED = json.loads((BLIP_GOLDEN / "expected.json").read_text())
TOL = 1e-4


def _recipe():
    spec = importlib.util.spec_from_file_location("_golden_deterministic_weights", GOLDEN / "deterministic_weights.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)  # type: ignore[union-attr]
    return mod


RECIPE = _recipe()


def official_state_dict(dimension: str) -> dict[str, torch.Tensor]:
    """The golden weights: shared recipe for float tensors; BERT's int64 `position_ids` is its arange."""
    keys = OFFICIAL_KEYS[dimension]
    sd = RECIPE.deterministic_state_dict({k: s for k, s, d in keys if d == "float32"}, EXPECTED["weights_seed"])
    for k, s, d in keys:
        if d != "float32":
            assert d == "int64" and k.endswith("position_ids"), (k, d)
            sd[k] = torch.arange(s[-1], dtype=torch.int64).expand(*s).contiguous()
    return sd


def meta_state_dict(dimension: str) -> dict[str, torch.Tensor]:
    """Official names and shapes without memory: enough for the key checks, which fail before loading."""
    dt = {"float32": torch.float32, "int64": torch.int64}
    return {k: torch.empty(s, dtype=dt[d], device="meta") for k, s, d in OFFICIAL_KEYS[dimension]}


def meta_module(dimension: str):
    with torch.device("meta"):
        return ImageVideoConsistency() if dimension == IMAGE_VIDEO else TextVideoConsistency()


def uint8(spec: dict) -> np.ndarray:
    return np.random.default_rng(spec["seed"]).integers(0, 256, size=tuple(spec["shape"]), dtype=np.uint8)


def as_frames(a: np.ndarray) -> torch.Tensor:
    """uint8 → ComfyUI float 0..1 (exactly invertible, so preprocessing sees the same uint8 frames)."""
    return torch.from_numpy(a).float() / 255.0


# --- key set ------------------------------------------------------------------------------------------------


def test_recipe_fingerprint_unchanged() -> None:
    """The goldens were made with tests/golden/deterministic_weights.py as it is now."""
    for key, fp in EXPECTED["recipe_fingerprint"].items():
        t = RECIPE.deterministic_tensor(key, fp["shape"], EXPECTED["weights_seed"]).double()
        assert abs(float(t.sum()) - fp["sum"]) < 1e-6 and abs(float(t.flatten()[0]) - fp["first"]) < 1e-9, (
            "the deterministic-weights recipe changed since the BLIP goldens were made; regenerate them "
            "(tests/golden/blip/README.md)"
        )


@pytest.mark.parametrize("dimension", [IMAGE_VIDEO, TEXT_VIDEO])
def test_official_keys_cover_module_exactly(dimension: str) -> None:
    """Every kept official key lands on a parameter of the same shape; only the listed ones are dropped."""
    module = meta_module(dimension)
    rename = blip_consistency._RENAMES[dimension]
    ours = {k: tuple(v.shape) for k, v in module.state_dict().items()}
    kept = {rename(k): tuple(s) for k, s, _ in OFFICIAL_KEYS[dimension] if rename(k) is not None}
    assert kept == ours
    dropped = sorted(k for k, _, _ in OFFICIAL_KEYS[dimension] if rename(k) is None)
    if dimension == IMAGE_VIDEO:
        assert dropped == []
    else:
        assert dropped[0] == "text_encoder.embeddings.position_ids"
        assert len(dropped) == 1 + 12 * 10 and all(".crossattention." in k for k in dropped[1:])
    # a small size (tests, benchmarks) builds the same modules: the same names, smaller shapes
    cls = blip_consistency.ImageVideoConsistency if dimension == IMAGE_VIDEO else blip_consistency.TextVideoConsistency
    with torch.device("meta"):
        small = cls(width=64, depth=12, heads=2)
    assert {k: len(v.shape) for k, v in small.state_dict().items()} == {k: len(v) for k, v in ours.items()}


@pytest.mark.parametrize("dimension", [IMAGE_VIDEO, TEXT_VIDEO])
def test_missing_key_raises_with_key_listed(dimension: str) -> None:
    sd = meta_state_dict(dimension)
    del sd["img_key_proj.bias"]
    del sd["visual_encoder.blocks.7.mlp.fc2.weight"]
    with pytest.raises(CheckpointError, match=r"(?s)missing keys.*img_key_proj\.bias.*visual_encoder\.blocks\.7\.mlp\.fc2\.weight"):
        load_weights(meta_module(dimension), sd, dimension)


@pytest.mark.parametrize("dimension", [IMAGE_VIDEO, TEXT_VIDEO])
def test_unexpected_key_raises_with_key_listed(dimension: str) -> None:
    sd = meta_state_dict(dimension)
    sd["visual_encoder.blocks.12.norm1.weight"] = torch.empty(768, device="meta")
    sd["head_same.weight"] = torch.empty(1, 1536, device="meta")
    with pytest.raises(CheckpointError, match=r"(?s)unexpected keys.*head_same\.weight.*visual_encoder\.blocks\.12\.norm1\.weight"):
        load_weights(meta_module(dimension), sd, dimension)


def test_text_encoder_shape_mismatch_raises() -> None:
    """A vocab-30522 (un-resized) text encoder is not the official checkpoint."""
    sd = meta_state_dict(TEXT_VIDEO)
    sd["text_encoder.embeddings.word_embeddings.weight"] = torch.empty(30522, 768, device="meta")
    with pytest.raises(CheckpointError, match=r"word_embeddings\.weight: checkpoint \(30522, 768\)"):
        load_weights(meta_module(TEXT_VIDEO), sd, TEXT_VIDEO)


def test_blip_pretraining_extras_are_dropped_deliberately() -> None:
    """Keys BLIP's pretraining model has (momentum encoders, ITC/ITM heads, queues) never fail the load."""
    sd = meta_state_dict(IMAGE_VIDEO)
    extras = {
        "visual_encoder_m.cls_token": (1, 1, 768), "vision_proj.weight": (256, 768), "text_proj_m.bias": (256,),
        "itm_head.weight": (2, 768), "image_queue": (256, 57600), "queue_ptr": (1,), "temp": (),
        "text_encoder.embeddings.word_embeddings.weight": (30524, 768),
    }
    sd.update({k: torch.empty(s, device="meta") for k, s in extras.items()})
    module = meta_module(IMAGE_VIDEO)
    for k in extras:
        assert blip_consistency._RENAMES[IMAGE_VIDEO](k) is None
    # Still strict about everything else:
    sd["img_proj.extra"] = torch.empty(1, device="meta")
    with pytest.raises(CheckpointError, match=r"img_proj\.extra") as err:
        load_weights(module, sd, IMAGE_VIDEO)
    assert "vision_proj" not in str(err.value)


# --- real .pth through build_scorer, and the goldens --------------------------------------------------------


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, tuple[torch.nn.Module, Path]]]:
    """Each official-key state dict saved as a real BLIP checkpoint .pth and loaded through build_scorer."""
    out = {}
    for dimension in (IMAGE_VIDEO, TEXT_VIDEO):
        pth = tmp_path_factory.mktemp(dimension) / "checkpoint_05.pth"
        # BLIP's train script saves {'model', 'optimizer', 'config', 'epoch'}; plain types load weights_only.
        torch.save({"model": official_state_dict(dimension), "config": {"vit": "base", "image_size": 224}, "epoch": 5}, pth)
        out[dimension] = (build_scorer(dimension, pth), pth)
        assert pth.with_suffix(".safetensors").is_file()
        pth.unlink()  # later builds must come from the .safetensors
    yield out
    for _, pth in out.values():  # 1.2 GB: not left in pytest's kept temp folders
        pth.with_suffix(".safetensors").unlink(missing_ok=True)


def _hooked_scores(scorer, batch: ClipBatch) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Scores plus what the official hooks recorded: inputs of img_proj / img_key_proj, head_diff output."""
    store: dict[str, torch.Tensor] = {}

    def grab(name: str, which: str):
        def fn(mod, inp, out):
            store[name] = (inp[0] if which == "in" else out).detach().clone()

        return fn

    hooks = [
        scorer.img_proj.register_forward_hook(grab("video_cls", "in")),
        scorer.img_key_proj.register_forward_hook(grab("second_cls", "in")),
        scorer.head_diff.register_forward_hook(grab("logit", "out")),
    ]
    try:
        with torch.inference_mode():
            inputs = scorer.preprocess(batch)
            scores = scorer(**inputs)
    finally:
        for h in hooks:
            h.remove()
    store.update({k: v for k, v in inputs.items() if k in ("input_ids", "attention_mask")})
    return scores, store


def _compare(dimension: str, scores: torch.Tensor, store: dict[str, torch.Tensor]) -> dict[str, float]:
    diffs: dict[str, float] = {}
    assert scores.dtype == torch.float32 and scores.shape == (len(CASES[dimension]),)
    for i, case in enumerate(CASES[dimension]):
        exp = EXPECTED["cases"][case["name"]]
        assert exp["dimension"] == dimension
        d = [abs(float(scores[i]) - exp["score"]), abs(float(store["logit"][i, 0]) - exp["logit"])]
        for name in ("video_cls", "second_cls"):
            v = store[name][i].double()
            d.append(float((v[:32] - torch.tensor(exp[name]["first32"], dtype=torch.float64)).abs().max()))
            d.append(abs(float(v.norm()) - exp[name]["norm"]))
            d.append(abs(float(v.sum()) - exp[name]["sum"]) / 10)  # a sum of 768 terms: 10x looser
        diffs[case["name"]] = max(d)
        if "input_ids" in exp:
            assert store["input_ids"][i].tolist() == exp["input_ids"], case["name"]
            assert store["attention_mask"][i].tolist() == exp["attention_mask"], case["name"]
    assert max(diffs.values()) < TOL, diffs
    return diffs


def _batch(dimension: str) -> ClipBatch:
    cases = CASES[dimension]
    for c in cases:
        exp = EXPECTED["cases"][c["name"]]
        assert hashlib.sha256(uint8(c["video"]).tobytes()).hexdigest() == exp["video_sha256"], "input recipe drifted"
    return ClipBatch(
        frames=[as_frames(uint8(c["video"])) for c in cases],
        prompts=[c.get("prompt") for c in cases],
        first_frames=[as_frames(uint8(c["key_image"])) if "key_image" in c else None for c in cases],
    )


def test_golden_image_video_batched(built) -> None:
    """All cases (T = 1, 3, 2; odd sizes, an exact 224² clip, a 7×300 key image) in one batch; the official
    outputs were made one clip at a time, so this also shows batching changes no score."""
    scores, store = _hooked_scores(built[IMAGE_VIDEO][0], _batch(IMAGE_VIDEO))
    print("image_video max abs diff per case:", _compare(IMAGE_VIDEO, scores, store))
    assert ((scores >= 0) & (scores <= 1)).all()


def test_golden_text_video_batched(built) -> None:
    """Short, long (>30 tokens, truncated), empty and accented/CJK/punctuation prompts in one batch."""
    scores, store = _hooked_scores(built[TEXT_VIDEO][0], _batch(TEXT_VIDEO))
    print("text_video max abs diff per case:", _compare(TEXT_VIDEO, scores, store))


def test_second_build_reads_safetensors(built, monkeypatch) -> None:
    """build_scorer again on the same .pth name: the converted file is read, no torch.load (no pickle) at all."""
    scorer, pth = built[IMAGE_VIDEO]

    def no_pickle(*a, **k):
        raise AssertionError("torch.load called although the .safetensors exists")

    monkeypatch.setattr(checkpoints.torch, "load", no_pickle)
    again = build_scorer(IMAGE_VIDEO, pth)
    ref = scorer.state_dict()
    assert all(torch.equal(v, ref[k]) for k, v in again.state_dict().items())


# --- inputs, tokenizer ---------------------------------------------------------------------------------------


def test_missing_inputs_raise() -> None:
    frames = [torch.zeros(2, 8, 8, 3)]
    with pytest.raises(ValueError, match="first frame"):
        meta_module(IMAGE_VIDEO).preprocess(ClipBatch(frames=frames, first_frames=[None]))
    with pytest.raises(ValueError, match="prompt"):
        meta_module(TEXT_VIDEO).preprocess(ClipBatch(frames=frames, prompts=[None]))
    with pytest.raises(ValueError, match="image_video_consistency"):
        build_scorer("visual_motion", Path("x.pth"))


def test_bundled_vocab_and_tokenizer_facts() -> None:
    data = BUNDLED_VOCAB.read_bytes()
    assert len(data) == 231_508
    assert hashlib.sha256(data).hexdigest() == "07eced375cec144d27c900241f3e339478dec958f92fddbc551f295c992038a3"
    tok = load_tokenizer()
    assert len(tok) == 30524 and tok.bos_token_id == 30522 and tok.additional_special_tokens_ids == [30523]
    assert tok.convert_tokens_to_ids(["the", "hello", "##s", "[CLS]", "[SEP]", "[PAD]"]) == [1996, 7592, 2015, 101, 102, 0]


def test_user_vocab_beside_checkpoint_overrides(tmp_path: Path) -> None:
    lines = BUNDLED_VOCAB.read_text(encoding="utf-8").splitlines()
    swapped = lines.copy()
    swapped[1996], swapped[7592] = lines[7592], lines[1996]  # "the" <-> "hello"
    (tmp_path / "vocab.txt").write_text("\n".join(swapped) + "\n", encoding="utf-8")
    tok = meta_module(TEXT_VIDEO).tokenizer
    assert tok("hello the")["input_ids"] == [101, 7592, 1996, 102]  # bundled
    with torch.device("meta"):
        tok = TextVideoConsistency(tmp_path / "vocab.txt").tokenizer
    assert tok("hello the")["input_ids"] == [101, 1996, 7592, 102]
    # build_scorer picks the file up (a wrong-size vocabulary is refused before the weights are read).
    (tmp_path / "vocab.txt").write_text("[PAD]\n[UNK]\n[CLS]\n[SEP]\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"vocab\.txt gives"):
        build_scorer(TEXT_VIDEO, tmp_path / "checkpoint_05.pth")


class _Config(dict):
    """A custom class in a checkpoint, as a training script's config object would be."""


def test_build_scorer_refuses_unsafe_pickle(tmp_path: Path) -> None:
    pth = tmp_path / "checkpoint_06.pth"
    torch.save({"model": {"img_proj.weight": torch.zeros(1)}, "config": _Config(vit="base")}, pth)
    with pytest.raises(CheckpointError, match=r"(?s)checkpoint_06\.pth.*weights_only=True.*'model' entry.*checkpoint_06\.safetensors"):
        build_scorer(IMAGE_VIDEO, pth)
