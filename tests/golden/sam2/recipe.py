"""Inputs of the SAM2 golden (expected.json): a small official SAM2.1 config, its weights, a clip and a box.

Imported by tests/animereward/test_sam2_checkpoint.py and by make_golden.py (run outside the repository
against the official code). Nothing here comes from the official code: the config below is written in the
structure of the official `configs/sam2.1/sam2.1_hiera_b+.yaml`, with small widths and the same flags.
"""

from __future__ import annotations

import numpy as np
import torch

from tests.golden.deterministic_weights import deterministic_state_dict

SEED = 20250101
IMAGE_SIZE = 128
VIDEO_SIZE = (96, 112)  # H, W of the clip (not square: the box and mask scaling must be right)
N_FRAMES = 4
BOX = (22.0, 18.0, 80.0, 74.0)  # x1, y1, x2, y2 in clip pixels, object id 1, frame 0
# The object-score head's last bias is set to +2 so that the object is present (a random head may say it is
# absent, and then both implementations output the constant -1024 everywhere, which would prove nothing).
OVERRIDES = {"sam_mask_decoder.pred_obj_score_head.layers.2.bias": 2.0}
# What shapes cannot tell about the small trunk (heads double per stage, as in every official Hiera).
HEADS, GLOBAL_BLOCKS, WINDOWS = (1, 2, 4, 8), (3,), (4, 4, 4, 4)


def _sine(n: int) -> dict:
    return {"_target_": "sam2.modeling.position_encoding.PositionEmbeddingSine", "num_pos_feats": n,
            "normalize": True, "scale": None, "temperature": 10000}


def _rope(**extra) -> dict:
    return {"_target_": "sam2.modeling.sam.transformer.RoPEAttention", "rope_theta": 10000.0,
            "feat_sizes": [IMAGE_SIZE // 16, IMAGE_SIZE // 16], "embedding_dim": 128, "num_heads": 1,
            "downsample_rate": 1, "dropout": 0.1, **extra}


OFFICIAL_MODEL = {
    "_target_": "sam2.modeling.sam2_base.SAM2Base",
    "image_encoder": {
        "_target_": "sam2.modeling.backbones.image_encoder.ImageEncoder", "scalp": 1,
        "trunk": {"_target_": "sam2.modeling.backbones.hieradet.Hiera", "embed_dim": 12, "num_heads": 1,
                  "stages": [1, 1, 2, 1], "global_att_blocks": list(GLOBAL_BLOCKS),
                  "window_pos_embed_bkg_spatial_size": [4, 4], "window_spec": list(WINDOWS)},
        "neck": {"_target_": "sam2.modeling.backbones.image_encoder.FpnNeck", "position_encoding": _sine(128),
                 "d_model": 128, "backbone_channel_list": [96, 48, 24, 12], "fpn_top_down_levels": [2, 3],
                 "fpn_interp_model": "nearest"},
    },
    "memory_attention": {
        "_target_": "sam2.modeling.memory_attention.MemoryAttention", "d_model": 128, "pos_enc_at_input": True,
        "layer": {"_target_": "sam2.modeling.memory_attention.MemoryAttentionLayer", "activation": "relu",
                  "dim_feedforward": 64, "dropout": 0.1, "pos_enc_at_attn": False, "self_attention": _rope(),
                  "d_model": 128, "pos_enc_at_cross_attn_keys": True, "pos_enc_at_cross_attn_queries": False,
                  "cross_attention": _rope(rope_k_repeat=True, kv_in_dim=64)},
        "num_layers": 1,
    },
    "memory_encoder": {
        "_target_": "sam2.modeling.memory_encoder.MemoryEncoder", "out_dim": 64, "in_dim": 128,
        "position_encoding": _sine(64),
        "mask_downsampler": {"_target_": "sam2.modeling.memory_encoder.MaskDownSampler", "kernel_size": 3,
                             "stride": 2, "padding": 1, "embed_dim": 128},
        "fuser": {"_target_": "sam2.modeling.memory_encoder.Fuser", "num_layers": 2,
                  "layer": {"_target_": "sam2.modeling.memory_encoder.CXBlock", "dim": 128, "kernel_size": 7,
                            "padding": 3, "layer_scale_init_value": 1e-6, "use_dwconv": True}},
    },
    # the flags of configs/sam2.1/sam2.1_hiera_b+.yaml
    "num_maskmem": 3, "image_size": IMAGE_SIZE, "sigmoid_scale_for_mem_enc": 20.0, "sigmoid_bias_for_mem_enc": -10.0,
    "use_mask_input_as_output_without_sam": True, "directly_add_no_mem_embed": True, "no_obj_embed_spatial": True,
    "use_high_res_features_in_sam": True, "multimask_output_in_sam": True, "iou_prediction_use_sigmoid": True,
    "use_obj_ptrs_in_encoder": True, "add_tpos_enc_to_obj_ptrs": True, "proj_tpos_enc_in_obj_ptrs": True,
    "use_signed_tpos_enc_to_obj_ptrs": True, "only_obj_ptrs_in_the_past_for_eval": True, "pred_obj_scores": True,
    "pred_obj_scores_mlp": True, "fixed_no_obj_ptr": True, "multimask_output_for_tracking": True,
    "use_multimask_token_for_obj_ptr": True, "multimask_min_pt_num": 0, "multimask_max_pt_num": 1,
    "use_mlp_for_obj_ptr_proj": True, "compile_image_encoder": False,
}


def official_weights(shapes: dict[str, list[int]]) -> dict[str, torch.Tensor]:
    """The golden's official-named weights: the deterministic_weights recipe, with every tensor of 2 or more
    dimensions rescaled to std 1/sqrt(fan in) (so activations keep their scale through the layers and the
    masks have structure), then OVERRIDES."""
    state = deterministic_state_dict(shapes, SEED)
    for key, t in state.items():
        if t.dim() >= 2:
            fan_in = max(1, t[0].numel())
            state[key] = t * (1.0 / fan_in ** 0.5 / 0.02)
    for key, value in OVERRIDES.items():
        state[key] = torch.full_like(state[key], value)
    return state


def clip() -> np.ndarray:
    """uint8 [T,H,W,3]: a disc with a hat moving right and down over a gradient background."""
    h, w = VIDEO_SIZE
    yy, xx = np.mgrid[:h, :w]
    frames = []
    for t in range(N_FRAMES):
        img = np.stack([40 + xx * 100 // w, 60 + yy * 120 // h, np.full_like(xx, 90)], -1).astype(np.uint8)
        cy, cx = 46 + 2 * t, 50 + 3 * t
        disc = (yy - cy) ** 2 + (xx - cx) ** 2 < 24 ** 2
        img[disc] = (220, 40, 40)
        img[disc & (yy < cy - 10)] = (240, 220, 30)
        frames.append(img)
    return np.stack(frames)


def pixel_values(frames: np.ndarray) -> torch.Tensor:
    """float32 [T,3,S,S]: frames resized bilinearly (no antialias) to the model size, ImageNet mean/std.

    Both implementations get this same tensor, so the golden compares the models, not their image loaders."""
    x = torch.from_numpy(frames).permute(0, 3, 1, 2).float() / 255.0
    x = torch.nn.functional.interpolate(x, size=(IMAGE_SIZE, IMAGE_SIZE), mode="bilinear", align_corners=False)
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    return (x - mean) / std
