"""Batch size on an NVIDIA GPU: clips per second and peak VRAM of the five model dimensions at their published
sizes (seeded random weights), at batch sizes 1, 4 and 8, in fp32 and bf16, and how far bf16 scores move
from fp32. The measurements behind the loader's `batch_size` default and the working-memory estimate the
nodes ask model management for (nodes/reward_handle.py); docs/batch-size.md records the figures.

    python -m bench.gpu_batch_size [--out results.json] [--clips 8] [--height 480 --width 832]
    python -m bench.gpu_batch_size --smoke          # small models on the CPU: checks the script itself

Not part of `python -m bench` (which runs bench_*.py on any machine): this one needs CUDA, ~40 GB of VRAM for
the fp32 Idefics2-8B, and a few minutes. What it does, per dimension:
- builds the scorer at the published size with random weights straight on the GPU (the two Idefics2 models
  share one architecture, so one random model stands for both; ActionCLIP and BLIP as bench_scoring_fullsize);
- scores `--clips` clips of 24 frames (Wan 480p by default) with the facade's own `score_batch`, once to warm
  up, then timed (CUDA synchronised) at each batch size, peak memory from `torch.cuda.max_memory_allocated`;
- casts the same weights to bf16 and does it again; prints max |fp32 - bf16| of the scores per dimension
  (for Idefics2 of the unclamped logit/100, since random weights push many clamped scores to 0 or 1).
Columns: clips/s; peak MiB (weights included); activation MiB = peak - weights; MiB per frame = activation /
(batch clips x frames read), the figure `ACTIVATION_BYTES_PER_FRAME` in nodes/reward_handle.py stands for.
"""

from __future__ import annotations

import argparse
import gc
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

REPO_ROOT = Path(__file__).resolve().parents[1]
BATCH_SIZES = (1, 4, 8)
PROMPT = "a girl with silver hair waves under falling cherry blossoms"
IDEFICS2 = ("visual_smoothness", "visual_appeal")

# Idefics2-8B as published (HuggingFaceM4/idefics2-8b config.json, which the Mantis regression checkpoints
# fine-tune): SigLIP so400m vision tower, 64-latent perceiver, Mistral-7B decoder; the processor of the official
# checkpoint folders (shortest edge 378, no image splitting, 64 tokens per image).
IDEFICS2_8B = {
    "vision_config": {"hidden_size": 1152, "intermediate_size": 4304, "num_hidden_layers": 27,
                      "num_attention_heads": 16, "image_size": 980, "patch_size": 14, "num_channels": 3,
                      "hidden_act": "gelu_pytorch_tanh", "layer_norm_eps": 1e-6, "model_type": "idefics2_vision"},
    "perceiver_config": {"hidden_act": "silu", "hidden_size": 4096, "resampler_n_latents": 64, "resampler_depth": 3,
                         "resampler_n_heads": 16, "resampler_head_dim": 96, "num_key_value_heads": 4,
                         "rms_norm_eps": 1e-6, "model_type": "idefics2_perceiver"},
    "text_config": {"model_type": "mistral", "hidden_size": 4096, "intermediate_size": 14336,
                    "num_hidden_layers": 32, "num_attention_heads": 32, "num_key_value_heads": 8,
                    "max_position_embeddings": 32768, "rms_norm_eps": 1e-5, "rope_theta": 10000.0,
                    "sliding_window": 4096, "hidden_act": "silu", "vocab_size": 32003, "pad_token_id": 0,
                    "tie_word_embeddings": False},
}
IMAGE_PROCESSOR = {"size": {"shortest_edge": 378, "longest_edge": 980}, "do_image_splitting": False,
                   "resample": 2, "image_mean": [0.5, 0.5, 0.5], "image_std": [0.5, 0.5, 0.5]}


