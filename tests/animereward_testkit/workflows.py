"""API-format workflows the harness runs."""

from __future__ import annotations

from typing import Any

from .tiny_models import TINY_VAE, TINY_WAN


def smoke_workflow(prefix: str = "animereward_smoke", seed: int = 0, frames: int = 5, size: int = 64,
                   batch: int = 1) -> dict[str, Any]:
    """UNETLoader → EmptyHunyuanLatentVideo → KSampler → VAEDecode → SaveAnimatedWEBP on the tiny Wan models."""
    return {
        "1": {"class_type": "UNETLoader", "inputs": {"unet_name": TINY_WAN, "weight_dtype": "default"}},
        "2": {"class_type": "AnimeRewardTestRandomConditioning", "inputs": {"seed": seed, "tokens": 8, "width": 4096}},
        "3": {"class_type": "EmptyHunyuanLatentVideo",
              "inputs": {"width": size, "height": size, "length": frames, "batch_size": batch}},
        "4": {"class_type": "KSampler", "inputs": {
            "model": ["1", 0], "seed": seed, "steps": 2, "cfg": 1.0, "sampler_name": "euler", "scheduler": "simple",
            "positive": ["2", 0], "negative": ["2", 0], "latent_image": ["3", 0], "denoise": 1.0}},
        "5": {"class_type": "VAELoader", "inputs": {"vae_name": TINY_VAE}},
        "6": {"class_type": "VAEDecode", "inputs": {"samples": ["4", 0], "vae": ["5", 0]}},
        "7": {"class_type": "SaveAnimatedWEBP", "inputs": {
            "images": ["6", 0], "filename_prefix": prefix, "fps": 8.0, "lossless": False, "quality": 80,
            "method": "default"}},
    }
