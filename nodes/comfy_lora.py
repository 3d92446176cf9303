"""Trainable LoRA weights on a ComfyUI MODEL, attached the way ComfyUI's own trainer attaches them.

Each low-rank delta is a weight wrapper (`ModelPatcher.add_weight_wrapper`) on a clone of the artist's model
patcher: ComfyUI's cast ops call it on the weight after casting it to the compute dtype, per layer, at every
forward. So the base weights are never touched and may be fp8, quantised or offloaded by model management;
the reference model is the same model with every delta switched off (`disabled()`), never a second copy.

The state dict uses ComfyUI's own LoRA key format (`diffusion_model.<module>.lora_down.weight`,
`.lora_up.weight`, `.alpha`), which `LoraLoaderModelOnly` maps back through `comfy.lora.model_lora_keys_unet`.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any

import torch

PREFIX = "diffusion_model."


class _Switch:
    """One flag shared by every delta of an adapter: on = trained model, off = reference."""

    def __init__(self) -> None:
        self.enabled = True


class LoraDelta(torch.nn.Module):
    """`W + alpha/rank · up @ down` as a ComfyUI weight wrapper (called with the cast weight, returns the new
    one). Parameters are kept in float32 whatever the compute dtype: bf16 master weights lose small updates."""

    def __init__(self, out_features: int, in_features: int, rank: int, alpha: float, switch: _Switch,
                 device: torch.device, generator: torch.Generator | None = None) -> None:
        super().__init__()
        down = torch.empty(rank, in_features, dtype=torch.float32)
        torch.nn.init.kaiming_uniform_(down, a=math.sqrt(5), generator=generator)
        self.lora_down = torch.nn.Parameter(down.to(device))
        self.lora_up = torch.nn.Parameter(torch.zeros(out_features, rank, dtype=torch.float32, device=device))
        self.rank = rank
        self.alpha = float(alpha)
        self._switch = switch

    def __call__(self, weight: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        if not self._switch.enabled:
            return weight
        delta = (self.lora_up @ self.lora_down) * (self.alpha / self.rank)
        return (weight + delta.reshape(weight.shape).to(weight.device)).to(weight.dtype)

    # Model management asks weight functions for their size and moves them with the layer.
    def passive_memory_usage(self) -> int:
        return sum(p.numel() * p.element_size() for p in self.parameters())

    def move_to(self, device: torch.device) -> int:
        self.to(device)
        return self.passive_memory_usage()


def lora_targets(model: Any) -> list[str]:
    """The layers that get a LoRA: every 2-D (linear) weight inside the model's repeated transformer blocks
    (a top-level ModuleList such as Wan's `blocks`, Hunyuan's `double_blocks`/`single_blocks`, LTX's
    `transformer_blocks`). These are the layers community LoRAs for these models train, and the set diffusers'
    Wan LoRA converter maps. Names are relative to `diffusion_model`."""
    dm = model.diffusion_model
    names = []
    for top, child in dm.named_children():
        if not isinstance(child, torch.nn.ModuleList):
            continue
        for name, module in child.named_modules():
            weight = getattr(module, "weight", None)
            if hasattr(module, "weight_function") and isinstance(weight, torch.Tensor) and weight.ndim == 2:
                names.append(f"{top}.{name}")
    return names


class ComfyLora:
    """The trainable LoRA on a patcher clone (implements gapo_trainer.protocols.LoraAdapter).

    `patcher` must be the training clone (see comfy_denoiser.training_clone); the deltas are registered on it
    and take effect the next time model management loads it."""

    def __init__(self, patcher: Any, rank: int, alpha: float, seed: int = 0,
                 targets: Iterable[str] | None = None) -> None:
        import comfy.model_management as mm

        self.rank, self.alpha = int(rank), float(alpha)
        self._switch = _Switch()
        self.deltas: dict[str, LoraDelta] = {}
        device = mm.get_torch_device()
        generator = torch.Generator().manual_seed(seed)
        dm = patcher.model.diffusion_model
        names = list(targets) if targets is not None else lora_targets(patcher.model)
        if not names:
            raise ValueError(f"no linear layers in repeated blocks of {type(dm).__name__}: nothing to put a LoRA on")
        with torch.inference_mode(False):  # the executor runs nodes in inference mode: these must train
            for name in names:
                module = dm.get_submodule(name)
                out_f, in_f = module.weight.shape
                delta = LoraDelta(out_f, in_f, self.rank, self.alpha, self._switch, device, generator)
                patcher.add_weight_wrapper(f"{PREFIX}{name}.weight", delta)
                self.deltas[name] = delta

    def parameters(self) -> Iterator[torch.nn.Parameter]:
        for d in self.deltas.values():
            yield d.lora_down
            yield d.lora_up

    @property
    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    @contextmanager
    def disabled(self) -> Iterator[None]:
        """The reference model: every delta returns the base weight unchanged."""
        previous = self._switch.enabled
        self._switch.enabled = False
        try:
            yield
        finally:
            self._switch.enabled = previous

    def state_dict(self) -> dict[str, torch.Tensor]:
        out: dict[str, torch.Tensor] = {}
        for name, d in self.deltas.items():
            key = f"{PREFIX}{name}"
            out[f"{key}.lora_down.weight"] = d.lora_down.detach().clone()
            out[f"{key}.lora_up.weight"] = d.lora_up.detach().clone()
            out[f"{key}.alpha"] = torch.tensor(d.alpha, dtype=torch.float32)
        return out

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        """Load a state saved by `state_dict` (a checkpoint, or a LoRA file of the same targets and rank)."""
        expected = set(self.state_dict())
        missing, unexpected = expected - set(state), set(state) - expected
        if missing or unexpected:
            raise ValueError(
                f"LoRA state does not match this model's LoRA layers: {len(missing)} missing "
                f"(e.g. {sorted(missing)[:2]}), {len(unexpected)} unexpected (e.g. {sorted(unexpected)[:2]})"
            )
        with torch.inference_mode(False), torch.no_grad():
            for name, d in self.deltas.items():
                key = f"{PREFIX}{name}"
                for part, param in (("lora_down", d.lora_down), ("lora_up", d.lora_up)):
                    value = state[f"{key}.{part}.weight"]
                    if value.shape != param.shape:
                        raise ValueError(f"{key}.{part}.weight: shape {tuple(value.shape)}, expected {tuple(param.shape)}")
                    param.copy_(value.to(param.device, param.dtype))
                alpha = float(state[f"{key}.alpha"])
                if not math.isclose(alpha, d.alpha, rel_tol=1e-6):
                    raise ValueError(f"{key}.alpha is {alpha}, this LoRA was built with alpha {d.alpha}")

    def freeze(self) -> None:
        """After training: no more gradients (the MODEL output keeps the deltas, switched on)."""
        for p in self.parameters():
            p.requires_grad_(False)
        self._switch.enabled = True
