"""A LATENT's noise mask, from the sampler to the dataset and back into training.

Wan 2.2 TI2V (`Wan22ImageToVideoLatent`) and LTX-Video (`LTXVImgToVideo`) do image-to-video by putting the
start image's latent into the LATENT and a `noise_mask` that is 0 on its frames: the sampler keeps those
frames clean (ComfyUI's `KSamplerX0Inpaint`), the model gets the mask as `denoise_mask` (per-frame timesteps:
the kept frames at timestep 0), and only the masked-in elements are denoised. Collect stores the mask as the
sampler shapes it (`comfy.utils.reshape_mask`); the trainer replays it (nodes.comfy_denoiser) where it can do
so exactly: a 0/1 mask, the same for every candidate, and candidates that agree where it kept the latent.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

# Candidates' kept elements must agree with the first's to this (relative) tolerance: the sampler returns the
# kept latent exactly, up to the float rounding of the conversions to and from the model's latent space.
KEPT_TOLERANCE = 1e-3


def stored_noise_mask(latent: Any, samples: torch.Tensor) -> torch.Tensor | None:
    """The mask the sampler used for this LATENT, as ComfyUI's sampler reshapes it to the latents, with one
    channel ([N or 1, 1, T, H, W]); batch 1 when every candidate has the same. None without a noise_mask."""
    mask = latent.get("noise_mask") if isinstance(latent, dict) else None
    if not isinstance(mask, torch.Tensor):
        return None
    import comfy.utils

    shaped = comfy.utils.reshape_mask(mask.detach().to("cpu", torch.float32), [samples.shape[0], 1, *samples.shape[2:]])
    return shaped[:1].clone() if bool((shaped == shaped[:1]).all()) else shaped


def replay_mask(mask: torch.Tensor, latents: torch.Tensor, latent_shape: Sequence[int]) -> torch.Tensor:
    """The mask as the sampler applied it, for one training sample ([1, C, T, H, W], 0/1), or ValueError
    saying why this group's mask cannot be replayed exactly."""
    import comfy.sampler_helpers

    n = latents.shape[0]
    m = comfy.sampler_helpers.prepare_mask(mask.to(torch.float32), [n, *latent_shape], "cpu")
    if not bool((m == m[:1]).all()):
        raise ValueError("its candidates were sampled with different noise masks; the trainer replays one mask "
                         "per group")
    if not bool(((m == 0) | (m == 1)).all()):
        raise ValueError("its noise mask has values between 0 and 1 (e.g. an image-to-video strength below 1): "
                         "the sampler mixed its input latent in there, which the dataset does not keep")
    keep = m[0] == 0
    if bool(keep.all()):
        raise ValueError("its noise mask keeps every element: nothing was denoised, nothing to learn")
    lat = latents.to(torch.float32)
    if bool(keep.any()):
        spread = float((lat - lat[:1]).abs()[:, keep].max())
        if spread > KEPT_TOLERANCE * (1.0 + float(lat[:1][:, keep].abs().max())):
            raise ValueError(f"its candidates differ by {spread:.3g} where the noise mask kept the input latent "
                             "(e.g. the first frame): they were not sampled from one LATENT")
    return m[:1].clone()
