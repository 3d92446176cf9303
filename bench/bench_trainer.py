"""Our GAPO LoRA Trainer node against ComfyUI's own TrainLoraNode: time per step and peak memory, one run.

Both nodes run through their own `execute` in a real in-process ComfyUI, on the same Wan model (ComfyUI's
WanModel class, random weights, loaded by ComfyUI's UNETLoader code), the same two latents, the same text
conditioning and the same LoRA rank, in float32:
  ours       GAPO on the pair (winner, loser): no-grad reference forwards (LoRA off), then winner and loser
             through the trained model one at a time (forward, backward), AdamW; LoRA on the blocks' linear
             layers.
  comfyui    TrainLoraNode, batch_size 2 on the same two latents, AdamW, MSE; its LoRA covers every weight (also
             norms and biases, as diffs). ComfyUI applies each latent's conditioning to the whole batch and
             averages the predictions, so its model call has batch 4 (2 conditionings × 2 latents): twice the
             work of fine-tuning on two latents.
  comfyui_1x2  TrainLoraNode, batch_size 1 with 2 gradient-accumulation steps: two latents per optimizer step,
             each one forward + backward at batch 1: the fine-tuning work on two latents, at the memory of one.
Targets (issue): time ratio ours/TrainLoraNode ≤ 1.40, peak memory ratio ≤ 1.05; comfyui_1x2 is the
like-for-like baseline (the same work minus the preference part). GAPO does one more no-grad forward than
fine-tuning, so ≈ 4/3 is its time floor.

Time per step = (T(steps=K2) − T(steps=K1)) / (K2 − K1) of whole node executions, so each node's set-up
(clone, adapters, loading, data) cancels out. All sides are timed in one process, alternating: each round runs
every side's K1 and K2 runs in turn. A side's time is its median over REPEATS rounds; a time ratio is the
median of the ratios within each round (the two sides a minute apart at most), so a slow spell of the shared
machine falls on the sides alike instead of on whichever ran then. The spread of the per-round ratios is
printed beside it. On the CPU the worker also counts each side's floating-point operations per step (torch's
FlopCounterMode: matmuls and attention, forward and backward), which no slow spell moves. On the CPU it is process CPU time with torch on one thread (a
shared machine makes wall time swing; one thread's CPU time is the work); on a GPU, wall time after a sync.

Memory: each side in a fresh subprocess, after a 1-step warm-up run of the same node, so the model is loaded
and converted and nothing of the other side is alive. Two figures on the CPU, both "peak above what was there
before the measured node run" (so the weights are not counted, the LoRA, its gradients and optimizer state,
which each node builds inside its run, are):
  rss        VmHWM (reset through /proc/self/clear_refs) minus VmRSS before a 2-step run. The worker runs with
             MALLOC_MMAP_THRESHOLD_ fixed at 128 KiB: glibc then serves every tensor-sized block by mmap and
             unmaps it on free (the default threshold grows after frees and keeps freed tensors in the heap),
             so the resident size follows the live tensors instead of the allocator's history.
  allocator  the peak of live bytes allocated by torch's CPU allocator during a 1-step run, summed from the
             memory events of torch.profiler (profile_memory=True): tensors only, no Python or glibc overhead.
On a GPU: max_memory_allocated minus the allocation before the run.
The CPU model is sized so that one step's activations are hundreds of MiB (they dominate both figures; at the
earlier 192-token size the peaks were 14-44 MiB and the ratio flipped between runs).
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
# Wan-shaped (16 latent channels, patch (1,2,2)), sized so one step's activations are hundreds of MiB while a
# step takes a few CPU seconds: small width (memory per FLOP grows as the width shrinks), many tokens.
CPU_MODEL = dict(dim=256, ffn_dim=1024, num_heads=2, num_layers=4)
CPU_LATENT = (16, 5, 32, 32)  # 17 frames at 256×256 pixels: 1280 tokens
RANK = 16
K1, K2 = 1, 3
# Time: the median over this many rounds (the sides alternate within each round; a GPU is steadier)
REPEATS = {"cpu": 5, "gpu": 2}
# glibc: serve blocks ≥ 128 KiB by mmap and give them back on free (see the module docstring)
MALLOC_ENV = {"MALLOC_MMAP_THRESHOLD_": "131072"}
DATASET = "bench_trainer"


def _boot(base: Path) -> Any:
    for p in (REPO_ROOT, REPO_ROOT / "tests"):
        if str(p) not in sys.path:
            sys.path.append(str(p))
    from animereward_testkit import comfy_paths, inprocess

    comfy_paths.make_base_dir(base)
    return inprocess.start(comfy_paths.comfyui_dir(), base)


def _write_model(models: Path, cfg: dict[str, int]) -> str:
    import comfy.ldm.wan.model
    import comfy.ops
    import safetensors.torch
    import torch
    from animereward_testkit.tiny_models import _random_weights

    name = "bench_wan_{dim}x{num_layers}.safetensors".format(**cfg)
    path = models / "diffusion_models" / name
    if not path.exists():
        torch.manual_seed(0)
        wan = comfy.ldm.wan.model.WanModel(model_type="t2v", in_dim=16, out_dim=16, text_dim=4096, freq_dim=256,
                                           operations=comfy.ops.disable_weight_init, **cfg)
        path.parent.mkdir(parents=True, exist_ok=True)
        safetensors.torch.save_file(_random_weights(wan.state_dict()), str(path))
    return name


def _inputs(latent: tuple[int, ...]) -> tuple[Any, Any]:
    import torch

    g = torch.Generator().manual_seed(1)
    latents = torch.randn(2, *latent, generator=g)
    cond = [[torch.randn(1, 32, 4096, generator=g) * 0.1, {}]]
    return latents, cond


def _seed_dataset(base: Path, latent: tuple[int, ...]) -> None:
    from gapo_trainer.store import CandidateMeta, PreferenceStore

    store = PreferenceStore(base / "user" / "animereward_datasets")
    if DATASET in store.datasets():
        return
    latents, cond = _inputs(latent)
    store.add_group(DATASET, latents=latents, positive=cond, negative=[],
                    candidates=[CandidateMeta(index=0, total=0.9), CandidateMeta(index=1, total=0.1)],
                    previews=[], preview_ext="webp", model_name="bench", model_hash=None)


def _run_ours(model: Any, steps: int, checkpointing: bool, objective: str = "gapo") -> None:
    import nodes

    cls = nodes.NODE_CLASS_MAPPINGS["AnimeRewardGAPOTrainer"]
    cls.execute(model=model, dataset=DATASET, steps=steps, learning_rate=1e-4, rank=RANK, alpha=float(RANK),
                beta=0.0, objective=objective, gap_function="pow2", pair_mode="all", min_gap=0.0, pairs_per_step=1,
                gradient_accumulation=1, seed=0, gradient_checkpointing=checkpointing, save_every=0,
                lora_name=f"bench/ours_{steps}", resume=False)


def _run_comfyui(model: Any, steps: int, checkpointing: bool, latent: tuple[int, ...], one_at_a_time: bool = False) -> None:
    """batch_size 2: ComfyUI applies each sample's conditioning to the whole batch and averages, so with two
    latents its model call has batch 4 (2 conditionings × 2 latents). one_at_a_time: batch_size 1 with 2
    gradient-accumulation steps, i.e. two latents per optimizer step, each a batch-1 forward and backward."""
    from comfy_extras.nodes_train import TrainLoraNode

    latents, cond = _inputs(latent)
    batch, accumulate = (1, 2) if one_at_a_time else (2, 1)
    # two LATENT inputs of one sample each: 0.3.75 leaves `multi_res` unset for a single batched LATENT
    TrainLoraNode.execute(
        model=[model], latents=[{"samples": latents[i:i + 1]} for i in range(2)], positive=[cond], batch_size=[batch],
        steps=[steps], grad_accumulation_steps=[accumulate], learning_rate=[1e-4], rank=[RANK], optimizer=["AdamW"],
        loss_function=["MSE"],
        seed=[0], training_dtype=["fp32"], lora_dtype=["fp32"], algorithm=["LoRA"],
        gradient_checkpointing=[checkpointing], existing_lora=["[None]"],
    )


def _rss(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    return 0


def allocator_peak(fn: Any) -> int:
    """Peak live bytes of torch's CPU allocator while `fn()` runs, above what was live when it started, from the
    profiler's memory events (frees of blocks allocated before are not reported: never below the start)."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    events = sorted((e.start_ns(), e.nbytes()) for e in prof.profiler.kineto_results.events() if e.name() == "[memory]")
    live = peak = 0
    for _, nbytes in events:
        live += nbytes
        peak = max(peak, live)
    return peak


