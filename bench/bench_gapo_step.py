"""GAPO step vs fine-tuning step: time and peak memory on a Wan-shaped transformer, in one run.

Both steps train the same LoRA on the same two latents with the same noise and timestep:
  sft               the denoising loss of both latents (one B=2 forward + backward), AdamW step
  gapo              the same, plus the reference: the same model with the LoRA off, B=2, under no_grad
  gapo_frozen_copy  the reference from a frozen copy of the base weights (the original Diffusion-DPO way)
  trainer           gapo through the real loop (`Trainer.run_step`: metrics, clipping, schedule)
  forward           one no-grad B=2 forward alone (what the reference adds)
  *_gc              the same with gradient checkpointing on
The issue's 4/3 floor assumes a backward of two forwards. Training only a LoRA, the backward computes input
gradients but no base-weight gradients, so it costs about one forward: the floor is then about 3/2
(1 + forward / (forward + backward)), and 4/3 again with gradient checkpointing (backward = recompute +
backward), which large video models train with anyway.

Cost: the floating-point operations of each step (torch's FlopCounterMode: the same on any machine), and
medians of interleaved timed steps in this process. On the CPU the bench runs torch on one thread and times
the process's CPU time: on a machine shared with other jobs, two OpenMP threads spin-wait for each other and
wall time swings by 2x between identical steps, while one thread's CPU time measures the work itself (wall
medians are printed beside it). Memory: one subprocess per variant (so one variant's
freed memory cannot hide another's peak). On the CPU, the peak is the process's resident high-water mark
(VmHWM, reset through /proc/self/clear_refs after a warm-up step) minus the resident size before the model
was built, i.e. weights + LoRA + optimizer state + activations, the CPU analogue of
torch.cuda.max_memory_allocated; on a GPU it is max_memory_allocated itself.
"""

from __future__ import annotations

import copy
import json
import os
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

REPO_ROOT = Path(__file__).resolve().parents[1]
# Wan 2.1 1.3B has dim 1536, ffn 8960, 12 heads, 30 blocks, 16 latent channels, patch (1, 2, 2).
# Scaled to what a shared 2-core CPU steps through in a few seconds: same block layout, 16 channels,
# 1024 tokens. On a GPU the same code runs a larger size (GPU_MODEL, GPU_LATENT).
MODEL = dict(in_channels=16, dim=320, ffn_dim=1280, heads=5, layers=3, text_dim=256, freq_dim=256)
LATENT = (16, 4, 32, 32)  # [C, T, H, W]: 4 latent frames (13 video frames), 256x256 pixels
GPU_MODEL = dict(in_channels=16, dim=1536, ffn_dim=8960, heads=12, layers=8, text_dim=4096, freq_dim=256)
GPU_LATENT = (16, 9, 60, 104)  # Wan 2.1 1.3B blocks (8 of 30), 33 frames at 480x832
TEXT_TOKENS = 64
RANK = 16
VARIANTS = ("sft", "gapo", "gapo_frozen_copy", "trainer", "forward", "sft_gc", "gapo_gc")
MEMORY_VARIANTS = ("sft", "gapo", "gapo_frozen_copy", "sft_gc", "gapo_gc")


def _paths() -> None:
    for p in (REPO_ROOT, REPO_ROOT / "tests"):
        if str(p) not in sys.path:
            sys.path.append(str(p))


