"""Continuing training from an existing LoRA file (the trainer's `init_lora` input).

Accepted: plain LoRA files that `LoraLoaderModelOnly` loads (ComfyUI's own `diffusion_model.<layer>.lora_up /
lora_down / alpha` format, which this trainer writes, and the other up/down namings ComfyUI's loader knows),
whose rank and alpha match the trainer's `rank` and `alpha` inputs and whose layers are among the ones this
trainer puts a LoRA on (the linear layers of the transformer blocks). Layers the file does not cover start as
a fresh LoRA does (a zero delta). Everything else is refused by name with the fix: at validation where the
file alone tells (not a LoRA, LoCon/LoHa/DoRA parts, rank or alpha), before the first step where the model is
needed (layers of another model, other shapes).

`alpha` follows ComfyUI's loader: a file without `.alpha` is applied at scale 1, i.e. alpha = rank.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

NONE = "none"
# (up suffix, down suffix) pairs that comfy.weight_adapter.lora.LoRAAdapter.load reads, ComfyUI's own first.
UP_DOWN = (
    (".lora_up.weight", ".lora_down.weight"),
    (".lora_B.weight", ".lora_A.weight"),
    ("_lora.up.weight", "_lora.down.weight"),
    (".lora.up.weight", ".lora.down.weight"),
    (".lora_linear_layer.up.weight", ".lora_linear_layer.down.weight"),
    (".lora_B.default.weight", ".lora_A.default.weight"),
)


class InitLoraError(ValueError):
    """The file cannot start this run; the message says why and how to fix it."""


@dataclass
class LoraLayout:
    """What a LoRA file's header says: its layers (key prefix → up and down key names), rank and alpha."""

    path: Path
    layers: dict[str, tuple[str, str]]
    rank: int
    alpha: float  # the effective alpha: the file's `.alpha`, or the rank where it has none (scale 1)
    has_alpha: bool
    extra: list[str] = field(default_factory=list)  # keys that are no plain LoRA part


