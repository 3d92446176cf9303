"""The contracts between the GAPO training core and whatever model it trains.

The core (losses, LoRA, loop, checkpoints) knows nothing of ComfyUI: `nodes/` implements these protocols on a
ComfyUI MODEL, and tests and benchmarks implement them on tiny torch denoisers. Keeping them in one small
module lets both sides be written and tested apart.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Literal, Protocol, runtime_checkable

import torch

PredictionType = Literal["eps", "v", "flow"]
"""What the model predicts, and so the space its denoising loss lives in (DESIGN §2):
eps: the noise; v: the v-target (the x0 error weighted by 1/(1-ᾱ)); flow: the velocity `noise - x0`."""


@runtime_checkable
class Denoiser(Protocol):
    """A video diffusion model as the trainer sees it: noise a latent, predict, give the native target.

    Latents are batched `[B, C, T, H, W]`; `t` is one timestep per sample `[B]` in the model's own
    convention (ComfyUI models use sigma). A pair's winner and loser go through one call with B=2 and share
    the noise, the timestep and the conditioning.
    """

    @property
    def prediction_type(self) -> PredictionType: ...

    def sample_timesteps(self, n: int, generator: torch.Generator) -> torch.Tensor:
        """n training timesteps, drawn the way the model was trained (flow shift included for flow models)."""
        ...

    def add_noise(self, x0: torch.Tensor, noise: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """x_t for clean latents x0, Gaussian noise and timesteps t."""
        ...

    def target(self, x0: torch.Tensor, noise: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """What `predict` should output for (x0, noise, t) in the native space."""
        ...

    def predict(self, x_t: torch.Tensor, t: torch.Tensor, cond: object) -> torch.Tensor:
        """The model's output for x_t at t under `cond` (whatever the implementation stored for a group)."""
        ...


@runtime_checkable
class SupportsGradientCheckpointing(Protocol):
    """A Denoiser that can trade compute for memory: the loop calls this once before training when its
    config asks for gradient checkpointing. Implementations must use non-reentrant checkpointing
    (`torch.utils.checkpoint(..., use_reentrant=False)`; the reentrant kind gives no gradients when only the
    LoRA weights train); `gapo_trainer.grad_checkpoint.checkpoint_modules` does it for a list of blocks."""

    def set_gradient_checkpointing(self, enabled: bool) -> None: ...


@runtime_checkable
class LoraAdapter(Protocol):
    """The trainable low-rank weights on a model. Switching them off gives the reference model: GAPO's
    reference predictions never come from a second copy of the weights."""

    def parameters(self) -> Iterable[torch.nn.Parameter]: ...

    def disabled(self) -> AbstractContextManager[None]:
        """Within this context the model predicts as the reference (the base, or the LoRA we continue from)."""
        ...

    def state_dict(self) -> dict[str, torch.Tensor]:
        """The trainable state, in the key format the implementation saves (ComfyUI's for ComfyUI models)."""
        ...

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None: ...


@dataclass(frozen=True)
class PairExample:
    """One preference pair ready for a step: the two clean latents `[C, T, H, W]`, the shared conditioning,
    and the two reward scores in [0, 1] that GAPO's gap function reads (s_w > s_l by construction)."""

    pair_id: str
    x0_winner: torch.Tensor
    x0_loser: torch.Tensor
    cond: object
    s_winner: float
    s_loser: float


class PairSource(Protocol):
    """Indexable pairs; the loop owns their order (shuffled by seed, saved in checkpoints)."""

    def __len__(self) -> int: ...

    def __getitem__(self, index: int) -> PairExample: ...


def iter_pairs(source: PairSource, order: Sequence[int]) -> Iterator[PairExample]:
    """The pairs of `source` in a given order (the loop's shuffled epoch order)."""
    for i in order:
        yield source[i]
