"""Drawn characters, a small recogniser of the official classes and a gallery folder, for the character tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

from animereward.character_recognizer import CharacterRecognizer, state_fingerprint

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