def _tiny_checkpoint_module() -> Any:
    import importlib.util

    path = REPO_ROOT / "tests" / "golden" / "idefics2" / "tiny_checkpoint.py"
    spec = importlib.util.spec_from_file_location("_gpu_bench_idefics2_tiny", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module


def idefics2_8b(name: str, device: torch.device, sizes: dict[str, dict] = IDEFICS2_8B) -> nn.Module:
    """The regression scorer at the published size, random weights (transformers' own init) on `device`.

    The tokenizer is the tests' small word-level one (the prompt's words are in it): the sequence length per
    frame (64 image tokens) is what costs memory, not the vocabulary. `sizes`: --smoke passes small ones."""
    from transformers import Idefics2Config, Idefics2ImageProcessor, Idefics2Processor

    from animereward.idefics2_regression import scorer_class

    tokenizer = _tiny_checkpoint_module().build_tokenizer()
    latents = sizes["perceiver_config"]["resampler_n_latents"]
    processor = Idefics2Processor(Idefics2ImageProcessor(**IMAGE_PROCESSOR), tokenizer, image_seq_len=latents)
    text = dict(sizes["text_config"], vocab_size=max(sizes["text_config"].get("vocab_size", 0), len(tokenizer)))
    config = Idefics2Config(**{**sizes, "text_config": text}, image_token_id=tokenizer.convert_tokens_to_ids("<image>"),
                            num_labels=1, problem_type="regression",
                            architectures=["Idefics2ForSequenceClassification"])
    torch.manual_seed(0)
    with torch.device(device):
        model = scorer_class()(config)
    model.eval().requires_grad_(False)
    model.name, model.max_batch, model.vision_chunk = name, 4, 8
    model.processor = processor
    return model


def full_size(name: str, device: torch.device) -> nn.Module:
    from .bench_scoring_fullsize import _build

    module = _build(name, None)
    return _place(module, device, torch.float32)


def small(name: str, device: torch.device) -> nn.Module:
    """--smoke: the same builders with small sizes (the tests' tiny Idefics2 config, the benchmarks' small
    ActionCLIP and BLIP), to check this script on a CPU."""
    from .bench_scoring import small_actionclip, small_blip

    if name in IDEFICS2:
        tiny = _tiny_checkpoint_module()
        sizes = {"vision_config": dict(tiny.VISION), "perceiver_config": dict(tiny.PERCEIVER),
                 "text_config": dict(tiny.TEXT)}
        return idefics2_8b(name, device, sizes)
    return small_actionclip() if name == "visual_motion" else small_blip(name)


def _place(module: nn.Module, device: torch.device, dtype: torch.dtype) -> nn.Module:
    """Move and cast as the builders do: ActionCLIP keeps its cached prompt features in fp32."""
    text = getattr(module, "text_features", None)
    if isinstance(text, torch.Tensor) and hasattr(module, "visual") and hasattr(module, "adapter"):
        module.visual.to(device=device, dtype=dtype)
        module.adapter.to(device=device, dtype=dtype)
        module.text_features = text.to(device=device, dtype=torch.float32)
        return module
    return module.to(device=device, dtype=dtype)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _weights_bytes(module: nn.Module) -> int:
    return sum(t.numel() * t.element_size() for t in [*module.parameters(), *module.buffers()])


def measure(name: str, module: nn.Module, clips: list[torch.Tensor], device: torch.device,
            batch_sizes: tuple[int, ...]) -> tuple[list[dict[str, float]], list[float]]:
    """Rows (one per batch size) and the scores of the last run."""
    from animereward.reward import AnimeReward

    reward = AnimeReward([name], builders={name: lambda *_a, **_k: module})
    firsts = [c[0] for c in clips]
    frames_read = 24  # the official sample: min(T, 24) frames of the first 144
    scores: list[float] = []
    rows = []
    reward.score_batch(clips[:1], prompts=PROMPT, first_frames=firsts[:1], batch_size=1)  # warm-up
    weights = _weights_bytes(module)
    for bs in batch_sizes:
        gc.collect()
        if device.type == "cuda":
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats(device)
        _sync(device)
        t0 = time.perf_counter()
        out = reward.score_batch(clips, prompts=PROMPT, first_frames=firsts, batch_size=bs)
        _sync(device)
        seconds = time.perf_counter() - t0
        # Idefics2's unclamped logit/100: random weights put many clamped scores at 0 or 1, hiding the difference
        scores = [r.extras.get(name, {}).get("raw_score", r.scores[name]) for r in out]
        peak = torch.cuda.max_memory_allocated(device) if device.type == "cuda" else 0
        activation = max(0, peak - weights)
        rows.append({"batch_size": bs, "clips_per_s": len(clips) / seconds, "peak_mib": peak / 2**20,
                     "weights_mib": weights / 2**20, "activation_mib": activation / 2**20,
                     "mib_per_frame": activation / 2**20 / (min(bs, len(clips)) * frames_read)})
    return rows, scores


def run(args: argparse.Namespace) -> dict[str, Any]:
    from animereward.synthetic_clips import make_clip

    from .bench_scoring import WEIGHTED

    device = torch.device("cpu" if args.smoke else "cuda")
    batch_sizes = (1, 2) if args.smoke else BATCH_SIZES
    clips = [make_clip(s, frames=args.frames, height=args.height, width=args.width) for s in range(args.clips)]
    builders: dict[str, Callable[[str, torch.device], nn.Module]] = {}
    for d in WEIGHTED:
        builders[d] = small if args.smoke else (idefics2_8b if d in IDEFICS2 else full_size)
    results: dict[str, Any] = {"device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
                               "clips": args.clips, "frames": args.frames, "size": [args.height, args.width],
                               "torch": torch.__version__, "dimensions": {}}
    done: dict[str, dict[str, Any]] = {}
    for d in WEIGHTED:
        if d in IDEFICS2 and any(k in done for k in IDEFICS2):  # same architecture: measured once
            results["dimensions"][d] = {**next(done[k] for k in IDEFICS2 if k in done), "same_as": "the other "
                                        "Idefics2 model (one architecture, one random model measured)"}
            print(f"{d:24s} same architecture as the other Idefics2 model: its figures stand for both", flush=True)
            continue
        module = builders[d](d, device)
        entry: dict[str, Any] = {}
        per_dtype_scores = {}
        for dtype_name, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
            module = _place(module, device, dtype)
            rows, scores = measure(d, module, clips, device, batch_sizes)
            entry[dtype_name] = rows
            per_dtype_scores[dtype_name] = scores
            for r in rows:
                print(f"{d:24s} {dtype_name} bs={r['batch_size']}: {r['clips_per_s']:7.2f} clips/s  peak "
                      f"{r['peak_mib']:9.0f} MiB (weights {r['weights_mib']:7.0f}, activation "
                      f"{r['activation_mib']:7.0f} = {r['mib_per_frame']:.2f} MiB/frame)", flush=True)
        diff = max(abs(a - b) for a, b in zip(per_dtype_scores["fp32"], per_dtype_scores["bf16"], strict=True))
        entry["max_abs_score_diff_bf16_vs_fp32"] = diff
        print(f"{d:24s} max |fp32 - bf16| score difference over {args.clips} clips: {diff:.3e}", flush=True)
        results["dimensions"][d] = done[d] = entry
        del module
        gc.collect()
        if device.type == "cuda":
            torch.cuda.empty_cache()
    return results


def main(argv: list[str]) -> int:
    for p in (REPO_ROOT, REPO_ROOT / "tests"):
        if str(p) not in sys.path:
            sys.path.append(str(p))
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=None, help="write the figures as JSON here too")
    parser.add_argument("--clips", type=int, default=8)
    parser.add_argument("--frames", type=int, default=49, help="frames per clip (the models read 24 of them)")
    parser.add_argument("--height", type=int, default=480)
    parser.add_argument("--width", type=int, default=832)
    parser.add_argument("--smoke", action="store_true", help="small models on the CPU: check the script only")
    args = parser.parse_args(argv)
    if args.smoke:
        args.clips, args.frames, args.height, args.width = 2, 9, 64, 96
    elif not torch.cuda.is_available():
        print("no CUDA GPU here: run this on a machine with an NVIDIA GPU (or --smoke to check the script)")
        return 2
    results = run(args)
    if args.out is not None:
        args.out.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
