"""Tiny real video models that ComfyUI's own loaders detect: Wan 2.1 (dim 128, 2 blocks) and a Wan VAE (dim 8).

Built from ComfyUI's own classes with random weights, so UNETLoader/VAELoader go through the same model
detection as for the real files. Needs ComfyUI importable (the in-process harness, or `comfy_dir` on sys.path).
"""

from __future__ import annotations

from pathlib import Path

TINY_WAN = "animereward_tiny_wan21.safetensors"
TINY_VAE = "animereward_tiny_wan_vae.safetensors"


def write_tiny_wan(models_dir: Path, seed: int = 0) -> dict[str, Path]:
    """Write both tiny models under models_dir (diffusion_models/, vae/) unless present; return their paths."""
    import comfy.ldm.wan.model
    import comfy.ldm.wan.vae
    import comfy.ops
    import safetensors.torch
    import torch

    out = {"unet": models_dir / "diffusion_models" / TINY_WAN, "vae": models_dir / "vae" / TINY_VAE}
    for p in out.values():
        p.parent.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    if not out["unet"].exists():
        wan = comfy.ldm.wan.model.WanModel(
            model_type="t2v", dim=128, ffn_dim=256, num_heads=1, num_layers=2, in_dim=16, out_dim=16,
            text_dim=4096, freq_dim=256, operations=comfy.ops.disable_weight_init,
        )
        safetensors.torch.save_file(_random_weights(wan.state_dict()), str(out["unet"]))
    if not out["vae"].exists():
        vae = comfy.ldm.wan.vae.WanVAE(
            dim=8, z_dim=16, dim_mult=[1, 2, 4, 4], num_res_blocks=2, attn_scales=[],
            temperal_downsample=[False, True, True],
        )
        safetensors.torch.save_file(_random_weights(vae.state_dict()), str(out["vae"]))
    return out


TINY_WAN_I2V = "animereward_tiny_wan21_i2v.safetensors"


def write_tiny_wan_i2v(models_dir: Path, seed: int = 1) -> Path:
    """A tiny Wan 2.1 image-to-video model (in_dim 36 = 16 noise + 4 mask + 16 image latent channels, and the
    CLIP-vision projection `img_emb`), which ComfyUI detects as WAN21_I2V."""
    import comfy.ldm.wan.model
    import comfy.ops
    import safetensors.torch
    import torch

    path = models_dir / "diffusion_models" / TINY_WAN_I2V
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists():
        torch.manual_seed(seed)
        wan = comfy.ldm.wan.model.WanModel(
            model_type="i2v", dim=128, ffn_dim=256, num_heads=1, num_layers=2, in_dim=36, out_dim=16,
            text_dim=4096, freq_dim=256, operations=comfy.ops.disable_weight_init,
        )
        safetensors.torch.save_file(_random_weights(wan.state_dict()), str(path))
    return path


TINY_WAN22 = "animereward_tiny_wan22_ti2v.safetensors"


def write_tiny_wan22(models_dir: Path, seed: int = 2) -> Path:
    """A tiny Wan 2.2 TI2V-5B: the 5B's 48-channel in/out (its latent format is 48 channels wide), dim 128 and
    2 blocks instead of 3072 and 30. ComfyUI detects it as WAN22_T2V (model_base.WAN22: per-frame timesteps
    from the LATENT's noise mask, the start frame kept clean)."""
    import comfy.ldm.wan.model
    import comfy.ops
    import safetensors.torch
    import torch

    path = models_dir / "diffusion_models" / TINY_WAN22
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists():
        torch.manual_seed(seed)
        wan = comfy.ldm.wan.model.WanModel(
            model_type="t2v", dim=128, ffn_dim=256, num_heads=1, num_layers=2, in_dim=48, out_dim=48,
            text_dim=4096, freq_dim=256, operations=comfy.ops.disable_weight_init,
        )
        safetensors.torch.save_file(_random_weights(wan.state_dict()), str(path))
    return path


TINY_HUNYUAN_VIDEO = "animereward_tiny_hunyuan_video.safetensors"
TINY_LTXV = "animereward_tiny_ltxv.safetensors"
HUNYUAN_POOLED = 768  # HunyuanVideo's CLIP-L pooled vector (vector_in), fixed by ComfyUI's detection