def worker(sides: list[str], what: str, checkpointing: bool, gpu: bool) -> dict[str, Any]:
    """The sides in this (fresh) process: 'time' gives seconds per step of each (alternating rounds, medians),
    'memory' the peaks in bytes of the one side."""
    import torch

    base = Path(os.environ["BENCH_TRAINER_BASE"])
    comfy = _boot(base)
    del comfy
    import comfy.sd

    cuda = gpu and torch.cuda.is_available()
    if not cuda:
        torch.set_num_threads(1)
    cfg = json.loads(os.environ.get("BENCH_TRAINER_MODEL", json.dumps(CPU_MODEL)))
    latent = tuple(json.loads(os.environ.get("BENCH_TRAINER_LATENT", json.dumps(CPU_LATENT))))
    name = _write_model(base / "models", cfg)
    _seed_dataset(base, latent)
    model = comfy.sd.load_diffusion_model(str(base / "models" / "diffusion_models" / name))

    def run(side: str, steps: int) -> float:
        if cuda:
            torch.cuda.synchronize()
        t0 = time.perf_counter() if cuda else time.process_time()
        with torch.inference_mode():  # as the executor runs nodes
            if side in ("ours", "ours_sft"):
                _run_ours(model, steps, checkpointing, "sft" if side == "ours_sft" else "gapo")
            else:
                _run_comfyui(model, steps, checkpointing, latent, one_at_a_time=side == "comfyui_1x2")
        if cuda:
            torch.cuda.synchronize()
            return time.perf_counter() - t0
        return time.process_time() - t0

    for side in sides:
        run(side, 1)  # warm-up: imports, allocator
    if what == "time":
        per_step: dict[str, list[float]] = {side: [] for side in sides}
        for _ in range(REPEATS["gpu" if cuda else "cpu"]):
            for side in sides:
                t1, t2 = run(side, K1), run(side, K2)
                per_step[side].append((t2 - t1) / (K2 - K1))
        flops = {}
        if not cuda:
            from torch.utils.flop_counter import FlopCounterMode

            for side in sides:  # counted, not timed: the same on any machine
                counts = []
                for steps in (K1, K2):
                    with FlopCounterMode(display=False) as counter:
                        run(side, steps)
                    counts.append(counter.get_total_flops())
                flops[f"{side}_gflop"] = (counts[1] - counts[0]) / (K2 - K1) / 1e9
        return {**{f"{side}_step_s": statistics.median(v) for side, v in per_step.items()},
                **{f"{side}_rounds": v for side, v in per_step.items()}, **flops}
    (side,) = sides
    if cuda:
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated()
        run(side, 2)
        return {"peak_bytes": torch.cuda.max_memory_allocated() - before}
    before = _rss("VmRSS")
    Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current RSS
    run(side, 2)
    rss_peak = _rss("VmHWM") - before
    return {"peak_bytes": rss_peak, "alloc_peak_bytes": allocator_peak(lambda: run(side, 1))}