class Bench:
    """One model + LoRA + optimizer shared by every variant (the frozen copy only where asked)."""

    def __init__(self, device: torch.device, frozen_copy: bool, trainer: bool) -> None:
        _paths()
        from gapo_testkit.tiny_video import ListPairs, TinyVideoDenoiser, TinyWanModel

        from gapo_trainer.loop import TrainConfig, Trainer
        from gapo_trainer.lora import LoraConfig, attach_lora
        from gapo_trainer.protocols import PairExample

        torch.manual_seed(0)
        self.device = device
        self.model_cfg, self.latent = (GPU_MODEL, GPU_LATENT) if device.type == "cuda" else (MODEL, LATENT)
        model = TinyWanModel(**self.model_cfg).to(device)
        self.frozen = None
        if frozen_copy:
            frozen_model = copy.deepcopy(model).requires_grad_(False)
            self.frozen = TinyVideoDenoiser(frozen_model, "flow", shift=5.0)
        self.den = TinyVideoDenoiser(model, "flow", shift=5.0)
        self.lora = attach_lora(model, LoraConfig(rank=RANK, backend="hooks"))
        self.params = list(self.lora.parameters())
        with torch.no_grad():  # a LoRA part-way through training, not the zero start
            for p in self.params:
                p.add_(torch.randn_like(p) * 1e-3)
        self.opt = torch.optim.AdamW(self.params, lr=1e-5)
        g = torch.Generator().manual_seed(1)
        self.x0 = torch.randn(2, *self.latent, generator=g).to(device)
        self.cond = torch.randn(TEXT_TOKENS, self.model_cfg["text_dim"], generator=g).to(device)
        self.noise = torch.randn(1, *self.latent, generator=g).to(device).expand(2, *self.latent)
        self.t = torch.full((2,), 0.6, device=device)
        self.trainer = None
        if trainer:
            pair = PairExample("p", self.x0[0].cpu(), self.x0[1].cpu(), self.cond, 0.8, 0.3)
            cfg = TrainConfig(steps=10**6, learning_rate=1e-5, beta=5000.0, optimizer="adamw", precision="fp32")
            self.trainer = Trainer(self.den, self.lora, ListPairs([pair]), cfg)

    def step(self, variant: str) -> None:
        from gapo_trainer.loop import pair_losses
        from gapo_trainer.losses import preference_loss

        self.den.set_gradient_checkpointing(variant.endswith("_gc"))
        if variant == "trainer":
            self.trainer.run_step()
            self._sync()
            return
        if variant == "forward":  # one no-grad B=2 forward: what the reference adds to a step
            with torch.no_grad():
                x_t = self.den.add_noise(self.x0, self.noise, self.t)
                float(self.den.predict(x_t, self.t, self.cond).square().mean())
            self._sync()
            return
        reference = {"sft": "none", "gapo": "lora_off", "gapo_frozen_copy": self.frozen}[variant.removesuffix("_gc")]
        policy, ref = pair_losses(self.den, self.lora, self.x0, self.cond, self.noise, self.t, reference)
        if ref is None:
            loss = policy.mean()
        else:
            loss = preference_loss(policy[:1], policy[1:], ref[:1], ref[1:], torch.tensor([0.8]),
                                   torch.tensor([0.3])).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.params, 1.0)
        self.opt.step()
        self.opt.zero_grad(set_to_none=True)
        self._sync()

    def _sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize()


def _rss_kib(field: str) -> int:
    return int(re.search(rf"{field}:\s+(\d+)", Path("/proc/self/status").read_text()).group(1))


def measure_memory(variant: str, device: torch.device) -> dict[str, float]:
    """Run in a fresh process: build, warm up one step, reset the high-water mark, take one step."""
    import gc

    cuda = device.type == "cuda"
    _paths()
    import gapo_testkit.tiny_video  # noqa: F401  (imports before the baseline: only tensors are measured)

    import gapo_trainer.loop  # noqa: F401

    warm = torch.nn.Linear(32, 32)  # initialise torch's CPU kernels (oneDNN, SDPA) before the baseline
    q = torch.randn(1, 2, 16, 32, requires_grad=True)
    (F.scaled_dot_product_attention(q, q, q).sum() + warm(q).sum()).backward()
    del warm, q
    gc.collect()
    before = torch.cuda.memory_allocated() if cuda else _rss_kib("VmRSS") * 1024
    bench = Bench(device, frozen_copy=variant == "gapo_frozen_copy", trainer=variant == "trainer")
    bench.step(variant)
    gc.collect()
    if cuda:
        torch.cuda.reset_peak_memory_stats()
        idle = torch.cuda.memory_allocated()
    else:
        Path("/proc/self/clear_refs").write_text("5")
        idle = _rss_kib("VmRSS") * 1024
    bench.step(variant)
    peak = torch.cuda.max_memory_allocated() if cuda else _rss_kib("VmHWM") * 1024
    return {"peak": (peak - before) / 2**20, "step_extra": (peak - idle) / 2**20, "idle": (idle - before) / 2**20}


