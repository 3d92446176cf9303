"""LoRA on a torch model's linear layers, switchable off so the same weights give the reference model.

`attach_lora(model, config)` adds a low-rank update `scale · up(down(dropout(x)))` (scale = alpha / rank) to
the output of every targeted linear layer. Two back-ends, one API and one saved format:

- "peft": PEFT's own LoRA layer (`peft.tuners.lora.Linear`) for plain `torch.nn.Linear` layers with float
  weights. PEFT wraps the layer in place (`q` becomes `q.base_layer` inside), which is why `remove()` puts the
  original modules back.
- "hooks": our own forward hook on the layer, which never touches the layer itself, so it works on any
  `nn.Linear` subclass (ComfyUI's `comfy.ops` layers that cast weights on the fly) and on any weight dtype
  (bf16, fp8, quantised): the LoRA branch runs in its own float dtype and is added to the layer's output.
- "auto" (default): "peft" when every target is a plain float nn.Linear and peft imports, else "hooks".

`disabled()` gives the reference model bit for bit: with no LoRA to continue, the hooks do nothing and PEFT's
adapters are switched off; when continuing a LoRA (`init_state`), the trained weights start from it and the
reference keeps a frozen copy of it (LoRA-sized, never a second copy of the model).

`state_dict()` uses ComfyUI's LoRA key format, `<prefix><module>.lora_down.weight` / `.lora_up.weight` /
`.alpha`, which ComfyUI's LoraLoaderModelOnly reads for prefix "diffusion_model.".
"""

from __future__ import annotations

import math
import re
import warnings
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

DEFAULT_TARGETS: tuple[str, ...] = (
    r"(.*\.)?(self_attn|cross_attn)\.(q|k|v|o)",
    r"(.*\.)?ffn\.(0|2)",
)
"""Wan-style transformer blocks (ComfyUI's WanModel: blocks.N.self_attn.q ... blocks.N.ffn.2): attention
projections and both feed-forward layers. Patterns are full-matched against `named_modules()` names."""

Backend = Literal["auto", "peft", "hooks"]
SUFFIX_DOWN = ".lora_down.weight"
SUFFIX_UP = ".lora_up.weight"
SUFFIX_ALPHA = ".alpha"


