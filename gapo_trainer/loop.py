"""The training loop: GAPO, Diffusion-DPO or fine-tuning on winners, on a LoRA, with exact resume.

One micro-step takes one pair: winner and loser get the same noise, timestep and conditioning. The reference
is the same model with the LoRA switched off, run first under no_grad (nothing of it is kept). Then winner and
loser go through the trained model one at a time, each forward followed at once by its own backward, so only
one sample's graph is ever alive: the peak memory is that of fine-tuning at batch 1. This is exact because the
preference loss depends on the model only through the two denoising losses: its gradient is
∂L/∂L_w · ∇L_w + ∂L/∂L_l · ∇L_l, with both factors computed from the values once both halves are done and the
LoRA gradients of each half kept meanwhile (LoRA-sized, small). `grad_accum` micro-steps make one optimizer step.

`train()` may be called under `torch.inference_mode()` (ComfyUI's executor runs nodes that way): it enters
`inference_mode(False)` and clones inference tensors it is given (latents, conditioning).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Literal

import torch

from . import checkpoint as ckpt
from .losses import (
    DEFAULT_BETA,
    GAP_NAMES,
    OBJECTIVES,
    GapName,
    MetricsAccumulator,
    Objective,
    StepMetrics,
    denoising_loss,
    preference_loss,
    sft_loss,
)
from .protocols import Denoiser, LoraAdapter, PairExample, PairSource, SupportsGradientCheckpointing
from .schedule import OptimizerName, ScheduleName, build_optimizer, lr_at, resolve_optimizer

Precision = Literal["auto", "fp32", "bf16", "fp16"]


@dataclass
class TrainConfig:
    """Everything that decides a run. Autocast (bf16/fp16) applies on a GPU only; "auto" = bf16 where the
    GPU supports it, fp32 on the CPU. `checkpoint_every` 0 = only at the end and on stop."""

    objective: Objective = "gapo"
    gap: GapName = "pow2"
    beta: float = DEFAULT_BETA
    steps: int = 100
    learning_rate: float = 1e-4
    warmup_steps: int = 0
    schedule: ScheduleName = "cosine"
    min_lr_ratio: float = 0.0
    weight_decay: float = 0.0
    adam_betas: tuple[float, float] = (0.9, 0.999)
    adam_eps: float = 1e-8
    optimizer: OptimizerName = "auto"
    grad_accum: int = 1
    max_grad_norm: float | None = 1.0
    seed: int = 0
    shuffle: bool = True
    precision: Precision = "auto"
    gradient_checkpointing: bool = False
    checkpoint_dir: Path | None = None
    checkpoint_every: int = 0
    keep_checkpoints: int = 2

    def __post_init__(self) -> None:
        if self.objective not in OBJECTIVES:
            raise ValueError(f"objective must be one of {OBJECTIVES}, got {self.objective!r}")
        if self.gap not in GAP_NAMES:
            raise ValueError(f"gap must be one of {GAP_NAMES}, got {self.gap!r}")
        if self.steps < 1 or self.grad_accum < 1:
            raise ValueError(f"steps and grad_accum must be at least 1, got {self.steps} and {self.grad_accum}")
        if self.precision not in ("auto", "fp32", "bf16", "fp16"):
            raise ValueError(f"precision must be auto, fp32, bf16 or fp16, got {self.precision!r}")
        self.adam_betas = tuple(self.adam_betas)
        if self.checkpoint_dir is not None:
            self.checkpoint_dir = Path(self.checkpoint_dir)

    @property
    def effective_gap(self) -> GapName:
        return "none" if self.objective == "dpo" else self.gap

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["adam_betas"] = list(self.adam_betas)
        out["checkpoint_dir"] = str(self.checkpoint_dir) if self.checkpoint_dir else None
        return out


# Fields a resumed run may change: where and how often it saves, and how long it runs (a new `steps`
# stretches the cosine schedule from the step reached, so only an unchanged `steps` continues exactly).
_RESUMABLE_CHANGES = {"checkpoint_dir", "checkpoint_every", "keep_checkpoints", "steps"}


@dataclass
class StepReport:
    """What the progress callback receives after each optimizer step."""

    step: int
    total_steps: int
    metrics: StepMetrics
    seconds: float


@dataclass
class TrainResult:
    status: Literal["completed", "stopped"]
    steps_done: int
    history: list[StepMetrics] = field(default_factory=list)
    checkpoint: Path | None = None
    optimizer: str = "adamw"
    precision: str = "fp32"


class NonFiniteLossError(FloatingPointError):
    """The loss (or gradient norm) became NaN or inf; training stopped before applying that step.
    `result` holds the history so far, `checkpoint` the last good checkpoint (None without a folder)."""

    def __init__(self, message: str, result: TrainResult) -> None:
        super().__init__(message)
        self.result = result
        self.checkpoint = result.checkpoint


def pair_losses(
    denoiser: Denoiser,
    lora: LoraAdapter | None,
    x0: torch.Tensor,
    cond: object,
    noise: torch.Tensor,
    t: torch.Tensor,
    reference: Literal["lora_off", "none"] | Denoiser = "lora_off",
    autocast: AbstractContextManager[Any] | None = None,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Per-sample denoising losses `[B]` of the trained model (with grad) and of the reference (without).

    reference: "lora_off" = the same model inside `lora.disabled()`; "none" = no reference (fine-tuning);
    or another Denoiser (a frozen copy, as the original Diffusion-DPO code does; for comparison only)."""
    autocast = autocast or nullcontext()
    x_t = denoiser.add_noise(x0, noise, t)
    target = denoiser.target(x0, noise, t)
    ref_losses = None
    if reference != "none":
        with torch.no_grad():
            if reference == "lora_off":
                if lora is None:
                    raise ValueError("reference 'lora_off' needs a LoRA")
                ref_losses = reference_losses(denoiser, lora, x_t, t, target, cond, autocast)
            else:
                with autocast:
                    ref_losses = denoising_loss(reference.predict(x_t, t, cond), target)
    with autocast:
        pred = denoiser.predict(x_t, t, cond)
    return denoising_loss(pred, target), ref_losses


