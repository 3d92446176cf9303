"""Full-size GPU benchmark of the GAPO LoRA Trainer (run by hand on a machine with an NVIDIA GPU).

Wan 2.1 1.3B configuration (dim 1536, ffn 8960, 12 heads, 30 blocks, text width 4096) with random weights,
latents of 480×832 pixels × 33 frames ([16, 9, 60, 104]), LoRA rank 16, gradient checkpointing on. Measures,
each in a fresh process, through the nodes' own `execute` in a real in-process ComfyUI:
  - our node, objective gapo: seconds per step and peak VRAM;
  - our node, objective sft (fine-tuning on winners): the same;
  - ComfyUI's TrainLoraNode (batch 2, the same latents and rank; its model call has batch 4) and
    TrainLoraNode one latent at a time with 2 accumulation steps (the like-for-like baseline): the same.
and prints the ratios against TrainLoraNode (issue targets: time ≤ 1.40, memory ≤ 1.05).

    python -m bench.gpu_trainer_fullsize              # the full size (needs ~20 GB VRAM, a few minutes)
    python -m bench.gpu_trainer_fullsize --smoke      # the same code path at the CPU bench size, on the CPU
    python -m bench.gpu_trainer_fullsize --json out.json

Weights are written once (bf16, about 2.8 GB) into a temporary ComfyUI base folder (BENCH_TRAINER_BASE to
reuse one). Record the figures in docs/trainer-benchmarks.md with the GPU's name.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

from .bench_trainer import CPU_LATENT, CPU_MODEL, compare

WAN13B = dict(dim=1536, ffn_dim=8960, num_heads=12, num_layers=30)
LATENT_480P_33F = (16, 9, 60, 104)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--smoke", action="store_true", help="CPU sizes on the CPU: checks the script runs")
    ap.add_argument("--json", type=Path, help="also write the figures here")
    args = ap.parse_args()
    gpu = not args.smoke
    if gpu:
        import torch

        if not torch.cuda.is_available():
            raise SystemExit("no CUDA device: run with --smoke to check the script on the CPU")
        device = torch.cuda.get_device_name(0)
    else:
        device = "cpu (smoke)"
    model, latent = (WAN13B, LATENT_480P_33F) if gpu else (CPU_MODEL, CPU_LATENT)
    env = {"BENCH_TRAINER_MODEL": json.dumps(model), "BENCH_TRAINER_LATENT": json.dumps(list(latent))}
    base = Path(os.environ.get("BENCH_TRAINER_BASE") or tempfile.mkdtemp(prefix="animereward-gpu-trainer-"))
    t0 = time.perf_counter()
    r = compare(checkpointing=True, gpu=gpu, env_extra=env, sides=("ours", "ours_sft", "comfyui", "comfyui_1x2"),
                base=base)
    r["sft_time_ratio"] = r["ours_sft_step_s"] / r["comfyui_step_s"]
    r["sft_memory_ratio"] = r["ours_sft_peak_mib"] / r["comfyui_peak_mib"]
    r["gapo_vs_sft_time"] = r["ours_step_s"] / r["ours_sft_step_s"]
    report = {"device": device, "model": model, "latent": list(latent), "rank": 16, "gradient_checkpointing": True,
              "seconds_total": round(time.perf_counter() - t0, 1), **{k: round(v, 4) for k, v in r.items()}}
    print(json.dumps(report, indent=1))
    print(f"GAPO step {r['ours_step_s']:.3f} s, peak {r['ours_peak_mib']:.0f} MiB | SFT step {r['ours_sft_step_s']:.3f} s, "
          f"peak {r['ours_sft_peak_mib']:.0f} MiB | TrainLoraNode {r['comfyui_step_s']:.3f} s, peak "
          f"{r['comfyui_peak_mib']:.0f} MiB | GAPO/TrainLoraNode time {r['time_ratio']:.2f} (≤ 1.40), "
          f"memory {r['memory_ratio']:.2f} (≤ 1.05) | TrainLoraNode one latent at a time × 2 "
          f"{r['comfyui_1x2_step_s']:.3f} s, peak {r['comfyui_1x2_peak_mib']:.0f} MiB: GAPO time "
          f"{r['time_ratio_1x2']:.2f}, memory {r['memory_ratio_1x2']:.2f}")
    if args.json:
        args.json.write_text(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
