"""Does GAPO align? GAPO, plain Diffusion-DPO and fine-tuning on winners on the alignment toy, same pairs.

For each seed: sample candidates from the pretrained toy (bench/alignment_toy.py), score them with
`flow_smoothness`, store them as groups in a real preference store and build pairs with
`gapo_trainer.pairs.build_pairs` (mode "all"); then train a fresh LoRA three times on those pairs with the
training core (`gapo_trainer.loop.train`), once per objective, with the same seed (same pair order, noise and
timesteps), steps and settings. Every EVAL_EVERY steps the LoRA'd model samples fresh clips (noise it never
trained on, the same noise for every method and step of a seed) and their mean reward is recorded.

Reported, over the seeds (mean ± sample std, and min..max): the mean reward of fresh samples before training
and after each method; and the steps each method needs to reach DPO's final reward on the same seed (first
evaluation at or above it; "-" when it never gets there within STEPS).

`python -m bench alignment` prints the table docs/alignment.md shows. The pretrained toy is cached under
.cache/alignment_toy (safetensors); without the cache it is pretrained first (2,000 steps: 737 s on the shared
2-core machine the table was made on, under a load average of 10-14).
"""

from __future__ import annotations

import copy
import statistics
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from bench import alignment_toy as toy

SEEDS = (0, 1, 2, 3, 4)
METHODS = ("gapo", "dpo", "sft")
STEPS = 40  # optimizer steps per run
GRAD_ACCUM = 4  # pairs per optimizer step
EVAL_EVERY = 10
LEARNING_RATE = 1e-3
BETA = 5000.0  # the official default (DESIGN §2)
LORA_RANK = 8
CANDIDATES = 4  # per group
GROUPS_PER_PROMPT = 4
EVAL_PER_PROMPT = 16  # fresh samples per prompt at each evaluation
SAMPLE_STEPS = toy.DEFAULT_SAMPLE_STEPS  # Euler steps, candidates and evaluations alike


@dataclass
class RunCurve:
    """One method on one seed: mean fresh-sample reward at each evaluated step (step 0 = before)."""

    method: str
    seed: int
    steps: list[int] = field(default_factory=list)
    rewards: list[float] = field(default_factory=list)
    losses: list[float] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def final(self) -> float:
        return self.rewards[-1]

    def steps_to_reach(self, target: float) -> int | None:
        return next((s for s, r in zip(self.steps, self.rewards, strict=True) if r >= target), None)


@dataclass
class TrainedRun:
    curve: RunCurve
    model: toy.TinyVideoDiT  # the base copy with the LoRA attached
    lora: Any  # gapo_trainer.lora.LoraNetwork
    result: Any  # gapo_trainer.loop.TrainResult


def eval_reward(model: torch.nn.Module, cfg: toy.ToyConfig, noise: torch.Tensor, prompts: torch.Tensor) -> float:
    """Mean reward of fresh samples from `model` (LoRA as it is now) on fixed noise."""
    with torch.no_grad():
        clips = toy.sample(toy.ToyFlowDenoiser(model), prompts, noise, steps=SAMPLE_STEPS)
    return float(toy.reward(clips).mean())


def train_one(
    base: toy.TinyVideoDiT, cfg: toy.ToyConfig, pairs: toy.StoredPairs, method: str, seed: int,
    eval_noise: torch.Tensor, eval_prompts: torch.Tensor, before: float, *, steps: int = STEPS,
    eval_every: int = EVAL_EVERY, learning_rate: float = LEARNING_RATE, beta: float = BETA,
    grad_accum: int = GRAD_ACCUM, rank: int = LORA_RANK,
) -> TrainedRun:
    """A fresh LoRA on a copy of the base, trained with the core's loop; fresh-sample reward every eval_every."""
    from gapo_trainer.loop import StepReport, TrainConfig, train
    from gapo_trainer.lora import LoraConfig, attach_lora

    model = copy.deepcopy(base)
    torch.manual_seed(seed)  # the LoRA's down weights
    lora = attach_lora(model, LoraConfig(rank=rank))
    curve = RunCurve(method, seed, [0], [before], [])

    def progress(report: StepReport) -> None:
        curve.losses.append(report.metrics.loss)
        if report.step % eval_every == 0 or report.step == report.total_steps:
            curve.steps.append(report.step)
            curve.rewards.append(eval_reward(model, cfg, eval_noise, eval_prompts))

    config = TrainConfig(
        objective=method, gap="pow2", beta=beta, steps=steps, learning_rate=learning_rate,
        warmup_steps=0, schedule="constant", grad_accum=grad_accum, max_grad_norm=1.0, seed=seed,
    )
    t0 = time.perf_counter()
    result = train(toy.ToyFlowDenoiser(model), lora, pairs, config, progress=progress)
    curve.seconds = time.perf_counter() - t0
    return TrainedRun(curve, model, lora, result)


