"""A character folder in the official layout, with small random models of the real classes, for the tests of
the character_consistency dimension (library facade, loader, nodes).

    <root>/character/IP_checkpoints/blip_checkpoints/animate_recoginzer.pth   recogniser (key "model"), 128 wide
    <root>/character/IP_checkpoints/grouding-dino-base/                        Grounding-DINO HF folder (safetensors)
    <root>/character/IP_checkpoints/sam2.1-hiera-base-plus/                    SAM2 video HF folder (safetensors)
    <root>/character/videos/<video>/mask_crop/*.jpg + BLIP/data/gallerys.json the official gallery (optional)

Written once per process into a temporary folder and copied where a test wants it (a few MB). `blank=True`
gives a detector that detects nothing (its decoder outputs are zero, so every query scores sigmoid(0) = 0.5,
not above the official 0.5 threshold): clips then have no character, the defined no-score case. The tracker
keeps every object on every frame (`follow_everything`), so a detected character always gets a score.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from animereward.character_recognizer import CharacterRecognizer

from .characters import CHARACTERS, draw_character, make_gallery, small_detector, small_tracker
from .temp_dirs import process_temp_dir

RECOGNIZER = {"width": 128, "depth": 2, "heads": 2, "embed_dim": 32}  # 64-wide heads, as ViT-L/16
IP = Path("character") / "IP_checkpoints"
RECOGNIZER_PTH = IP / "blip_checkpoints" / "animate_recoginzer.pth"
DETECTOR_DIR = IP / "grouding-dino-base"
TRACKER_DIR = IP / "sam2.1-hiera-base-plus"
GALLERY_DIR = Path("character") / "videos"
GALLERY_LIST = Path("character") / "BLIP" / "data" / "gallerys.json"


def recognizer_state(seed: int = 0) -> dict[str, torch.Tensor]:
    torch.manual_seed(seed)
    return CharacterRecognizer(**RECOGNIZER).state_dict()


def _write_models(base: Path, blank: bool) -> None:
    pth = base / RECOGNIZER_PTH
    pth.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"model": recognizer_state()}, pth)
    detector, det_proc = small_detector()
    if blank:
        with torch.no_grad():
            detector.model.decoder.layer_norm.weight.zero_()
            detector.model.decoder.layer_norm.bias.zero_()
    detector.save_pretrained(base / DETECTOR_DIR, safe_serialization=True)
    det_proc.save_pretrained(base / DETECTOR_DIR)
    tracker, _ = small_tracker()
    follow_everything(tracker)
    tracker.save_pretrained(base / TRACKER_DIR, safe_serialization=True)


def follow_everything(tracker: torch.nn.Module) -> None:
    """Make a random SAM2 video model keep every object on every frame (a mask over the whole frame, an
    object score far above 0), so clips have a defined score: random mask decoders lose objects at random.
    The mask is hyper_in @ upscaled embedding; both are set to positive constants through their biases."""
    dec = tracker.mask_decoder
    with torch.no_grad():
        dec.conv_s0.weight.zero_()
        dec.conv_s0.bias.zero_()
        dec.upscale_conv2.weight.zero_()
        dec.upscale_conv2.bias.fill_(4.0)
        for mlp in dec.output_hypernetworks_mlps:
            mlp.proj_out.weight.zero_()
            mlp.proj_out.bias.fill_(1.0)
        dec.pred_obj_score_head.proj_out.weight.zero_()
        dec.pred_obj_score_head.proj_out.bias.fill_(10.0)


def _write_official_gallery(base: Path, per_identity: int = 2) -> None:
    """The official gallery's shape: crops under videos/<video>/mask_crop/, identities in gallerys.json."""
    items = []
    for v, name in enumerate(CHARACTERS):
        crops = base / GALLERY_DIR / f"video_{v}" / "mask_crop"
        crops.mkdir(parents=True, exist_ok=True)
        for j in range(per_identity):
            img, _ = draw_character(name, jitter=2 * j)
            Image.fromarray(img).save(crops / f"object1_img{j}.jpg", quality=95)
            items.append({"image": f"video_{v}/mask_crop/object1_img{j}.jpg", "caption": name})
    (base / GALLERY_LIST).parent.mkdir(parents=True, exist_ok=True)
    (base / GALLERY_LIST).write_text(json.dumps(items, indent=1))


def _built(blank: bool, gallery: bool) -> Path:
    variant = f"{'blank' if blank else 'detects'}-{'gallery' if gallery else 'nogallery'}"
    src = process_temp_dir("animereward-character-") / variant
    if not src.exists():
        tmp = src.with_name(src.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        _write_models(tmp, blank)
        if gallery:
            _write_official_gallery(tmp)
        tmp.rename(src)
    return src


def write_character_root(root: Path, *, blank: bool = False, gallery: bool = True) -> Path:
    """Copy the character folder (official layout, under `root/character/`) into `root`; returns root."""
    shutil.copytree(_built(blank, gallery), root, dirs_exist_ok=True)
    return root


def write_user_characters(root: Path) -> Path:
    """The artist's convention: `root/<name>/<images>` for the two drawn characters."""
    return make_gallery(root)


def two_character_clip(frames: int = 10, size: int = 96) -> torch.Tensor:
    """ComfyUI IMAGE frames [T,H,W,3] in 0..1: Akane on the left half, Bo on the right, moving a little."""
    out = []
    for i in range(frames):
        left, _ = draw_character("Akane", size=size, jitter=(i % 5) - 2)
        right, _ = draw_character("Bo", size=size, jitter=2 - (i % 5))
        out.append(np.concatenate([left, right], axis=1))
    return torch.from_numpy(np.stack(out)).float() / 255.0
