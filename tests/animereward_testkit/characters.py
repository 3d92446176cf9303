"""Drawn characters, a small recogniser of the official classes and a gallery folder, for the character tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

from animereward.blip_text import BUNDLED_VOCAB
from animereward.character_recognizer import CharacterRecognizer, state_fingerprint
from animereward.character_tracking import transformers_classes

SMALL = {"width": 64, "depth": 2, "heads": 4, "embed_dim": 32}

# Two characters: a red disc with a yellow hat, a blue box with a green belt (on a grey background).
CHARACTERS = {"Akane": ((220, 40, 40), (240, 220, 30), "disc"), "Bo": ((40, 60, 220), (30, 200, 60), "box")}


def draw_character(name: str, size: int = 96, jitter: int = 0, bg: int = 128) -> tuple[np.ndarray, np.ndarray]:
    """uint8 RGB image and its boolean mask of one character, shifted by `jitter` pixels."""
    body, accent, shape = CHARACTERS[name]
    img = np.full((size, size, 3), bg, np.uint8)
    yy, xx = np.mgrid[:size, :size]
    cy, cx = size // 2 + jitter, size // 2 - jitter
    if shape == "disc":
        m = (yy - cy) ** 2 + (xx - cx) ** 2 < (size // 4) ** 2
        acc = m & (yy < cy - size // 8)
    else:
        m = (abs(yy - cy) < size // 4) & (abs(xx - cx) < size // 6)
        acc = m & (abs(yy - cy) < size // 16)
    img[m] = body
    img[acc] = accent
    return img, m


def small_model(seed: int = 0) -> CharacterRecognizer:
    torch.manual_seed(seed)
    model = CharacterRecognizer(**SMALL).eval()
    model.weights_hash = state_fingerprint(model)
    return model


def make_gallery(root: Path, per_identity: int = 3) -> Path:
    for name in CHARACTERS:
        (root / name).mkdir(parents=True, exist_ok=True)
        for j in range(per_identity):
            img, _ = draw_character(name, jitter=2 * j)
            Image.fromarray(img).save(root / name / f"{j}.png")
    return root


S = 128  # SAM2 input size of the small tracker


def small_detector():
    """A random Grounding-DINO of the real class (Swin + BERT, tiny sizes) and its processor (bundled vocab)."""
    tf = transformers_classes()
    from transformers import BertTokenizerFast, GroundingDinoConfig, GroundingDinoImageProcessor

    tok = BertTokenizerFast(vocab_file=str(BUNDLED_VOCAB))
    proc = tf.GroundingDinoProcessor(
        image_processor=GroundingDinoImageProcessor(size={"shortest_edge": 64, "longest_edge": 128}), tokenizer=tok)
    cfg = GroundingDinoConfig(
        backbone_config={"model_type": "swin", "embed_dim": 16, "depths": [1, 1, 1, 1], "num_heads": [1, 1, 1, 1],
                         "window_size": 4, "image_size": 64, "out_features": ["stage2", "stage3", "stage4"]},
        text_config={"model_type": "bert", "hidden_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2,
                     "intermediate_size": 37},
        d_model=32, encoder_layers=1, decoder_layers=1, encoder_ffn_dim=32, decoder_ffn_dim=32,
        encoder_attention_heads=2, decoder_attention_heads=2, num_queries=10, num_feature_levels=3,
        encoder_n_points=2, decoder_n_points=2, max_text_len=32)
    torch.manual_seed(0)
    return tf.GroundingDinoForObjectDetection(cfg).eval(), proc


def small_tracker():
    """A random SAM2 video model of the real class (tiny Hiera) and its processor, at 128×128."""
    tf = transformers_classes()
    from transformers import Sam2ImageProcessorFast, Sam2VideoConfig
    from transformers.models.sam2_video.video_processing_sam2_video import Sam2VideoVideoProcessor

    # 128-wide everywhere: transformers' memory attention reads 64-channel memories and splits object pointers
    # into 64-wide pieces, so the hidden size must be a multiple of 64 above it.
    cfg = Sam2VideoConfig(
        vision_config={"model_type": "sam2_vision_model",
                       "backbone_config": {"model_type": "sam2_hiera_det_model", "hidden_size": 12,
                                           "num_attention_heads": 1, "image_size": [S, S],
                                           "blocks_per_stage": [1, 1, 2, 1], "embed_dim_per_stage": [12, 24, 48, 96],
                                           "num_attention_heads_per_stage": [1, 1, 1, 1],
                                           "window_size_per_stage": [4, 4, 4, 4], "global_attention_blocks": [3],
                                           "window_positional_embedding_background_size": [4, 4]},
                       "backbone_channel_list": [96, 48, 24, 12],
                       "backbone_feature_sizes": [[S // 4, S // 4], [S // 8, S // 8], [S // 16, S // 16]],
                       "fpn_hidden_size": 128},
        prompt_encoder_config={"hidden_size": 128, "image_size": S, "patch_size": 16, "mask_input_channels": 4},
        mask_decoder_config={"hidden_size": 128, "mlp_dim": 64, "num_attention_heads": 2, "iou_head_hidden_dim": 32},
        image_size=S, num_maskmem=3, memory_attention_hidden_size=128, memory_attention_num_layers=1,
        memory_attention_feed_forward_hidden_size=64, memory_attention_rope_feat_sizes=[S // 16, S // 16],
        memory_encoder_hidden_size=128, memory_encoder_output_channels=64, mask_downsampler_embed_dim=128,
        memory_fuser_embed_dim=128, memory_fuser_intermediate_dim=64, max_object_pointers_in_encoder=4)
    torch.manual_seed(0)
    proc = tf.Sam2VideoProcessor(
        image_processor=Sam2ImageProcessorFast(size={"height": S, "width": S}, mask_size={"height": S // 4, "width": S // 4}),
        video_processor=Sam2VideoVideoProcessor(size={"height": S, "width": S}))
    return tf.Sam2VideoModel(cfg).eval(), proc