def _memory_in_subprocess(variant: str, device: str) -> dict[str, float]:
    # glibc keeps freed heap memory resident, which would make the high-water mark remember the warm-up
    # step's activations; serving every allocation over 64 KiB by mmap returns it to the OS when freed, so
    # resident memory follows live tensors (the CPU analogue of the CUDA allocator's allocated bytes).
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO_ROOT), str(REPO_ROOT / "tests")]),
               MALLOC_MMAP_THRESHOLD_="65536", MALLOC_TRIM_THRESHOLD_="0")
    out = subprocess.run(
        [sys.executable, "-m", "bench.bench_gapo_step", "--memory", variant, device],
        cwd=REPO_ROOT, env=env, capture_output=True, text=True, check=False, timeout=900,
    )
    if out.returncode != 0:
        raise RuntimeError(f"memory run {variant} failed: {out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def _flops(step, variant: str) -> int:
    """Floating-point operations of one step (matmuls, convolutions, attention), counted by torch."""
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        step(variant)
    return counter.get_total_flops()


def _timed(fn) -> tuple[float, float]:
    """(wall seconds, process CPU seconds) of one call."""
    w0, c0 = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - w0, time.process_time() - c0


def run() -> list[tuple[str, str]]:
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    threads = torch.get_num_threads()
    if device.type == "cpu":
        torch.set_num_threads(1)
    try:
        return _run(device)
    finally:
        torch.set_num_threads(threads)


def _run(device: torch.device) -> list[tuple[str, str]]:
    cpu = device.type == "cpu"
    bench = Bench(device, frozen_copy=True, trainer=True)
    print(f"model {bench.model_cfg}, latent {bench.latent}, LoRA rank {RANK}, device {device}, "
          f"threads {torch.get_num_threads()}", flush=True)
    n_params = sum(p.numel() for p in bench.den.model.parameters())
    print(f"base parameters {n_params / 1e6:.1f} M, LoRA parameters {sum(p.numel() for p in bench.params) / 1e6:.2f} M",
          flush=True)
    for v in VARIANTS:  # warm-up
        bench.step(v)
    rounds = 5 if cpu else 20
    step = bench.step
    walls: dict[str, list[float]] = {v: [] for v in VARIANTS}
    cpus: dict[str, list[float]] = {v: [] for v in VARIANTS}
    for _ in range(rounds):  # interleaved, so load changes on a shared machine hit every variant alike
        for v in VARIANTS:
            w, c = _timed(lambda v=v, step=step: step(v))
            walls[v].append(w)
            cpus[v].append(c)
    flops = {v: _flops(step, v) for v in ("sft", "gapo", "forward", "sft_gc", "gapo_gc")}
    del bench, step  # free the parent's model before the memory subprocesses start
    wall = {v: statistics.median(ts) for v, ts in walls.items()}
    med = {v: statistics.median(ts) for v, ts in cpus.items()} if cpu else wall
    clock = "CPU s" if cpu else "s"
    mem = {v: _memory_in_subprocess(v, device.type) for v in MEMORY_VARIANTS}
    print(f"{'variant':<18} {'step ' + clock:>9} {'/ sft':>7} {'wall s':>7} {'/ sft':>7} {'peak MiB':>9} {'/ sft':>7} "
          f"{'step extra MiB':>15}")
    for v in VARIANTS:
        base = "sft_gc" if v.endswith("_gc") else "sft"
        line = f"{v:<18} {med[v]:>9.3f} {med[v] / med[base]:>7.3f} {wall[v]:>7.2f} {wall[v] / wall[base]:>7.3f}"
        if v in mem:
            line += f" {mem[v]['peak']:>9.0f} {mem[v]['peak'] / mem[base]['peak']:>7.3f} {mem[v]['step_extra']:>15.0f}"
        print(line)
    print("(_gc rows: gradient checkpointing on, ratios against sft_gc; peak = high-water minus the resident size "
          "before the model was built; step extra = high-water minus resident size between steps)")
    floor = 1 + med["forward"] / med["sft"]
    floor_gc = 1 + med["forward"] / med["sft_gc"]
    print("FLOPs per step: " + ", ".join(f"{v} {f / 1e9:.1f} G" for v, f in flops.items()))
    return [
        ("gapo / sft step FLOPs (load-independent)",
         f"{flops['gapo'] / flops['sft']:.3f}  (checkpointing on: {flops['gapo_gc'] / flops['sft_gc']:.3f})"),
        ("gapo step time / sft step time (<= 1.40)",
         f"{med['gapo'] / med['sft']:.3f}  ({med['gapo']:.2f} vs {med['sft']:.2f} {clock}; wall ratio {wall['gapo'] / wall['sft']:.3f})"),
        ("  floor here: 1 + no-grad forward / sft step", f"{floor:.3f}  (LoRA-only backward ~ 1 forward, not 2)"),
        ("gapo / sft time, gradient checkpointing on", f"{med['gapo_gc'] / med['sft_gc']:.3f}  (floor {floor_gc:.3f})"),
        ("gapo frozen-copy step time / sft", f"{med['gapo_frozen_copy'] / med['sft']:.3f}"),
        ("Trainer.run_step (gapo) time / sft", f"{med['trainer'] / med['sft']:.3f}"),
        ("gapo peak memory / sft (<= 1.05)", f"{mem['gapo']['peak'] / mem['sft']['peak']:.3f}  ({mem['gapo']['peak']:.0f} vs {mem['sft']['peak']:.0f} MiB)"),
        ("gapo frozen-copy peak memory / sft", f"{mem['gapo_frozen_copy']['peak'] / mem['sft']['peak']:.3f}  ({mem['gapo_frozen_copy']['peak']:.0f} MiB)"),
        ("gapo / sft peak memory, checkpointing on", f"{mem['gapo_gc']['peak'] / mem['sft_gc']['peak']:.3f}  ({mem['gapo_gc']['peak']:.0f} vs {mem['sft_gc']['peak']:.0f} MiB)"),
    ]

if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--memory":
        if sys.argv[3] == "cpu":
            torch.set_num_threads(1)
        print(json.dumps(measure_memory(sys.argv[2], torch.device(sys.argv[3]))))
    else:
        raise SystemExit("run it as `python -m bench gapo_step`")
