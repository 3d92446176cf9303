"""Which model made a group: its name (read from the workflow) and a cheap fingerprint of its weights.

Hashing every byte of a 14B model would take minutes; the fingerprint reads what tells models apart:
every state-dict key with its shape and dtype, plus three 64-element windows (start, middle, end) of every
tensor's raw bytes. The cost grows with the number of tensors (about 1,100 for Wan 14B), not their size.
Weights patched in place by a loaded LoRA are read from the patcher's backup, so the base fingerprint is
the same whether or not the model is currently loaded with patches; the patches themselves (keys,
strengths, and the same windows of their tensors) go into a second digest. The base fingerprint is cached
per model object (weakly), so a second run of the same loaded model costs nothing.
"""

from __future__ import annotations

import hashlib
import weakref
from typing import Any

import torch

WINDOW = 64
_BASE_CACHE: weakref.WeakKeyDictionary[torch.nn.Module, str] = weakref.WeakKeyDictionary()


def _tensor_digest(h: Any, t: torch.Tensor) -> None:
    h.update(f"{tuple(t.shape)}|{t.dtype}|".encode())
    try:
        if t.device.type == "meta" or t.numel() == 0:
            return
        flat = t.detach().reshape(-1)
        n = flat.numel()
        idx = {0, max(0, n // 2 - WINDOW // 2), max(0, n - WINDOW)}
        parts = torch.cat([flat[i:i + WINDOW] for i in sorted(idx)])
        h.update(parts.cpu().contiguous().view(torch.uint8).numpy().tobytes())
    except (RuntimeError, TypeError, ValueError, NotImplementedError):
        pass  # exotic tensor subclasses (quantised formats): shape and dtype only


def _base_fingerprint(patcher: Any) -> str:
    module = patcher.model
    cached = _BASE_CACHE.get(module)
    if cached is not None:
        return cached
    backup = getattr(patcher, "backup", {}) or {}
    h = hashlib.sha256()
    for key, value in sorted(module.state_dict().items()):
        saved = backup.get(key)
        weight = getattr(saved, "weight", None) if saved is not None else None
        h.update(key.encode() + b"\0")
        _tensor_digest(h, weight if isinstance(weight, torch.Tensor) else value)
    digest = h.hexdigest()
    _BASE_CACHE[module] = digest
    return digest


def _walk_tensors(h: Any, value: Any, depth: int = 0) -> None:
    if depth > 6:
        return
    if isinstance(value, torch.Tensor):
        _tensor_digest(h, value)
    elif isinstance(value, (list, tuple)):
        for v in value:
            _walk_tensors(h, v, depth + 1)
    elif isinstance(value, dict):
        for k in sorted(value, key=str):
            h.update(str(k).encode())
            _walk_tensors(h, value[k], depth + 1)
    elif isinstance(value, (int, float, str, bool)) or value is None:
        h.update(repr(value).encode())
    elif hasattr(value, "weights"):  # comfy.weight_adapter adapters
        h.update(type(value).__name__.encode())
        _walk_tensors(h, value.weights, depth + 1)


def model_hash(patcher: Any) -> str:
    """'sha256:<base>' for an unpatched model, 'sha256:<base>+<patches>' when LoRAs (weight patches) apply."""
    base = _base_fingerprint(patcher)
    patches = getattr(patcher, "patches", None) or {}
    if not patches:
        return f"sha256:{base}"
    h = hashlib.sha256()
    for key in sorted(patches):
        h.update(str(key).encode() + b"\0")
        for entry in patches[key]:
            _walk_tensors(h, list(entry))
    return f"sha256:{base}+{h.hexdigest()[:16]}"


# Reading the workflow: what the graph says about the model, prompt and sampler (when the node is not told).

MODEL_FILE_INPUTS = ("unet_name", "ckpt_name", "model_name", "gguf_name")
LORA_INPUTS = ("lora_name",)
SAMPLER_INPUTS = ("seed", "noise_seed", "steps", "cfg", "sampler_name", "scheduler", "denoise", "shift")


def _link(value: Any) -> str | None:
    if isinstance(value, list) and len(value) == 2 and isinstance(value[0], str):
        return value[0]
    return None


def _upstream(prompt: dict, node_id: str | None, follow: tuple[str, ...], limit: int = 12) -> list[dict]:
    """Nodes reached from `node_id` by following the first linked input among `follow`, nearest first."""
    chain, seen = [], set()
    while node_id is not None and node_id in prompt and node_id not in seen and len(chain) < limit:
        seen.add(node_id)
        node = prompt[node_id]
        chain.append(node)
        inputs = node.get("inputs", {})
        node_id = next((_link(inputs.get(name)) for name in follow if _link(inputs.get(name))), None)
    return chain


def model_name_from_graph(prompt: dict | None, model_link: Any) -> str | None:
    """'file.safetensors' or 'file.safetensors + lora.safetensors@0.8', from the loaders upstream of MODEL."""
    if not prompt or _link(model_link) is None:
        return None
    base, loras = None, []
    for node in _upstream(prompt, _link(model_link), ("model", "unet", "MODEL")):
        inputs = node.get("inputs", {})
        for name in LORA_INPUTS:
            if isinstance(inputs.get(name), str):
                strength = inputs.get("strength_model", inputs.get("strength"))
                loras.append(inputs[name] + (f"@{strength}" if isinstance(strength, (int, float)) else ""))
        file = next((inputs[n] for n in MODEL_FILE_INPUTS if isinstance(inputs.get(n), str)), None)
        if file is not None:
            base = file
            break
    if base is None:
        return None
    return " + ".join([base, *reversed(loras)])


def text_from_graph(prompt: dict | None, cond_link: Any) -> str | None:
    """The text of the text encoder upstream of a CONDITIONING link, through conditioning nodes (for a node
    with positive and negative inputs, such as WanImageToVideo, output 1 leads to the negative one)."""
    if not prompt or _link(cond_link) is None:
        return None
    node_id, out = cond_link
    for _ in range(12):
        inputs = prompt.get(node_id, {}).get("inputs", {})
        if isinstance(inputs.get("text"), str):
            return inputs["text"]
        if "positive" in inputs and "negative" in inputs:
            nxt = inputs["negative"] if out == 1 else inputs["positive"]
        else:
            nxt = next((inputs[n] for n in ("conditioning", "conditioning_to", "cond") if _link(inputs.get(n))), None)
        if _link(nxt) is None:
            return None
        node_id, out = nxt
    return None


def sampler_from_graph(prompt: dict | None, latent_link: Any) -> dict[str, Any]:
    """The literal settings of the sampler that produced a LATENT link (KSampler, KSamplerAdvanced, ...)."""
    if not prompt or _link(latent_link) is None:
        return {}
    node = prompt.get(_link(latent_link), {})
    inputs = node.get("inputs", {})
    found = {k: inputs[k] for k in SAMPLER_INPUTS if isinstance(inputs.get(k), (int, float, str))}
    if found:
        found["node"] = node.get("class_type")
    return found