def read_layout(path: Path) -> LoraLayout:
    """Read the header (and the small alpha tensors) of a LoRA file; InitLoraError if it is no plain LoRA."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            keys = list(f.keys())
            shapes = {k: tuple(f.get_slice(k).get_shape()) for k in keys}
            alphas = {k: float(f.get_tensor(k).float().reshape(-1)[0]) for k in keys
                      if k.endswith(".alpha") and math.prod(shapes[k]) == 1}
    except Exception as e:  # safetensors raises its own error types for damaged files
        raise InitLoraError(f"'{path.name}' cannot be read as safetensors ({str(e)[:120]}).") from None
    layers: dict[str, tuple[str, str]] = {}
    used: set[str] = set()
    for k in keys:
        for up, down in UP_DOWN:
            if k.endswith(up) and k[: -len(up)] + down in shapes:
                prefix = k[: -len(up)]
                layers[prefix] = (k, prefix + down)
                used.update((k, prefix + down))
                break
    if not layers:
        raise InitLoraError(f"'{path.name}' holds no LoRA layers (no lora_up/lora_down pairs).")
    ranks = {shapes[d][0] for _, d in layers.values()}
    bad = [p for p, (u, d) in layers.items() if len(shapes[u]) != 2 or len(shapes[d]) != 2 or shapes[u][1] != shapes[d][0]]
    if bad:
        raise InitLoraError(f"'{path.name}' has LoRA layers that are not plain linear low-rank pairs "
                            f"(e.g. {bad[0]}): only linear-layer LoRAs can be continued.")
    if len(ranks) != 1:
        raise InitLoraError(f"'{path.name}' mixes ranks {sorted(ranks)}; continuing needs one rank for every layer.")
    rank = ranks.pop()
    layer_alphas = {alphas.get(p + ".alpha") for p in layers}
    used.update(p + ".alpha" for p in layers if p + ".alpha" in alphas)
    if len(layer_alphas) != 1:
        shown = sorted(a for a in layer_alphas if a is not None)
        raise InitLoraError(f"'{path.name}' has different alphas per layer ({shown[:4]}, some none); "
                            "continuing needs one alpha for every layer.")
    alpha = layer_alphas.pop()
    extra = sorted(k for k in keys if k not in used)
    return LoraLayout(path=path, layers=layers, rank=rank, alpha=float(rank) if alpha is None else alpha,
                      has_alpha=alpha is not None, extra=extra)


def check_settings(layout: LoraLayout, rank: int, alpha: float) -> None:
    """The trainer's rank and alpha must be the file's (the LoRA continues with the same delta scale)."""
    name = layout.path.name
    if layout.extra:
        raise InitLoraError(f"'{name}' holds parts this trainer does not train ({len(layout.extra)} keys, e.g. "
                            f"{layout.extra[:2]}: DoRA scales, LoCon mid weights, biases or norms); only plain LoRA "
                            "files can be continued. Pick a LoRA this trainer wrote, or start afresh (init_lora none).")
    if layout.rank != int(rank):
        raise InitLoraError(f"'{name}' has rank {layout.rank}, the rank input is {rank}. "
                            f"Set rank to {layout.rank} to continue this file.")
    if not math.isclose(layout.alpha, float(alpha), rel_tol=1e-6):
        why = "" if layout.has_alpha else " (the file has no alpha: ComfyUI applies it at scale 1, i.e. alpha = rank)"
        raise InitLoraError(f"'{name}' has alpha {layout.alpha:g}{why}, the alpha input is {alpha:g}. "
                            f"Set alpha to {layout.alpha:g} to continue this file.")


def initial_state(layout: LoraLayout, key_map: Mapping[str, str], fresh: Mapping[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], int]:
    """The trainer's LoRA state with the file's layers put in: `fresh` is the new LoRA's state (ComfyUI key
    format), `key_map` ComfyUI's map from LoRA key prefixes to model weights (comfy.lora.model_lora_keys_unet).
    Returns the state and how many of the trainer's layers the file covered."""
    from safetensors import safe_open

    name = layout.path.name
    ours = {k[: -len(".lora_up.weight")] for k in fresh if k.endswith(".lora_up.weight")}
    unmapped: list[str] = []
    outside: list[str] = []
    placed: dict[str, str] = {}
    for prefix in layout.layers:
        weight = key_map.get(prefix)
        if not isinstance(weight, str):  # absent, or a tuple (a slice of a fused weight)
            unmapped.append(prefix)
        elif weight.removesuffix(".weight") in ours:
            placed[prefix] = weight.removesuffix(".weight")
        else:
            outside.append(prefix)
    if unmapped:
        raise InitLoraError(f"'{name}': {len(unmapped)} of its {len(layout.layers)} layers are not layers of this "
                            f"model (e.g. {unmapped[:2]}): it is a LoRA for another model. Pick a LoRA made for "
                            "this model, or start afresh (init_lora none).")
    if outside:
        raise InitLoraError(f"'{name}' has LoRA layers outside the transformer blocks this trainer trains (e.g. "
                            f"{outside[:2]}); continuing would drop them. Pick a LoRA this trainer wrote, or start "
                            "afresh (init_lora none).")
    state = dict(fresh)
    with safe_open(str(layout.path), framework="pt") as f:
        for prefix, target in placed.items():
            up_key, down_key = layout.layers[prefix]
            for part, key in (("lora_up", up_key), ("lora_down", down_key)):
                value = f.get_tensor(key)
                want = fresh[f"{target}.{part}.weight"]
                if tuple(value.shape) != tuple(want.shape):
                    raise InitLoraError(f"'{name}': {key} has shape {tuple(value.shape)}, this model's layer needs "
                                        f"{tuple(want.shape)}: it is a LoRA for another model size. Pick a LoRA "
                                        "made for this model.")
                state[f"{target}.{part}.weight"] = value.to(torch.float32)
    return state, len(placed)


def apply_init_lora(path: Path, patcher: Any, lora: Any) -> dict[str, Any]:
    """Start `lora` (nodes.comfy_lora.ComfyLora on `patcher`) from the file; returns what was loaded, for the
    metrics. Raises InitLoraError before any training step when the file does not fit."""
    import comfy.lora

    layout = read_layout(path)
    check_settings(layout, lora.rank, lora.alpha)
    key_map = comfy.lora.model_lora_keys_unet(patcher.model, {})
    state, covered = initial_state(layout, key_map, lora.state_dict())
    lora.load_state_dict(state)
    return {"file": path.name, "layers": covered, "of": len(lora.deltas), "rank": layout.rank, "alpha": layout.alpha}
