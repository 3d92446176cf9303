"""A tiny checkpoint folder in the official `checkpoint-final/` format, and the clips the golden was made on.

Shared by the conformance test (transformers 4.57, our scorer) and `make_golden.py` (transformers 4.41 with
the official Mantis class, in a scratch venv), so both must work under both versions: only `tokenizers`,
`safetensors`, numpy, torch and the transformers processor classes are used, and every file is written from
values fixed here (no training, no model init), so the folder is the same whichever version writes it.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

ARCHITECTURE = "Idefics2ForSequenceClassification"

# Small, but every part of the real model: SigLIP-style vision (2 layers), perceiver (2 layers, GQA),
# Mistral decoder (2 layers, GQA). Vision image_size 112 / patch 14 -> 8 position buckets per side.
VISION = {
    "hidden_size": 16,
    "intermediate_size": 32,
    "num_hidden_layers": 2,
    "num_attention_heads": 2,
    "num_channels": 3,
    "image_size": 112,
    "patch_size": 14,
    "hidden_act": "gelu_pytorch_tanh",
    "layer_norm_eps": 1e-6,
    "model_type": "idefics2_vision",
}
PERCEIVER = {
    "hidden_act": "silu",
    "hidden_size": 32,
    "rms_norm_eps": 1e-5,
    "resampler_n_latents": 4,
    "resampler_depth": 2,
    "resampler_n_heads": 2,
    "resampler_head_dim": 8,
    "num_key_value_heads": 1,
    "model_type": "idefics2_perceiver",
}
TEXT = {
    "model_type": "mistral",
    "hidden_size": 32,
    "intermediate_size": 64,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "max_position_embeddings": 4096,
    "rms_norm_eps": 1e-5,
    "rope_theta": 10000.0,
    "sliding_window": 4096,
    "hidden_act": "silu",
    "pad_token_id": 0,
    "bos_token_id": 1,
    "eos_token_id": 2,
    "tie_word_embeddings": False,
}
IMAGE_PROCESSOR = {
    "do_convert_rgb": True,
    "do_resize": True,
    "size": {"shortest_edge": 28, "longest_edge": 112},
    "resample": 2,  # PIL bilinear, as the real Idefics2 processor
    "do_rescale": True,
    "rescale_factor": 1 / 255,
    "do_normalize": True,
    "image_mean": [0.5, 0.5, 0.5],
    "image_std": [0.5, 0.5, 0.5],
    "do_pad": True,
    "do_image_splitting": False,  # as the official folders (saved by Mantis' train_idefics2.py)
}
SPECIALS = ["<unk>", "<s>", "</s>"]
ADDED = ["<fake_token_around_image>", "<image>", "<end_of_utterance>"]
PROMPTS = [
    "a girl with silver hair waves under falling cherry blossoms",
    "a red robot jumps over a river at night, camera pans left",
]
# The regression template's words (the module's REGRESSION_QUERY_PROMPT, repeated here so this file runs
# without the pack on the path) plus the prompts: every word is in the vocabulary, so no <unk> (= pad id 0).
VOCAB_TEXT = (
    "Suppose you are an expert in judging and evaluating the quality of AI-generated videos, please watch the "
    "following frames of a given video and see the text prompt for generating the video, then give scores from "
    "quality dimensions: the quality of the video in terms of clearness, resolution, brightness, and color "
    "Output a float number from 0 to 100, the higher the number is, the better the video performs in that "
    "sub-score, the lowest 0 means Bad, the highest 100 means Perfect/Real (the video is like a real video) "
    "For this video, the text prompt is "
    + " ".join(f'"{p}",' for p in [*PROMPTS, ""])
    + " all the frames of video are as follows:"
)
SEED = 20250601


def build_tokenizer():  # -> PreTrainedTokenizerFast
    """Word-level tokenizer with a fixed vocabulary: specials, sorted words, then the Idefics2 added tokens."""
    from tokenizers import AddedToken, Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    pieces = sorted({w for w, _ in pre_tokenizers.Whitespace().pre_tokenize_str(VOCAB_TEXT)})
    vocab = {tok: i for i, tok in enumerate(SPECIALS + pieces)}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in SPECIALS])
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in ADDED])
    tok.post_processor = processors.TemplateProcessing(
        single="<s> $A", special_tokens=[("<s>", vocab["<s>"])]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token="<s>",
        eos_token="</s>",
        unk_token="<unk>",
        pad_token="<unk>",  # as Idefics2's Mistral tokenizer: pad = unk = id 0
        additional_special_tokens=ADDED,
        model_input_names=["input_ids", "attention_mask"],  # as LlamaTokenizerFast: no token_type_ids
    )


def config_dict(vocab_size: int, image_token_id: int) -> dict:
    """config.json of a Mantis regression checkpoint (architectures, one label, problem_type regression)."""
    return {
        "architectures": [ARCHITECTURE],
        "model_type": "idefics2",
        "image_token_id": image_token_id,
        "use_cache": True,
        "tie_word_embeddings": False,
        "id2label": {"0": "LABEL_0"},
        "label2id": {"LABEL_0": 0},
        "problem_type": "regression",
        "torch_dtype": "float32",
        "vision_config": dict(VISION),
        "perceiver_config": dict(PERCEIVER),
        "text_config": dict(TEXT, vocab_size=vocab_size),
    }


def deterministic_state_dict(shapes: dict[str, list[int]], seed: int = SEED) -> dict[str, torch.Tensor]:
    """Weights from numpy PCG64 over the sorted keys: stable across numpy/torch/transformers versions.

    Scales are large enough that images move the score: norms ~1, matrices N(0, 0.2), the score head
    N(0, 3) with bias 50 so that logit/100 lands around [0, 1] (some clips may leave it: clamp test).
    """
    rng = np.random.default_rng(seed)
    out = {}
    for key in sorted(shapes):
        shape = tuple(shapes[key])
        noise = rng.standard_normal(shape)
        if key.startswith("score."):
            value = 3.0 * noise + (50.0 if key.endswith("bias") else 0.0)
        elif len(shape) == 1 and "norm" in key and key.endswith("weight"):
            value = 1.0 + 0.1 * noise
        elif key.endswith("latents"):
            value = 1.0 + 0.2 * noise
        else:
            value = 0.2 * noise
        out[key] = torch.from_numpy(value.astype(np.float32))
    return out


def write_checkpoint(
    folder: Path,
    shapes: dict[str, list[int]],
    seed: int = SEED,
    drop: tuple[str, ...] = (),
    extra: dict[str, list[int]] | None = None,
) -> Path:
    """Write config.json, model.safetensors and the processor files. drop/extra: keys to corrupt the layout."""
    from safetensors.torch import save_file
    from transformers import Idefics2ImageProcessor, Idefics2Processor

    folder.mkdir(parents=True, exist_ok=True)
    tokenizer = build_tokenizer()
    processor = Idefics2Processor(
        Idefics2ImageProcessor(**IMAGE_PROCESSOR), tokenizer, image_seq_len=PERCEIVER["resampler_n_latents"]
    )
    processor.save_pretrained(str(folder))
    image_token_id = tokenizer.convert_tokens_to_ids("<image>")
    cfg = config_dict(len(tokenizer), image_token_id)
    (folder / "config.json").write_text(json.dumps(cfg, indent=2))
    state = deterministic_state_dict(shapes, seed)
    for key in drop:
        state.pop(key)
    for key, shape in (extra or {}).items():
        state[key] = torch.zeros(shape)
    save_file(
        {k: v.contiguous() for k, v in state.items()},
        str(folder / "model.safetensors"),
        metadata={"format": "pt"},
    )
    return folder


def golden_clips() -> list[np.ndarray]:
    """Two uint8 clips [T,H,W,3] of different length and size (30 frames 64x128 -> 24 sampled, 5 frames 48x48).

    64x128 resizes to 56x112 (4x8 patches: the 8 columns are where the official and the transformers-4.57
    position ids differ); 48x48 keeps its size (3x3 patches, a 6-pixel remainder dropped by the patch conv).
    """
    rng = np.random.default_rng(7)
    clips = []
    for t, h, w in ((30, 64, 128), (5, 48, 48)):
        yy, xx = np.mgrid[0:h, 0:w]
        base = np.stack([xx / w, yy / h, 0.5 + 0 * xx], -1)
        frames = []
        for i in range(t):
            f = base.copy()
            cx, cy = (10 + 3 * i) % w, h // 2
            f[(np.abs(xx - cx) < 8) & (np.abs(yy - cy) < 8)] = (1.0, 0.2, 0.1)
            frames.append(f + 0.05 * rng.standard_normal(f.shape))
        clips.append((np.clip(np.stack(frames), 0, 1) * 255).round().astype(np.uint8))
    return clips
