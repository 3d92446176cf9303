"""ComfyUI conditioning ⇄ what the preference store can hold.

The store (gapo_trainer, no ComfyUI imports) keeps tensors, plain values and `ObjectRecord`s. ComfyUI's
conditioning dicts can carry one kind of object the store cannot know: Wan/Hunyuan image-to-video put a
`comfy.clip_vision.Output` under `clip_vision_output`. `to_store` turns every such object into an
`ObjectRecord` holding its tensors (the attributes it has: last_hidden_state, image_embeds,
penultimate_hidden_states, optionally all_hidden_states and mm_projected, which may be None); `from_store`
rebuilds the object, so a replayed conditioning reaches the model exactly as it was sampled. The trainer
uses `from_store` when it replays a stored group.

Anything else that is neither a tensor, a plain value nor a clip-vision output (a ControlNet, hooks) is left
as it is, and the store's dry run names it.
"""

from __future__ import annotations

from typing import Any

CLIP_VISION_OUTPUT = "comfy.clip_vision.Output"


def _is_clip_vision_output(value: Any) -> bool:
    cls = type(value)
    return cls.__name__ == "Output" and cls.__module__ == "comfy.clip_vision"


def _convert(value: Any, record_cls: type) -> Any:
    if _is_clip_vision_output(value):
        return record_cls(type_name=CLIP_VISION_OUTPUT, fields=dict(vars(value)))
    if isinstance(value, dict):
        return {k: _convert(v, record_cls) for k, v in value.items()}
    if isinstance(value, list):
        return [_convert(v, record_cls) for v in value]
    if isinstance(value, tuple):
        return tuple(_convert(v, record_cls) for v in value)
    return value


def _rebuild(value: Any, record_cls: type) -> Any:
    if isinstance(value, record_cls):
        if value.type_name != CLIP_VISION_OUTPUT:
            raise ValueError(f"unknown stored object type {value.type_name!r} (this pack rebuilds only "
                             f"{CLIP_VISION_OUTPUT})")
        import comfy.clip_vision

        output_type = comfy.clip_vision.Output  # the CLIP-vision encoder's result object, not a node output
        out = output_type()
        for k, v in value.fields.items():
            out[k] = v
        return out
    if isinstance(value, dict):
        return {k: _rebuild(v, record_cls) for k, v in value.items()}
    if isinstance(value, list):
        return [_rebuild(v, record_cls) for v in value]
    if isinstance(value, tuple):
        return tuple(_rebuild(v, record_cls) for v in value)
    return value


def to_store(cond: list) -> list:
    """ComfyUI CONDITIONING → the store's Conditioning (same tensors, no copies; clip-vision objects as records)."""
    from ..gapo_trainer.store import ObjectRecord

    return [[c[0], _convert(c[1], ObjectRecord)] for c in cond]


def from_store(cond: list) -> list:
    """The store's Conditioning → ComfyUI CONDITIONING, ready for a sampler or the trainer's denoiser."""
    from ..gapo_trainer.store import ObjectRecord

    return [[c[0], _rebuild(c[1], ObjectRecord)] for c in cond]