def _subprocess(sides: tuple[str, ...], what: str, checkpointing: bool, gpu: bool, base: Path, env_extra: dict) -> dict:
    # The mmap threshold is for the memory figure only: it makes every large free an munmap and every large
    # allocation fresh page faults, which costs the side that allocates more in CPU time (not how artists run).
    malloc = MALLOC_ENV if what == "memory" and not gpu else {}
    env = {**os.environ, "BENCH_TRAINER_BASE": str(base), **malloc, **env_extra}
    cmd = [sys.executable, "-m", "bench.bench_trainer", "--worker", ",".join(sides), what, str(int(checkpointing)),
           str(int(gpu))]
    out = subprocess.run(cmd, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=1800)
    lines = [ln for ln in out.stdout.splitlines() if ln.startswith("RESULT ")]
    if out.returncode != 0 or not lines:
        raise RuntimeError(f"{','.join(sides)}/{what} failed ({out.returncode}): {out.stderr[-2000:]}")
    return json.loads(lines[-1][len("RESULT "):])


def compare(checkpointing: bool = False, gpu: bool = False, env_extra: dict | None = None,
            sides: tuple[str, ...] = ("ours", "comfyui", "comfyui_1x2"), base: Path | None = None) -> dict[str, float]:
    """Seconds per step and peaks of each side; ratios of ours against TrainLoraNode at batch 2 (time_ratio,
    memory_ratio) and against TrainLoraNode one latent at a time (time_ratio_1x2, memory_ratio_1x2)."""
    base = base or Path(tempfile.mkdtemp(prefix="animereward-bench-trainer-"))
    env_extra = env_extra or {}
    timed = _subprocess(sides, "time", checkpointing, gpu, base, env_extra)
    rounds = {side: timed.pop(f"{side}_rounds") for side in sides}
    res: dict[str, float] = dict(timed)
    for side in sides:
        mem = _subprocess((side,), "memory", checkpointing, gpu, base, env_extra)
        res[f"{side}_peak_mib"] = mem["peak_bytes"] / 2**20
        if "alloc_peak_bytes" in mem:
            res[f"{side}_alloc_peak_mib"] = mem["alloc_peak_bytes"] / 2**20
    for other, suffix in (("comfyui", ""), ("comfyui_1x2", "_1x2")):
        if other not in sides:
            continue
        # the ratio within each round (the two sides minutes apart at most), then the median over rounds
        per_round = [a / b for a, b in zip(rounds["ours"], rounds[other], strict=True)]
        res[f"time_ratio{suffix}"] = statistics.median(per_round)
        res[f"time_ratio{suffix}_lo"], res[f"time_ratio{suffix}_hi"] = min(per_round), max(per_round)
        if f"{other}_gflop" in res:
            res[f"flop_ratio{suffix}"] = res["ours_gflop"] / res[f"{other}_gflop"]
        res[f"memory_ratio{suffix}"] = res["ours_peak_mib"] / res[f"{other}_peak_mib"]
        if "ours_alloc_peak_mib" in res and f"{other}_alloc_peak_mib" in res:
            res[f"memory_ratio_allocator{suffix}"] = res["ours_alloc_peak_mib"] / res[f"{other}_alloc_peak_mib"]
    return res