def reference_losses(denoiser: Denoiser, lora: LoraAdapter, x_t: torch.Tensor, t: torch.Tensor,
                     target: torch.Tensor, cond: object,
                     autocast: AbstractContextManager[Any] | None = None) -> torch.Tensor:
    """The reference's per-sample denoising losses (call under no_grad): the same model, LoRA off."""
    with lora.disabled(), autocast or nullcontext():
        return denoising_loss(denoiser.predict(x_t, t, cond), target)


def normal_tensors(obj: Any) -> Any:
    """`obj` with every inference tensor (nested in lists, tuples, dicts) cloned into a normal tensor."""
    if torch.is_tensor(obj):
        return obj.clone() if obj.is_inference() else obj
    if isinstance(obj, list):
        return [normal_tensors(v) for v in obj]
    if isinstance(obj, tuple):
        return tuple(normal_tensors(v) for v in obj)
    if isinstance(obj, dict):
        return {k: normal_tensors(v) for k, v in obj.items()}
    return obj


class Trainer:
    """The state of one run; `train()` is the usual entry point. Build it inside inference_mode(False)."""

    def __init__(self, denoiser: Denoiser, lora: LoraAdapter, pairs: PairSource, config: TrainConfig) -> None:
        if len(pairs) == 0:
            raise ValueError("no preference pairs to train on")
        self.denoiser = denoiser
        self.lora = lora
        self.pairs = pairs
        self.config = config
        self.params = [p for p in lora.parameters()]
        if not self.params:
            raise ValueError("the LoRA has no parameters to train")
        bad = [p for p in self.params if p.is_inference()]
        if bad:
            raise ValueError("the LoRA weights are inference tensors; attach the LoRA outside torch.inference_mode()")
        self.device = self.params[0].device
        self.optimizer_name = resolve_optimizer(config.optimizer, self.device)
        self.optimizer = build_optimizer(
            self.optimizer_name, self.params, config.learning_rate, config.weight_decay, config.adam_betas, config.adam_eps
        )
        self.precision = self._resolve_precision()
        self.scaler = torch.amp.GradScaler("cuda") if self.precision == "fp16" else None
        self.generator = torch.Generator().manual_seed(config.seed)
        self.step = 0
        self.epoch = 0
        self.cursor = 0
        self.order = self._epoch_order(0)
        self.history: list[StepMetrics] = []
        self.last_checkpoint: Path | None = None
        self._saved_step = -1
        if config.gradient_checkpointing:
            if not isinstance(denoiser, SupportsGradientCheckpointing):
                raise ValueError(
                    "gradient checkpointing was asked for but the denoiser has no set_gradient_checkpointing(); "
                    "turn it off or implement it (see gapo_trainer.grad_checkpoint)"
                )
            denoiser.set_gradient_checkpointing(True)

    # --- set-up ------------------------------------------------------------------------------
    def _resolve_precision(self) -> str:
        wanted = self.config.precision
        if self.device.type != "cuda":
            return "fp32"
        if wanted == "auto":
            return "bf16" if torch.cuda.is_bf16_supported() else "fp32"
        return wanted

    def _autocast(self) -> AbstractContextManager[Any]:
        if self.precision == "fp32":
            return nullcontext()
        dtype = torch.bfloat16 if self.precision == "bf16" else torch.float16
        return torch.autocast(device_type=self.device.type, dtype=dtype)

    def _epoch_order(self, epoch: int) -> list[int]:
        n = len(self.pairs)
        if not self.config.shuffle:
            return list(range(n))
        g = torch.Generator().manual_seed(self.config.seed * 1_000_003 + epoch)
        return torch.randperm(n, generator=g).tolist()

    def _next_pair(self) -> PairExample:
        if self.cursor >= len(self.order):
            self.epoch += 1
            self.order = self._epoch_order(self.epoch)
            self.cursor = 0
        example = self.pairs[self.order[self.cursor]]
        self.cursor += 1
        return example

    # --- one step ----------------------------------------------------------------------------
    def _latent(self, x: torch.Tensor) -> torch.Tensor:
        x = x.to(device=self.device, dtype=torch.float32)
        return x.clone() if x.is_inference() else x

    def _micro_step(self, example: PairExample, acc: MetricsAccumulator) -> torch.Tensor:
        cfg = self.config
        cond = normal_tensors(example.cond)
        x_w = self._latent(example.x0_winner)
        if cfg.objective == "sft":
            x0 = x_w.unsqueeze(0)
        else:
            x0 = torch.stack([x_w, self._latent(example.x0_loser)])
        noise = torch.randn((1, *x_w.shape), generator=self.generator).to(self.device).expand_as(x0)
        t = self.denoiser.sample_timesteps(1, self.generator).to(self.device).expand(x0.shape[0])
        if cfg.objective == "sft":
            policy, _ = pair_losses(self.denoiser, self.lora, x0, cond, noise, t, "none", self._autocast())
            loss = sft_loss(policy)
            acc.add(loss, policy)
            if not torch.isfinite(loss):
                raise _NonFinite(f"the loss is {float(loss.detach())} on pair {example.pair_id!r}")
            scaled = loss / cfg.grad_accum
            (self.scaler.scale(scaled) if self.scaler else scaled).backward()
            return loss
        x_t = self.denoiser.add_noise(x0, noise, t)
        target = self.denoiser.target(x0, noise, t)
        halves = (slice(0, 1), slice(1, 2))  # winner, loser: each sample through the model on its own
        with torch.no_grad():
            ref = torch.cat([reference_losses(self.denoiser, self.lora, x_t[h], t[h], target[h], cond, self._autocast())
                             for h in halves])
        accumulated = [p.grad for p in self.params]  # earlier micro-steps of this optimizer step
        policy_parts, half_grads = zip(*(self._loss_and_grads(x_t[h], t[h], target[h], cond) for h in halves),
                                       strict=True)
        for p, g in zip(self.params, accumulated, strict=True):
            p.grad = g
        policy = torch.cat(policy_parts).requires_grad_(True)  # the values, as leaves: ∂L/∂L_w and ∂L/∂L_l
        pref = preference_loss(
            policy[0:1], policy[1:2], ref[0:1], ref[1:2],
            torch.tensor([example.s_winner]), torch.tensor([example.s_loser]),
            beta=cfg.beta, gap=cfg.effective_gap,
        )
        loss = pref.loss
        acc.add(loss, policy, ref, pref)
        if not torch.isfinite(loss):
            raise _NonFinite(f"the loss is {float(loss.detach())} on pair {example.pair_id!r}")
        (factors,) = torch.autograd.grad(loss / cfg.grad_accum, policy)
        for i, p in enumerate(self.params):
            parts = [f * g[i] for f, g in zip(factors, half_grads, strict=True) if g[i] is not None]
            if parts:
                grad = sum(parts[1:], parts[0])
                p.grad = grad if p.grad is None else p.grad + grad
        return loss.detach()

    def _loss_and_grads(self, x_t: torch.Tensor, t: torch.Tensor, target: torch.Tensor,
                        cond: object) -> tuple[torch.Tensor, tuple[torch.Tensor | None, ...]]:
        """The trained model's per-sample loss (a value) and its LoRA gradients (loss-scaled under fp16); the
        graph is freed before this returns. Through `.backward()` into emptied `.grad`s, not autograd.grad:
        reentrant checkpointing (which a Denoiser may use) only supports the former."""
        with self._autocast():
            pred = self.denoiser.predict(x_t, t, cond)
        loss = denoising_loss(pred, target)
        del pred
        out = loss.sum()
        for p in self.params:
            p.grad = None
        (self.scaler.scale(out) if self.scaler else out).backward()
        grads = tuple(p.grad for p in self.params)
        for p in self.params:
            p.grad = None
        return loss.detach(), grads

    def run_step(self) -> StepMetrics:
        """One optimizer step (grad_accum pairs). Raises _NonFinite without touching the weights."""
        cfg = self.config
        lr = lr_at(self.step, cfg.learning_rate, cfg.steps, cfg.warmup_steps, cfg.schedule, cfg.min_lr_ratio)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        acc = MetricsAccumulator()
        try:
            for _ in range(cfg.grad_accum):
                self._micro_step(self._next_pair(), acc)
            if self.scaler:
                self.scaler.unscale_(self.optimizer)
            # the norm is always measured (max_norm inf = no clipping): a NaN gradient must not reach the weights
            max_norm = cfg.max_grad_norm if cfg.max_grad_norm is not None else float("inf")
            grad_norm = float(torch.nn.utils.clip_grad_norm_(self.params, max_norm))
            if self.scaler is None and not math.isfinite(grad_norm):
                raise _NonFinite(f"the gradient norm is {grad_norm}")
        except BaseException:
            self.optimizer.zero_grad(set_to_none=True)
            raise
        if self.scaler:
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.step += 1
        metrics = acc.result(self.step, lr, grad_norm)
        self.history.append(metrics)
        return metrics

    # --- checkpoints -------------------------------------------------------------------------
    def _rng_tensors(self) -> dict[str, torch.Tensor]:
        out = {"rng.loop": self.generator.get_state(), "rng.torch": torch.get_rng_state()}
        if torch.cuda.is_available():
            for i, s in enumerate(torch.cuda.get_rng_state_all()):
                out[f"rng.cuda.{i}"] = s
        return out

    def snapshot(self) -> dict[str, Any]:
        """Everything a checkpoint at the current step holds, in memory (taken at step boundaries)."""
        opt_tensors, opt_meta = ckpt.optimizer_to_parts(self.optimizer)
        return {
            "step": self.step,
            "lora": self.lora.state_dict(),
            "tensors": {**{k: v.detach().cpu().clone() for k, v in opt_tensors.items()}, **self._rng_tensors()},
            "meta": {
                "config": self.config.to_json(),
                "optimizer_name": self.optimizer_name,
                "optimizer": opt_meta,
                "scaler": self.scaler.state_dict() if self.scaler else None,
                "pairs": {"count": len(self.pairs), "epoch": self.epoch, "cursor": self.cursor, "order": self.order},
                "history": [m.to_json() for m in self.history],
                "lr_schedule": {"next_lr": lr_at(self.step, self.config.learning_rate, self.config.steps,
                                                 self.config.warmup_steps, self.config.schedule,
                                                 self.config.min_lr_ratio)},
            },
        }

    def _boundary(self) -> tuple[Any, ...]:
        """The cheap part of the state a step consumes before it changes any weight."""
        cuda = torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None
        return self.generator.get_state(), torch.get_rng_state(), cuda, self.epoch, self.cursor, list(self.order)

    def _rewind(self, boundary: tuple[Any, ...]) -> None:
        gen, cpu, cuda, self.epoch, self.cursor, self.order = boundary
        self.generator.set_state(gen)
        torch.set_rng_state(cpu)
        if cuda is not None:
            torch.cuda.set_rng_state_all(cuda)

    def save(self) -> Path | None:
        """Write a checkpoint of the current step under config.checkpoint_dir; None without one."""
        if self.config.checkpoint_dir is None:
            return None
        if self.step == self._saved_step and self.last_checkpoint is not None:
            return self.last_checkpoint
        snap = self.snapshot()
        self.last_checkpoint = ckpt.write_checkpoint(
            self.config.checkpoint_dir, snap["step"], snap["lora"], snap["tensors"], snap["meta"],
            keep=self.config.keep_checkpoints,
        )
        self._saved_step = snap["step"]
        return self.last_checkpoint

    def load(self, path: Path) -> None:
        """Continue from a checkpoint written by `save` with the same pairs and settings."""
        c = ckpt.read_checkpoint(path)
        meta = c.meta
        saved = meta["config"]
        now = self.config.to_json()
        changed = sorted(k for k in saved if k not in _RESUMABLE_CHANGES and saved.get(k) != now.get(k))
        if changed:
            detail = ", ".join(f"{k}: {saved.get(k)!r} -> {now.get(k)!r}" for k in changed)
            raise ckpt.CheckpointError(f"checkpoint {c.path} was made with other settings ({detail}); resume with the same ones")
        if meta["pairs"]["count"] != len(self.pairs):
            raise ckpt.CheckpointError(
                f"checkpoint {c.path} was trained on {meta['pairs']['count']} pairs, this run has {len(self.pairs)}"
            )
        if meta["optimizer_name"] != self.optimizer_name:
            raise ckpt.CheckpointError(
                f"checkpoint {c.path} used optimizer {meta['optimizer_name']}, this run resolves to {self.optimizer_name}"
            )
        try:
            self.lora.load_state_dict(c.lora)
        except ValueError as exc:
            raise ckpt.CheckpointError(f"checkpoint {c.path}: {exc}") from exc
        ckpt.optimizer_from_parts(self.optimizer, c.tensors, meta["optimizer"])
        if self.scaler and meta.get("scaler"):
            self.scaler.load_state_dict(meta["scaler"])
        self.generator.set_state(c.tensors["rng.loop"])
        torch.set_rng_state(c.tensors["rng.torch"])
        if torch.cuda.is_available():
            states = [c.tensors[k] for k in sorted((k for k in c.tensors if k.startswith("rng.cuda.")), key=lambda k: int(k.rsplit(".", 1)[1]))]
            if len(states) == torch.cuda.device_count():
                torch.cuda.set_rng_state_all(states)
        self.step = c.step
        self.epoch = meta["pairs"]["epoch"]
        self.cursor = meta["pairs"]["cursor"]
        self.order = list(meta["pairs"]["order"])
        valid = {f.name for f in fields(StepMetrics)}
        self.history = [StepMetrics(**{k: v for k, v in m.items() if k in valid}) for m in meta["history"]]
        self.last_checkpoint = c.path
        self._saved_step = c.step

    # --- the run -----------------------------------------------------------------------------
    def result(self, status: Literal["completed", "stopped"]) -> TrainResult:
        return TrainResult(status, self.step, list(self.history), self.last_checkpoint, self.optimizer_name, self.precision)

    def run(
        self,
        progress: Callable[[StepReport], None] | None = None,
        should_stop: Callable[[], bool] | None = None,
        interrupts: tuple[type[BaseException], ...] = (),
    ) -> TrainResult:
        """Train to config.steps. An exception of a type in `interrupts` raised inside a step (a host's Cancel,
        checked by every layer) rewinds what the step consumed, keeps a checkpoint of the last finished step
        and propagates: no weight changes before the optimizer step, so that checkpoint resumes exactly."""
        cfg = self.config
        while self.step < cfg.steps:
            if should_stop is not None and should_stop():
                self.save()
                return self.result("stopped")
            boundary = self._boundary()
            t0 = time.perf_counter()
            try:
                metrics = self.run_step()
            except _NonFinite as exc:
                # The weights and the optimizer are untouched by the failed step; rewind what it consumed
                # (random draws, pairs) so the checkpoint is exactly the state after the last good step.
                self._rewind(boundary)
                self.save()
                where = (f"the last good checkpoint is {self.last_checkpoint}" if self.last_checkpoint
                         else "no checkpoint was kept (no checkpoint folder set)")
                raise NonFiniteLossError(
                    f"GAPO training stopped at step {self.step + 1} of {cfg.steps}: {exc}. The LoRA keeps the "
                    f"weights of step {self.step}; {where}. Lower the learning rate or beta, or use bf16/fp32 "
                    "instead of fp16.",
                    self.result("stopped"),
                ) from None
            except interrupts:
                self._rewind(boundary)
                self.save()
                raise
            if progress is not None:
                progress(StepReport(self.step, cfg.steps, metrics, time.perf_counter() - t0))
            if cfg.checkpoint_every and self.step % cfg.checkpoint_every == 0:
                self.save()
        self.save()
        return self.result("completed")


class _NonFinite(Exception):
    pass


def train(
    denoiser: Denoiser,
    lora: LoraAdapter,
    pairs: PairSource,
    config: TrainConfig,
    *,
    progress: Callable[[StepReport], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    resume_from: Path | None = None,
) -> TrainResult:
    """Train `lora` on `pairs`; resume from a checkpoint folder (or a root of them) when given.

    progress is called after every optimizer step; should_stop before every step (True stops after
    saving a checkpoint, status "stopped"). NaN/inf raises NonFiniteLossError (last good checkpoint kept)."""
    with torch.inference_mode(False), torch.enable_grad():
        trainer = Trainer(denoiser, lora, pairs, config)
        if resume_from is not None:
            trainer.load(Path(resume_from))
        return trainer.run(progress=progress, should_stop=should_stop)
