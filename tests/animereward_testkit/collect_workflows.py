"""API-format graphs and helpers for the Collect node and ranking-panel tests."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

from animereward_testkit.tiny_models import TINY_VAE, TINY_WAN, TINY_WAN_I2V

DATASETS_FOLDER = "animereward_datasets"


def datasets_root(base: Path) -> Path:
    """Where the pack puts datasets by default: <base>/user/animereward_datasets."""
    return base / "user" / DATASETS_FOLDER


def collect(dataset: str, **inputs: Any) -> dict[str, Any]:
    values: dict[str, Any] = {"dataset": dataset, "frames_per_clip": 0, "prompt": "", "negative_prompt": "",
                              "seed": -1, "wait_for_ranking": False, "timeout_seconds": 600}
    return {"class_type": "AnimeRewardCollect", "inputs": values | inputs}


def cheap_group(dataset: str, n: int = 2, frames: int = 5, **collect_inputs: Any) -> dict[str, Any]:
    """The cheapest graph that stores a group: empty video latents and synthetic frames (no model)."""
    return {
        "1": {"class_type": "AnimeRewardSyntheticClips",
              "inputs": {"defects": ", ".join(["clean"] * n), "frames": frames, "width": 32, "height": 32,
                         "seed": 0}},
        "2": {"class_type": "EmptyHunyuanLatentVideo",
              "inputs": {"width": 32, "height": 32, "length": frames, "batch_size": n}},
        "30": collect(dataset, latents=["2", 0], frames=["1", 0], **collect_inputs),
    }


def wan_replay(dataset: str, i2v: bool, seed: int = 3) -> dict[str, Any]:
    """Tiny Wan (t2v or i2v): sample 3 candidates, collect them, load the stored conditioning back, compare it
    with the original and sample again from it with the same seed."""
    size, length = 32, 5
    wf: dict[str, Any] = {
        "1": {"class_type": "UNETLoader", "inputs": {"unet_name": TINY_WAN_I2V if i2v else TINY_WAN,
                                                     "weight_dtype": "default"}},
        "2": {"class_type": "AnimeRewardTestRandomConditioning", "inputs": {"seed": 0, "tokens": 8, "width": 4096}},
        "3": {"class_type": "AnimeRewardTestRandomConditioning", "inputs": {"seed": 1, "tokens": 8, "width": 4096}},
        "5": {"class_type": "VAELoader", "inputs": {"vae_name": TINY_VAE}},
    }
    if i2v:
        wf |= {
            "6": {"class_type": "LoadImage", "inputs": {"image": "start_frame.png"}},
            "7": {"class_type": "AnimeRewardTestRandomClipVision", "inputs": {"seed": 5}},
            "9": {"class_type": "WanImageToVideo", "inputs": {
                "positive": ["2", 0], "negative": ["3", 0], "vae": ["5", 0], "width": size, "height": size,
                "length": length, "batch_size": 3, "clip_vision_output": ["7", 0], "start_image": ["6", 0]}},
        }
        pos, neg, latent = ["9", 0], ["9", 1], ["9", 2]
    else:
        wf["9"] = {"class_type": "EmptyHunyuanLatentVideo",
                   "inputs": {"width": size, "height": size, "length": length, "batch_size": 3}}
        pos, neg, latent = ["2", 0], ["3", 0], ["9", 0]

    def sampler(p: list, n: list) -> dict[str, Any]:
        return {"class_type": "KSampler", "inputs": {
            "model": ["1", 0], "seed": seed, "steps": 2, "cfg": 2.0, "sampler_name": "euler", "scheduler": "simple",
            "positive": p, "negative": n, "latent_image": latent, "denoise": 1.0}}

    wf |= {
        "12": sampler(pos, neg),
        "13": {"class_type": "VAEDecode", "inputs": {"samples": ["12", 0], "vae": ["5", 0]}},
        "30": collect(dataset, latents=["12", 0], frames=["13", 0], positive=pos, negative=neg, model=["1", 0]),
        "40": {"class_type": "AnimeRewardTestStoredConditioning", "inputs": {"dataset": dataset,
                                                                             "group_id": ["30", 0]}},
        "41": {"class_type": "AnimeRewardTestCompareConditioning", "inputs": {"a": pos, "b": ["40", 0]}},
        "42": {"class_type": "AnimeRewardTestCompareConditioning", "inputs": {"a": neg, "b": ["40", 1]}},
        "43": sampler(["40", 0], ["40", 1]),
        "50": {"class_type": "AnimeRewardTestCapture", "inputs": {"latent": ["12", 0], "string": ["41", 0]}},
        "51": {"class_type": "AnimeRewardTestCapture", "inputs": {"latent": ["43", 0], "string": ["42", 0]}},
        "52": {"class_type": "AnimeRewardTestCapture", "inputs": {"string": ["41", 1]}},
    }
    return wf


def webp_bytes(color: tuple[int, int, int], frames: int = 4, size: int = 48) -> bytes:
    """A small looping animated WebP (a preview as the panel shows it)."""
    from PIL import Image, ImageDraw

    images = []
    for k in range(frames):
        im = Image.new("RGB", (size, size), color)
        ImageDraw.Draw(im).ellipse([k * 6, k * 6, k * 6 + 16, k * 6 + 16], fill=(255, 255, 255))
        images.append(im)
    buf = io.BytesIO()
    images[0].save(buf, format="WEBP", save_all=True, append_images=images[1:], loop=0, duration=120)
    return buf.getvalue()


def seed_group(store: Any, dataset: str, totals: list[float], prompt: str = "a girl waves") -> Any:
    """Add one small group directly through the store (what Collect would write), with real WebP previews."""
    import torch

    from gapo_trainer.store import CandidateMeta

    n = len(totals)
    colors = [(200, 60, 60), (60, 200, 60), (60, 60, 200), (200, 200, 60), (60, 200, 200)]
    return store.add_group(
        dataset, latents=torch.randn(n, 16, 2, 4, 4), positive=[[torch.randn(1, 4, 8), {}]], negative=[],
        candidates=[CandidateMeta(index=i, seed=7, scores={"flow_smoothness": t}, total=t)
                    for i, t in enumerate(totals)],
        previews=[webp_bytes(colors[i % len(colors)]) for i in range(n)], preview_ext="webp",
        model_name="tiny", model_hash=None, prompt=prompt)
