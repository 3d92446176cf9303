"""Groups for preference-store tests and benchmarks: Wan image-to-video shaped conditioning (text context,
`concat_latent_image`, `concat_mask`, a clip-vision output as an ObjectRecord), at any size."""

from __future__ import annotations

from typing import Any

import torch

from gapo_trainer.store import CandidateMeta, ObjectRecord

WAN_480P_LATENT = (16, 21, 60, 104)  # per candidate [C, T, H, W]: 81 frames at 480x832


def wan_i2v_conditioning(latent: tuple[int, ...] = (16, 2, 4, 6), text_tokens: int = 8, text_dim: int = 32,
                         clip_tokens: int = 5, clip_dim: int = 16, seed: int = 0,
                         dtype: torch.dtype = torch.float32) -> tuple[list, list]:
    """(positive, negative) in the shape WanImageToVideo + CLIPVisionEncode give: both share one
    `concat_latent_image` and one clip-vision output, as in ComfyUI."""
    g = torch.Generator().manual_seed(seed)
    c, t, h, w = latent
    concat = torch.randn(1, c, t, h, w, generator=g, dtype=torch.float32)
    mask = torch.zeros(1, 4, t, h, w)
    mask[:, :, 0] = 1.0
    clip = ObjectRecord("comfy.clip_vision.Output", {
        "last_hidden_state": torch.randn(1, clip_tokens, clip_dim, generator=g).to(dtype),
        "image_embeds": torch.randn(1, clip_dim, generator=g).to(dtype),
        "penultimate_hidden_states": torch.randn(1, clip_tokens, clip_dim, generator=g).to(dtype),
        "mm_projected": None,
        "image_sizes": [(224, 224)],
    })
    pos_dict: dict[str, Any] = {"pooled_output": None, "concat_latent_image": concat, "concat_mask": mask,
                                "clip_vision_output": clip}
    neg_dict: dict[str, Any] = dict(pos_dict)
    positive = [[torch.randn(1, text_tokens, text_dim, generator=g).to(dtype), pos_dict]]
    negative = [[torch.randn(1, text_tokens, text_dim, generator=g).to(dtype), neg_dict]]
    return positive, negative


def group_kwargs(n: int = 3, latent: tuple[int, ...] = (16, 2, 4, 6), seed: int = 0,
                 totals: list[float | None] | None = None, dtype: torch.dtype = torch.bfloat16,
                 model_name: str = "wan2.1_i2v_tiny", **cond: Any) -> dict[str, Any]:
    """Keyword arguments for `PreferenceStore.add_group` of one small group."""
    g = torch.Generator().manual_seed(seed)
    positive, negative = wan_i2v_conditioning(latent, seed=seed, **cond)
    totals = totals if totals is not None else [round(0.3 + 0.1 * i, 3) for i in range(n)]
    return {
        "latents": torch.randn(n, *latent, generator=g).to(dtype),
        "positive": positive,
        "negative": negative,
        "candidates": [CandidateMeta(index=i, seed=1000 + i, scores={"visual_appeal": totals[i]}, total=totals[i])
                       for i in range(n)],
        "previews": [f"RIFF-preview-{seed}-{i}".encode() for i in range(n)],
        "preview_ext": "webp",
        "model_name": model_name,
        "model_hash": "sha256:" + "0" * 16,
        "prompt": f"a girl waves, take {seed}",
        "negative_prompt": "blurry",
        "sampler": {"sampler_name": "euler", "steps": 4, "cfg": 5.0},
    }


def assert_same(a: Any, b: Any, path: str = "") -> None:
    """Deep equality for conditioning: tensors bit for bit (dtype and shape too), containers by exact type."""
    assert type(a) is type(b), f"{path}: {type(a)} != {type(b)}"
    if isinstance(a, torch.Tensor):
        assert a.dtype == b.dtype and a.shape == b.shape, f"{path}: {a.dtype}{list(a.shape)} != {b.dtype}{list(b.shape)}"
        bits = [t.detach().cpu().contiguous().reshape(-1).view(torch.uint8) for t in (a, b)]
        assert torch.equal(*bits), f"{path}: values differ"
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), f"{path}: length {len(a)} != {len(b)}"
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            assert_same(x, y, f"{path}[{i}]")
    elif isinstance(a, dict):
        assert list(a) == list(b), f"{path}: keys {list(a)} != {list(b)}"
        for k in a:
            assert_same(a[k], b[k], f"{path}[{k!r}]")
    elif isinstance(a, ObjectRecord):
        assert a.type_name == b.type_name, f"{path}: type {a.type_name} != {b.type_name}"
        assert_same(a.fields, b.fields, f"{path}.fields")
    elif isinstance(a, float) and a != a:
        assert b != b, f"{path}: NaN became {b}"
    else:
        assert a == b, f"{path}: {a!r} != {b!r}"