def _stats(values: list[float]) -> str:
    if not values:
        return "-"
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.3f} ± {sd:.3f} ({min(values):.3f}..{max(values):.3f})"


def table(curves: list[RunCurve], before: dict[int, float]) -> str:
    """The markdown table of docs/alignment.md."""
    seeds = sorted(before)
    dpo_final = {c.seed: c.final for c in curves if c.method == "dpo"}
    rows = [
        "| method | reward before | reward after | gain | steps to DPO's final reward (median, min..max) | reached |",
        "|---|---|---|---|---|---|",
    ]
    for method in METHODS:
        mine = {c.seed: c for c in curves if c.method == method}
        after = [mine[s].final for s in seeds]
        gain = [mine[s].final - before[s] for s in seeds]
        reach = [mine[s].steps_to_reach(dpo_final[s]) for s in seeds]
        got = [r for r in reach if r is not None]
        reach_text = f"{statistics.median(got):g} ({min(got)}..{max(got)})" if got else "-"
        rows.append(
            f"| {method} | {_stats([before[s] for s in seeds])} | {_stats(after)} | {_stats(gain)} "
            f"| {reach_text} | {len(got)}/{len(seeds)} |"
        )
    return "\n".join(rows)


def run() -> list[tuple[str, str]]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # on a shared 2-core machine one thread per process is the faster choice
    try:
        return _run()
    finally:
        torch.set_num_threads(threads)


def _run() -> list[tuple[str, str]]:
    t_all = time.perf_counter()
    cfg = toy.ToyConfig()
    t0 = time.perf_counter()
    base = toy.pretrained_model(cfg, log_every=200)
    print(f"pretrained toy: {time.perf_counter() - t0:.0f} s (cache {toy.cache_dir()})", flush=True)
    den = toy.ToyFlowDenoiser(base)
    curves: list[RunCurve] = []
    before: dict[int, float] = {}
    for seed in SEEDS:
        cands = toy.sample_candidates(
            den, cfg, seed=seed, n=CANDIDATES, groups_per_prompt=GROUPS_PER_PROMPT, steps=SAMPLE_STEPS
        )
        with tempfile.TemporaryDirectory() as root:
            pairs = toy.StoredPairs(Path(root), cands)
        eval_prompts = toy.prompts_for(EVAL_PER_PROMPT, cfg.scenes)
        eval_noise = toy.fresh_noise(len(eval_prompts), cfg, 20_000 + seed)
        before[seed] = eval_reward(base, cfg, eval_noise, eval_prompts)
        gaps = [p.gap for p in pairs.pair_set.pairs]
        print(
            f"seed {seed}: {len(cands.prompts)} candidates, reward {cands.rewards.mean():.3f}; {len(pairs)} pairs "
            f"(mean gap {statistics.mean(gaps):.3f}, ties skipped {pairs.pair_set.skipped_ties}); "
            f"fresh samples before {before[seed]:.3f}", flush=True,
        )
        for method in METHODS:
            curve = train_one(base, cfg, pairs, method, seed, eval_noise, eval_prompts, before[seed]).curve
            curves.append(curve)
            trace = " ".join(f"{s}:{r:.3f}" for s, r in zip(curve.steps, curve.rewards, strict=True))
            print(f"  {method:4s} {curve.seconds:5.1f} s  reward by step {trace}", flush=True)
    text = table(curves, before)
    elapsed = time.perf_counter() - t_all
    print(f"\n{text}\n\n{len(SEEDS)} seeds x {len(METHODS)} methods, {STEPS} steps of {GRAD_ACCUM} pairs: "
          f"{elapsed:.0f} s", flush=True)
    dpo_final = {c.seed: c.final for c in curves if c.method == "dpo"}
    out = []
    for method in METHODS:
        mine = [c for c in curves if c.method == method]
        gain = [c.final - before[c.seed] for c in mine]
        reached = sum(c.steps_to_reach(dpo_final[c.seed]) is not None for c in mine)
        out.append((f"alignment {method}: reward gain (mean over seeds)",
                    f"{statistics.mean(gain):+.3f} (reached DPO's final reward on {reached}/{len(mine)} seeds)"))
    out.append(("alignment: wall time", f"{elapsed:.0f} s"))
    return out
