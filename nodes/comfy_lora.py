"""Trainable LoRA weights on a ComfyUI MODEL, attached in ComfyUI's bypass way.

Each low-rank delta runs beside its linear layer: `forward(x) = base(x) + alpha/rank · up(down(x))`, through a
patcher injection (`ModelPatcher.set_injections`; current ComfyUI's adapter bypass mode,
comfy/weight_adapter/bypass.py, builds the same kind of `PatcherInjection`) on a clone of the artist's patcher. The injection wraps the layer's forward while the
clone is loaded and is removed when it is unloaded, so the base weights are never touched and may be fp8,
quantised or offloaded by model management: the layer casts them as it always does. The reference model is
the same model with every delta switched off (`disabled()`), never a second copy.

Why beside the layer and not as a weight wrapper (`W + up @ down`, which 0.3.75's TrainLoraNode uses): a
weight wrapper makes backward compute the full weight-sized gradient of every layer (`gᵀx`, as costly as the
layer's forward) and keeps a patched copy of every weight for backward; beside the layer, backward needs only
the input gradient and rank-sized products. The function is the same; `LoraLoaderModelOnly` merging the file
into the weights gives the same predictions to float rounding.

The state dict uses ComfyUI's own LoRA key format (`diffusion_model.<module>.lora_down.weight`,
`.lora_up.weight`, `.alpha`), which `LoraLoaderModelOnly` maps back through `comfy.lora.model_lora_keys_unet`.
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any

import torch

PREFIX = "diffusion_model."
# The prefix of the patcher injection keys of the LoRAs' forward wrappers (one key per LoRA).
INJECTION_KEY = "animereward_gapo_lora"


class _Switch:
    """One flag shared by every delta of an adapter: on = trained model, off = reference."""

    def __init__(self) -> None:
        self.enabled = True


class LoraDelta(torch.nn.Module):
    """One layer's `alpha/rank · up @ down`, applied to the layer's input (see _Bypass). Parameters are kept in
    float32 whatever the compute dtype: bf16 master weights lose small updates."""

    def __init__(self, out_features: int, in_features: int, rank: int, alpha: float, device: torch.device,
                 generator: torch.Generator | None = None) -> None:
        super().__init__()
        down = torch.empty(rank, in_features, dtype=torch.float32)
        torch.nn.init.kaiming_uniform_(down, a=math.sqrt(5), generator=generator)
        self.lora_down = torch.nn.Parameter(down.to(device))
        self.lora_up = torch.nn.Parameter(torch.zeros(out_features, rank, dtype=torch.float32, device=device))
        self.rank = rank
        self.alpha = float(alpha)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The delta's share of the layer's output for input `x` (under autocast in its dtype, else in the
        parameters' float32)."""
        down = self.lora_down
        if x.device != down.device:
            x = x.to(down.device)
        if x.dtype != down.dtype and not torch.is_autocast_enabled(x.device.type):
            x = x.to(down.dtype)
        return torch.nn.functional.linear(torch.nn.functional.linear(x, down), self.lora_up) * (self.alpha / self.rank)


class _LayerBypasses:
    """The deltas active on one layer, and the forward it had before the first of them: a layer may carry
    several LoRAs at once (training on top of this trainer's output MODEL keeps the earlier LoRA on), and
    they may be ejected in any order."""

    ATTR = "_animereward_lora_bypasses"

    def __init__(self, module: torch.nn.Module) -> None:
        self.own: Any = vars(module).get("forward")  # an instance-level forward someone else set, restored
        self.active: list[_Bypass] = []
        original = module.forward
        active = self.active

        def forward(*args: Any, **kwargs: Any) -> torch.Tensor:
            out = original(*args, **kwargs)
            x = args[0] if args else kwargs["input"]
            for b in active:
                if b.switch.enabled:
                    out = out + b.delta(x).to(device=out.device, dtype=out.dtype)
            return out

        module.forward = forward

    def restore(self, module: torch.nn.Module) -> None:
        if self.own is None:
            del module.forward  # back to the class's forward
        else:
            module.forward = self.own


class _Bypass:
    """One delta beside one layer while its patcher is loaded: the layer's own output plus the delta's."""

    def __init__(self, module: torch.nn.Module, delta: LoraDelta, switch: _Switch) -> None:
        self.module, self.delta, self.switch = module, delta, switch

    def inject(self) -> None:
        layer = vars(self.module).get(_LayerBypasses.ATTR)
        if layer is None:
            layer = _LayerBypasses(self.module)
            self.module.__dict__[_LayerBypasses.ATTR] = layer
        if self not in layer.active:
            layer.active.append(self)

    def eject(self) -> None:
        layer = vars(self.module).get(_LayerBypasses.ATTR)
        if layer is None or self not in layer.active:
            return
        layer.active.remove(self)
        if not layer.active:
            layer.restore(self.module)
            del self.module.__dict__[_LayerBypasses.ATTR]


def lora_targets(model: Any) -> list[str]:
    """The layers that get a LoRA: every linear layer (ComfyUI's cast ops) inside the model's repeated transformer blocks
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
            if (isinstance(module, torch.nn.Linear) and hasattr(module, "weight_function")
                    and isinstance(weight, torch.Tensor) and weight.ndim == 2):
                names.append(f"{top}.{name}")
    return names


class ComfyLora:
    """The trainable LoRA on a patcher clone (implements gapo_trainer.protocols.LoraAdapter).

    `patcher` must be the training clone (see comfy_denoiser.training_clone); the deltas are injected into it
    and take effect the next time model management loads it."""

    def __init__(self, patcher: Any, rank: int, alpha: float, seed: int = 0,
                 targets: Iterable[str] | None = None) -> None:
        import comfy.model_management as mm

        self.rank, self.alpha = int(rank), float(alpha)
        self._switch = _Switch()
        self.deltas: dict[str, LoraDelta] = {}
        bypasses: list[_Bypass] = []
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
                delta = LoraDelta(out_f, in_f, self.rank, self.alpha, device, generator)
                bypasses.append(_Bypass(module, delta, self._switch))
                self.deltas[name] = delta
        # a key of its own: a clone of a patcher that already carries a LoRA (this trainer's output) keeps that
        # one's injection beside this
        patcher.set_injections(f"{INJECTION_KEY}.{uuid.uuid4().hex}", [_injection(bypasses)])

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


def _injection(bypasses: list[_Bypass]) -> Any:
    """One patcher injection for all the layers. The deltas move with the model, as weight wrappers do: to
    the load device when the patcher is loaded, to the offload device when it is unloaded (in place, so an
    optimizer keeps its parameters)."""
    from comfy.patcher_extension import PatcherInjection

    def move(device: torch.device) -> None:
        with torch.no_grad():
            for b in bypasses:
                for param in b.delta.parameters():
                    if param.device != device:
                        param.data = param.data.to(device)
                        if param.grad is not None:
                            param.grad = param.grad.to(device)

    def inject(patcher: Any) -> None:
        move(patcher.load_device)
        for b in bypasses:
            b.inject()

    def eject(patcher: Any) -> None:
        for b in bypasses:
            b.eject()
        move(patcher.offload_device)

    return PatcherInjection(inject=inject, eject=eject)