def run() -> list[tuple[str, str]]:
    rows = []
    base = Path(tempfile.mkdtemp(prefix="animereward-bench-trainer-"))  # the model file is written once
    print(f"model {CPU_MODEL}, latent {list(CPU_LATENT)}, rank {RANK}, float32, torch on 1 thread", flush=True)
    for gc in (False, True):
        r = compare(checkpointing=gc, base=base)
        tag = "gc on" if gc else "gc off"
        for side, label in (("ours", "ours (GAPO)"), ("comfyui", "TrainLoraNode batch 2"),
                            ("comfyui_1x2", "TrainLoraNode 1 at a time x 2")):
            print(f"[{tag}] {label}: {r[f'{side}_step_s']:.3f} s/step, {r[f'{side}_gflop']:.0f} GFLOP/step, "
                  f"peak {r[f'{side}_peak_mib']:.0f} MiB rss / "
                  f"{r[f'{side}_alloc_peak_mib']:.0f} MiB allocator", flush=True)
        for suffix, label in (("_1x2", "TrainLoraNode 1 at a time x 2"), ("", "TrainLoraNode batch 2")):
            print(f"[{tag}] time ratio vs {label} per round: {r[f'time_ratio{suffix}_lo']:.2f} to "
                  f"{r[f'time_ratio{suffix}_hi']:.2f}, median {r[f'time_ratio{suffix}']:.2f}; FLOP ratio "
                  f"{r[f'flop_ratio{suffix}']:.2f}", flush=True)
            rows.append((f"trainer vs {label}: FLOPs per step ({tag})", f"{r[f'flop_ratio{suffix}']:.2f}"))
            rows += [(f"trainer vs {label}: time ({tag}, target ≤ 1.40)", f"{r[f'time_ratio{suffix}']:.2f}"),
                     (f"trainer vs {label}: peak memory ({tag}, target ≤ 1.05)", f"{r[f'memory_ratio{suffix}']:.2f}"),
                     (f"trainer vs {label}: peak memory, allocator ({tag})",
                      f"{r[f'memory_ratio_allocator{suffix}']:.2f}")]
    return rows


if __name__ == "__main__":
    if len(sys.argv) >= 6 and sys.argv[1] == "--worker":
        result = worker(sys.argv[2].split(","), sys.argv[3], bool(int(sys.argv[4])), bool(int(sys.argv[5])))
        print("RESULT " + json.dumps(result), flush=True)
    else:
        for name, value in run():
            print(f"{name}: {value}")
