"""The three training objectives: GAPO, plain Diffusion-DPO, and fine-tuning on winners (DESIGN §2).

GAPO, as the official `VideoDiffusionLoss` computes it, for a pair (w, l) that shares noise and timestep:

    inside = -β/2 · ((L_w - L_l) - (R_w - R_l))         L = trained model's losses, R = reference's
    L_GAPO = g(s_w, s_l) · -log σ(inside)               g = 2^{s_w} - 2^{s_l} by default

We apply g per pair before the batch mean (the official code multiplies the batch mean by the gap; the two
agree at one pair per step). Losses are per-sample means over elements in the model's native target space,
computed in float32 whatever precision the forward ran in.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal, get_args

import torch
import torch.nn.functional as F

GapName = Literal["pow2", "pow3", "ratio", "none"]
"""How the reward gap weighs a pair: pow2 = 2^{s_w} - 2^{s_l} (official), pow3 = 3^{s_w} - 3^{s_l},
ratio = 1 - 2^{s_l}/2^{s_w} (both commented-out alternatives in the official code), none = 1 (Diffusion-DPO)."""

Objective = Literal["gapo", "dpo", "sft"]
"""gapo: gap-weighted DPO; dpo: the same with gap `none`; sft: the denoising loss on winners only."""

GAP_NAMES: tuple[str, ...] = get_args(GapName)
OBJECTIVES: tuple[str, ...] = get_args(Objective)
DEFAULT_BETA = 5000.0
"""The official β (with the -β/2 convention; diffusers' 2500 with -β is the same)."""


def denoising_loss(prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Per-sample MSE `[B]`, the mean over every non-batch element, in float32.

    In the native target space: for v-prediction this equals the official x0-space loss weighted by
    1/(1-ᾱ); for eps and flow models it is the loss the model was trained with."""
    if prediction.shape != target.shape:
        raise ValueError(f"prediction {tuple(prediction.shape)} and target {tuple(target.shape)} differ in shape")
    diff = prediction.float() - target.float()
    return diff.pow(2).reshape(diff.shape[0], -1).mean(dim=1)


def gap_weight(s_winner: torch.Tensor, s_loser: torch.Tensor, gap: GapName = "pow2") -> torch.Tensor:
    """g(s_w, s_l) per pair, for scores in [0, 1]."""
    s_w = torch.as_tensor(s_winner, dtype=torch.float32)
    s_l = torch.as_tensor(s_loser, dtype=torch.float32, device=s_w.device)
    if gap == "pow2":
        return torch.pow(2.0, s_w) - torch.pow(2.0, s_l)
    if gap == "pow3":
        return torch.pow(3.0, s_w) - torch.pow(3.0, s_l)
    if gap == "ratio":
        return 1.0 - torch.pow(2.0, s_l) / torch.pow(2.0, s_w)
    if gap == "none":
        return torch.ones_like(s_w + s_l)
    raise ValueError(f"unknown gap function {gap!r}; choose one of {GAP_NAMES}")


@dataclass(frozen=True)
class PreferenceLoss:
    """The batch loss and the per-pair terms the metrics are made of (all `[P]` for P pairs)."""

    loss: torch.Tensor
    per_pair: torch.Tensor
    inside: torch.Tensor
    gap: torch.Tensor


def preference_loss(
    policy_winner: torch.Tensor,
    policy_loser: torch.Tensor,
    reference_winner: torch.Tensor,
    reference_loser: torch.Tensor,
    s_winner: torch.Tensor,
    s_loser: torch.Tensor,
    *,
    beta: float = DEFAULT_BETA,
    gap: GapName = "pow2",
    weights: torch.Tensor | None = None,
) -> PreferenceLoss:
    """GAPO (or Diffusion-DPO with gap="none"): mean over pairs of `weight · g · -log σ(inside)`.

    The reference losses are treated as constants (detached); `weights` multiplies each pair's term."""
    inside = -0.5 * beta * ((policy_winner - policy_loser) - (reference_winner - reference_loser).detach())
    g = gap_weight(s_winner, s_loser, gap).to(inside.device)
    per_pair = g * -F.logsigmoid(inside)
    if weights is not None:
        per_pair = per_pair * torch.as_tensor(weights, dtype=per_pair.dtype, device=per_pair.device)
    return PreferenceLoss(loss=per_pair.mean(), per_pair=per_pair, inside=inside.detach(), gap=g)


def sft_loss(policy_winner: torch.Tensor, weights: torch.Tensor | None = None) -> torch.Tensor:
    """Fine-tuning on winners: the mean denoising loss of the winners (optionally weighted per pair)."""
    if weights is not None:
        policy_winner = policy_winner * torch.as_tensor(weights, dtype=policy_winner.dtype, device=policy_winner.device)
    return policy_winner.mean()


@dataclass
class StepMetrics:
    """What one optimizer step reports (means over the pairs of the step; None where an objective has none).

    margin is the mean DPO logit `inside` (> 0 means the trained model prefers the winner more than the
    reference does); implicit_accuracy is the share of pairs with inside > 0."""

    step: int
    loss: float
    policy_loss: float
    reference_loss: float | None = None
    implicit_accuracy: float | None = None
    margin: float | None = None
    gap: float | None = None
    lr: float = 0.0
    grad_norm: float | None = None
    pairs: int = 0

    def to_json(self) -> dict[str, float | int | None]:
        return dict(self.__dict__)


class MetricsAccumulator:
    """Sums micro-step terms into one StepMetrics (gradient accumulation spreads a step over pairs)."""

    def __init__(self) -> None:
        self.loss = 0.0
        self.micro = 0
        self.policy: list[float] = []
        self.reference: list[float] = []
        self.inside: list[float] = []
        self.gaps: list[float] = []

    def add(
        self,
        loss: torch.Tensor,
        policy_losses: torch.Tensor,
        reference_losses: torch.Tensor | None = None,
        pref: PreferenceLoss | None = None,
    ) -> None:
        self.loss += float(loss.detach())
        self.micro += 1
        self.policy += policy_losses.detach().float().cpu().tolist()
        if reference_losses is not None:
            self.reference += reference_losses.detach().float().cpu().tolist()
        if pref is not None:
            self.inside += pref.inside.float().cpu().tolist()
            self.gaps += pref.gap.detach().float().cpu().tolist()

    def result(self, step: int, lr: float, grad_norm: float | None) -> StepMetrics:
        def mean(v: list[float]) -> float | None:
            return sum(v) / len(v) if v else None

        return StepMetrics(
            step=step,
            loss=self.loss / max(self.micro, 1),
            policy_loss=mean(self.policy) or 0.0,
            reference_loss=mean(self.reference),
            implicit_accuracy=mean([1.0 if x > 0 else 0.0 for x in self.inside]),
            margin=mean(self.inside),
            gap=mean(self.gaps),
            lr=lr,
            grad_norm=grad_norm,
            pairs=self.micro,
        )


LN2 = math.log(2.0)
"""-log σ(0): the preference loss of every pair at step 0, where the trained model is the reference."""