def write_tiny_hunyuan_video(models_dir: Path, seed: int = 3) -> Path:
    """A tiny HunyuanVideo T2V (ComfyUI's comfy.ldm.hunyuan_video.model.HunyuanVideo): hidden 128 (one head of
    128 = the rope axes 16+56+56), one double and one single block, 16 latent channels, patch 1×2×2, text
    width 4096, guidance and CLIP-pooled inputs as the real model has. UNETLoader detects it as HunyuanVideo."""
    import comfy.ldm.hunyuan_video.model
    import comfy.ops
    import safetensors.torch
    import torch

    path = models_dir / "diffusion_models" / TINY_HUNYUAN_VIDEO
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists():
        torch.manual_seed(seed)
        model = comfy.ldm.hunyuan_video.model.HunyuanVideo(
            image_model="hunyuan_video", in_channels=16, out_channels=16, vec_in_dim=HUNYUAN_POOLED,
            context_in_dim=4096, hidden_size=128, mlp_ratio=4.0, num_heads=1, depth=1, depth_single_blocks=1,
            axes_dim=[16, 56, 56], theta=256, patch_size=[1, 2, 2], qkv_bias=True, guidance_embed=True,
            byt5=False, meanflow=False, use_cond_type_embedding=False, vision_in_dim=None,
            operations=comfy.ops.disable_weight_init,
        )
        safetensors.torch.save_file(_random_weights(model.state_dict()), str(path))
    return path


def write_tiny_ltxv(models_dir: Path, seed: int = 4) -> Path:
    """A tiny LTX-Video (ComfyUI's comfy.ldm.lightricks.model.LTXVModel): its 128 latent channels and 32 heads
    (fixed by ComfyUI's detection) of width 4 (inner 128), 2 blocks, T5 width 4096. UNETLoader detects it as
    LTXV."""
    import comfy.ldm.lightricks.model
    import comfy.ops
    import safetensors.torch
    import torch

    path = models_dir / "diffusion_models" / TINY_LTXV
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists():
        torch.manual_seed(seed)
        model = comfy.ldm.lightricks.model.LTXVModel(
            in_channels=128, cross_attention_dim=128, attention_head_dim=4, num_attention_heads=32,
            caption_channels=4096, num_layers=2, operations=comfy.ops.disable_weight_init,
        )
        safetensors.torch.save_file(_random_weights(model.state_dict()), str(path))
    return path


class StandInVideoEncoder:
    """Encodes a start image to one latent frame ([1, channels, 1, H/factor, W/factor]) for ComfyUI's
    image-to-video latent nodes, which only call `vae.encode`: Wan 2.2's `Wan22ImageToVideoLatent` (48 channels,
    16×, the defaults) and `LTXVImgToVideo` (128 channels, 32×). ComfyUI 0.3.75 builds those VAEs at full width
    (hundreds of MB), so tests use this deterministic stand-in (average pooling, a fixed projection)."""

    def __init__(self, channels: int = 48, factor: int = 16, seed: int = 0) -> None:
        import torch

        self.factor = factor
        self.projection = torch.randn(channels, 3, generator=torch.Generator().manual_seed(seed))

    def encode(self, image):  # image [B, H, W, 3] in [0, 1]
        import torch

        pooled = torch.nn.functional.avg_pool2d(image[..., :3].movedim(-1, 1).float(), self.factor)  # [B, 3, h, w]
        latent = torch.einsum("oc,bchw->bohw", self.projection, pooled - 0.5)
        return latent[:1].unsqueeze(2)


def _random_weights(state: dict) -> dict:
    """ComfyUI's `disable_weight_init` ops leave weights uninitialised: fill them, small and finite."""
    import torch

    out = {}
    for k, v in state.items():
        if not v.is_floating_point():
            out[k] = v.contiguous()
        elif k.endswith("gamma") or "norm" in k.rsplit(".", 1)[0].rsplit(".", 1)[-1]:
            out[k] = torch.ones_like(v)
        else:
            out[k] = torch.randn_like(v) * 0.05
    return out