@dataclass
class LoraConfig:
    """rank and alpha give the scale alpha/rank (alpha None = rank, scale 1); dropout acts on the LoRA
    branch's input while training; key_prefix starts every saved key ("diffusion_model." for ComfyUI)."""

    rank: int = 16
    alpha: float | None = None
    dropout: float = 0.0
    target_modules: tuple[str, ...] = field(default_factory=lambda: DEFAULT_TARGETS)
    key_prefix: str = ""
    backend: Backend = "auto"
    dtype: torch.dtype = torch.float32

    def __post_init__(self) -> None:
        if self.rank < 1:
            raise ValueError(f"LoRA rank must be at least 1, got {self.rank}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"LoRA dropout must be in [0, 1), got {self.dropout}")
        if not self.dtype.is_floating_point:
            raise ValueError(f"LoRA dtype must be a float dtype, got {self.dtype}")


def find_targets(model: nn.Module, patterns: tuple[str, ...]) -> list[tuple[str, nn.Linear]]:
    """The linear layers (nn.Linear or a subclass) whose module name full-matches one of the patterns."""
    compiled = [re.compile(p) for p in patterns]
    return [
        (name, module)
        for name, module in model.named_modules()
        if isinstance(module, nn.Linear) and any(c.fullmatch(name) for c in compiled)
    ]


def split_state(state: Mapping[str, torch.Tensor], prefix: str) -> dict[str, dict[str, torch.Tensor]]:
    """ComfyUI-format LoRA keys grouped by module name (prefix stripped): {module: {down, up, alpha?}}."""
    out: dict[str, dict[str, torch.Tensor]] = {}
    for key, value in state.items():
        if not key.startswith(prefix):
            raise ValueError(f"LoRA key {key!r} does not start with the prefix {prefix!r}")
        rest = key[len(prefix) :]
        for suffix, part in ((SUFFIX_DOWN, "down"), (SUFFIX_UP, "up"), (SUFFIX_ALPHA, "alpha")):
            if rest.endswith(suffix):
                out.setdefault(rest[: -len(suffix)], {})[part] = value
                break
        else:
            raise ValueError(f"LoRA key {key!r} is not a lora_down/lora_up/alpha key")
    for name, parts in out.items():
        if "down" not in parts or "up" not in parts:
            raise ValueError(f"LoRA module {name!r} lacks its lora_down or lora_up weight")
    return out


class _Layer:
    """One targeted layer's LoRA state; the back-end decides how it joins the forward."""

    def __init__(self, name: str, module: nn.Linear, down: torch.Tensor, up: torch.Tensor, alpha: float) -> None:
        self.name = name
        self.module = module
        self.rank = down.shape[0]
        self.alpha = float(alpha)
        self.down = nn.Parameter(down)
        self.up = nn.Parameter(up)
        self.ref_down: torch.Tensor | None = None
        self.ref_up: torch.Tensor | None = None

    @property
    def scale(self) -> float:
        return self.alpha / self.rank


class LoraNetwork:
    """The LoRA attached to one model (implements protocols.LoraAdapter). Use `attach_lora` to build it."""

    def __init__(self, model: nn.Module, config: LoraConfig, layers: list[_Layer], backend: str) -> None:
        self.model = model
        self.config = config
        self.layers = layers
        self.backend = backend
        self.training = True
        self._enabled = True
        self._handles: list[torch.utils.hooks.RemovableHandle] = []
        self._peft_parents: list[tuple[nn.Module, str, nn.Module, nn.Module]] = []
        self._peft_config_added = False

    # --- the LoraAdapter protocol -------------------------------------------------------------
    def parameters(self) -> Iterator[nn.Parameter]:
        for layer in self.layers:
            yield layer.down
            yield layer.up

    @contextmanager
    def disabled(self) -> Iterator[None]:
        """The reference model: the base (or the LoRA we continue from) without the trained update."""
        previous = self._enabled
        self._set_enabled(False)
        try:
            yield
        finally:
            self._set_enabled(previous)

    def state_dict(self) -> dict[str, torch.Tensor]:
        prefix = self.config.key_prefix
        out: dict[str, torch.Tensor] = {}
        for layer in self.layers:
            out[f"{prefix}{layer.name}{SUFFIX_DOWN}"] = layer.down.detach().clone().contiguous()
            out[f"{prefix}{layer.name}{SUFFIX_UP}"] = layer.up.detach().clone().contiguous()
            out[f"{prefix}{layer.name}{SUFFIX_ALPHA}"] = torch.tensor(layer.alpha, dtype=torch.float32)
        return out

    def load_state_dict(self, state: Mapping[str, torch.Tensor]) -> None:
        """Load trained weights saved by `state_dict` (same modules, ranks and alphas)."""
        parts = split_state(state, self.config.key_prefix)
        by_name = {layer.name: layer for layer in self.layers}
        missing = sorted(set(by_name) - set(parts))
        extra = sorted(set(parts) - set(by_name))
        if missing or extra:
            raise ValueError(f"LoRA state does not fit this model: missing {missing[:5]}, unexpected {extra[:5]}")
        with torch.no_grad():
            for name, p in parts.items():
                layer = by_name[name]
                if p["down"].shape != layer.down.shape or p["up"].shape != layer.up.shape:
                    raise ValueError(
                        f"LoRA module {name!r}: saved shapes {tuple(p['down'].shape)}/{tuple(p['up'].shape)} "
                        f"differ from {tuple(layer.down.shape)}/{tuple(layer.up.shape)}"
                    )
                if "alpha" in p and not math.isclose(float(p["alpha"]), layer.alpha, rel_tol=1e-6):
                    raise ValueError(f"LoRA module {name!r}: saved alpha {float(p['alpha'])} != {layer.alpha}")
                layer.down.copy_(p["down"])
                layer.up.copy_(p["up"])

    # --- the rest ----------------------------------------------------------------------------
    def train(self, mode: bool = True) -> LoraNetwork:
        """Dropout on (training) or off (sampling). The reference never uses dropout."""
        self.training = mode
        for _, peft_layer in self._peft_layers():
            peft_layer.train(mode)
        return self

    def eval(self) -> LoraNetwork:
        return self.train(False)

    @property
    def module_names(self) -> list[str]:
        return [layer.name for layer in self.layers]

    def remove(self) -> None:
        """Detach the LoRA: the model is again exactly the model it was before `attach_lora`."""
        for h in self._handles:
            h.remove()
        self._handles.clear()
        for parent, attr, original, _ in self._peft_parents:
            setattr(parent, attr, original)
        self._peft_parents.clear()
        if self._peft_config_added and "peft_config" in self.model.__dict__:
            del self.model.peft_config
            self._peft_config_added = False

    def _set_enabled(self, enabled: bool) -> None:
        self._enabled = enabled
        for layer, peft_layer in self._peft_layers():
            if layer.ref_down is None:
                peft_layer.enable_adapters(enabled)
            else:
                peft_layer.set_adapter("default" if enabled else "reference")

    def _peft_layers(self) -> Iterator[tuple[_Layer, nn.Module]]:
        for (_, _, _, peft_layer), layer in zip(self._peft_parents, self.layers, strict=False):
            yield layer, peft_layer

    def _hook(self, layer: _Layer):
        def hook(module: nn.Module, args: tuple, output: torch.Tensor) -> torch.Tensor | None:
            if self._enabled:
                down, up, dropout = layer.down, layer.up, self.config.dropout if self.training else 0.0
            elif layer.ref_down is not None:
                down, up, dropout = layer.ref_down, layer.ref_up, 0.0
            else:
                return None  # the base layer's own output, untouched
            x = args[0]
            if not _autocast_on(x.device.type):
                x = x.to(down.dtype)
            if dropout > 0.0:
                x = F.dropout(x, p=dropout, training=True)
            delta = F.linear(F.linear(x, down), up) * layer.scale
            return output + delta.to(output.dtype)

        return hook


def _autocast_on(device_type: str) -> bool:
    try:
        return torch.is_autocast_enabled(device_type)
    except TypeError:  # torch < 2.4 takes no device type and answers for CUDA
        return torch.is_autocast_enabled() if device_type == "cuda" else torch.is_autocast_cpu_enabled()


def _plain_float_linear(module: nn.Module) -> bool:
    return type(module) is nn.Linear and module.weight.dtype in (torch.float32, torch.float16, torch.bfloat16)


def _peft_available() -> bool:
    try:
        from peft.tuners.lora import Linear  # noqa: F401
    except ImportError:
        return False
    return True


def attach_lora(model: nn.Module, config: LoraConfig | None = None, init_state: Mapping[str, torch.Tensor] | None = None) -> LoraNetwork:
    """Add a trainable LoRA to `model`'s targeted linear layers and freeze everything else.

    Fresh: `down` is Kaiming-uniform (as PEFT), `up` zeros, so the model starts as the base model. With
    `init_state` (a ComfyUI-format LoRA, keys with `config.key_prefix`): the trained LoRA starts from it, its
    modules, ranks and alphas are taken from it (config.rank/alpha/targets are then not used), and it stays
    the reference. Works when called under torch.inference_mode(): the LoRA weights are normal tensors."""
    with torch.inference_mode(False):
        return _attach(model, config or LoraConfig(), init_state)


def _attach(model: nn.Module, config: LoraConfig, init_state: Mapping[str, torch.Tensor] | None) -> LoraNetwork:
    _prepare_base(model)
    if init_state is None:
        targets = find_targets(model, config.target_modules)
        if not targets:
            linear = [n for n, m in model.named_modules() if isinstance(m, nn.Linear)]
            raise ValueError(
                f"no linear layer matches the LoRA target patterns {list(config.target_modules)}; "
                f"the model's linear layers include {linear[:8]}"
            )
        init = None
    else:
        init = split_state(init_state, config.key_prefix)
        modules = dict(model.named_modules())
        missing = [n for n in init if not isinstance(modules.get(n), nn.Linear)]
        if missing:
            raise ValueError(f"the LoRA to continue names modules this model has no linear layer for: {missing[:5]}")
        targets = [(n, modules[n]) for n in init]

    layers = []
    for name, module in targets:
        device = module.weight.device
        if init is None:
            down = torch.empty(config.rank, module.in_features, device=device, dtype=config.dtype)
            nn.init.kaiming_uniform_(down, a=math.sqrt(5))
            up = torch.zeros(module.out_features, config.rank, device=device, dtype=config.dtype)
            alpha = float(config.alpha if config.alpha is not None else config.rank)
        else:
            p = init[name]
            down = p["down"].detach().to(device=device, dtype=config.dtype).clone()
            up = p["up"].detach().to(device=device, dtype=config.dtype).clone()
            if down.shape[1] != module.in_features or up.shape[0] != module.out_features or up.shape[1] != down.shape[0]:
                raise ValueError(
                    f"LoRA module {name!r}: shapes {tuple(down.shape)}/{tuple(up.shape)} do not fit a "
                    f"{module.in_features}->{module.out_features} layer"
                )
            alpha = float(p["alpha"]) if "alpha" in p else float(down.shape[0])
        layer = _Layer(name, module, down, up, alpha)
        if init is not None:
            layer.ref_down = down.clone()
            layer.ref_up = up.clone()
        layers.append(layer)

    backend = config.backend
    if backend == "auto":
        backend = "peft" if all(_plain_float_linear(m) for _, m in targets) and _peft_available() else "hooks"
    if backend == "peft" and not all(_plain_float_linear(m) for _, m in targets):
        odd = [f"{n} ({type(m).__name__}, {m.weight.dtype})" for n, m in targets if not _plain_float_linear(m)]
        raise ValueError(f"the peft LoRA back-end needs plain float nn.Linear layers; these are not: {odd[:5]}")
    net = LoraNetwork(model, config, layers, backend)
    if backend == "peft":
        _wrap_with_peft(model, net)
    elif backend == "hooks":
        for layer in layers:
            net._handles.append(layer.module.register_forward_hook(net._hook(layer)))
    else:
        raise ValueError(f"unknown LoRA back-end {backend!r}; choose auto, peft or hooks")
    return net


def _prepare_base(model: nn.Module) -> None:
    """Freeze the base weights; turn inference tensors (made under torch.inference_mode, as ComfyUI loads
    models) into normal ones so autograd can save them for backward, one tensor at a time."""
    for module in model.modules():
        for name, p in list(module.named_parameters(recurse=False)):
            if p.is_inference():
                module._parameters[name] = nn.Parameter(p.clone(), requires_grad=False)
            else:
                p.requires_grad_(False)
        for name, b in list(module.named_buffers(recurse=False)):
            if b is not None and b.is_inference():
                module._buffers[name] = b.clone()


def _wrap_with_peft(model: nn.Module, net: LoraNetwork) -> None:
    """Wrap each target in PEFT's LoRA layer (`peft.inject_adapter_in_model`), then give it our down/up
    parameters, so the optimizer, state_dict and checkpoints are the same for both back-ends. A continued
    LoRA becomes a second, frozen PEFT adapter "reference" that `disabled()` switches to."""
    from peft import LoraConfig as PeftLoraConfig
    from peft import inject_adapter_in_model

    def inject(adapter: str, dropout: float) -> None:
        for rank, alpha, names in _groups(net.layers):
            cfg = PeftLoraConfig(r=rank, lora_alpha=alpha, lora_dropout=dropout, target_modules=names,
                                 init_lora_weights=False)
            with warnings.catch_warnings():  # a second adapter (reference, other rank) is ours on purpose
                warnings.filterwarnings("ignore", message="Already found a `peft_config`")
                inject_adapter_in_model(cfg, model, adapter_name=adapter)

    had_config = hasattr(model, "peft_config")
    inject("default", net.config.dropout)
    continuing = any(layer.ref_down is not None for layer in net.layers)
    if continuing:
        inject("reference", 0.0)
    net._peft_config_added = not had_config
    modules = dict(model.named_modules())
    for layer in net.layers:
        wrapped = modules[layer.name]
        wrapped.lora_A["default"].weight = layer.down
        wrapped.lora_B["default"].weight = layer.up
        if continuing:
            wrapped.lora_A["reference"].weight = nn.Parameter(layer.ref_down, requires_grad=False)
            wrapped.lora_B["reference"].weight = nn.Parameter(layer.ref_up, requires_grad=False)
            wrapped.set_adapter("default")
        wrapped.train(net.training)
        parent_name, _, attr = layer.name.rpartition(".")
        parent = modules[parent_name] if parent_name else model
        net._peft_parents.append((parent, attr, layer.module, wrapped))
    for p in model.parameters():
        p.requires_grad_(False)
    for p in net.parameters():
        p.requires_grad_(True)


def _groups(layers: list[_Layer]) -> list[tuple[int, float, list[str]]]:
    """Targets grouped by (rank, alpha): one PEFT config each (a continued LoRA may mix ranks)."""
    out: dict[tuple[int, float], list[str]] = {}
    for layer in layers:
        out.setdefault((layer.rank, layer.alpha), []).append(layer.name)
    return [(r, a, names) for (r, a), names in out.items()]
