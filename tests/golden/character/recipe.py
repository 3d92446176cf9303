"""Inputs of the character_consistency goldens, shared by the test and the (out-of-repo) script that ran the
official BLIP retrieval code on them (README.md beside this file). Everything is drawn with numpy from fixed
seeds: no file, no font, no library drawing routine whose output could change between versions.

- A small recogniser of the official class (`VisionTransformer` of `reward/character/BLIP/blip_models/vit.py`
  built like `create_vit('large')` but 128 wide, 3 blocks, 4 heads; `vision_proj` 128 → 256) on
  `tests/golden/deterministic_weights.py` weights.
- A gallery of 7 images of 3 drawn identities, listed in the official `gallerys.json` format with captions in
  mixed case (`Akane`/`akane`, `Chiyo`/`CHIYO`): the official grouping lower-cases them.
- Three query clips (uint8 frames and a uint16 label map per clip, as the official `masks/mask.npy`): objects
  seen in 17, 10, 6 and 8 frames (the 6-frame one is skipped), masks wider than the character (background
  inside the mask's box is blacked out), a character partly off the frame, one whose colours and shape change
  mid-clip, tall and wide boxes (padding on both axes, odd differences).
"""

from __future__ import annotations

import hashlib

import numpy as np

WEIGHTS_SEED = 20251130
SIZES = {"width": 128, "depth": 3, "heads": 4, "embed_dim": 256}

# name → (body RGB, accent RGB, shape)
CHARACTERS: dict[str, tuple[tuple[int, int, int], tuple[int, int, int], str]] = {
    "Akane": ((220, 40, 40), (240, 220, 30), "disc"),  # red disc, yellow hat
    "Bo": ((40, 60, 220), (30, 200, 60), "wide"),  # blue wide box, green belt
    "Chiyo": ((150, 60, 200), (250, 250, 245), "tall"),  # purple tall ellipse, white face
}

# The gallery, in the official list format: (relative path, caption). Sizes (H, W), background ("black" as the
# official gallery's masked crops, or "noise") and a seed per image.
GALLERY: tuple[tuple[str, str, tuple[int, int], str, int], ...] = (
    ("Akane/0.png", "Akane", (90, 70), "black", 11),
    ("Bo/0.png", "Bo", (64, 96), "black", 12),
    ("Akane/1.png", "akane", (64, 64), "noise", 13),
    ("Chiyo/0.png", "Chiyo", (120, 80), "black", 14),
    ("Bo/1.png", "Bo", (50, 50), "noise", 15),
    ("Chiyo/1.png", "CHIYO", (70, 50), "black", 16),
    ("Akane/2.png", "Akane", (100, 130), "black", 17),
)


def _background(h: int, w: int, rng: np.random.Generator, kind: str) -> np.ndarray:
    if kind == "black":
        return np.zeros((h, w, 3), np.uint8)
    base = rng.integers(60, 200, size=3)
    ramp = np.linspace(-30, 30, w)[None, :, None]
    noise = rng.integers(-25, 26, size=(h, w, 3))
    return np.clip(base + ramp + noise, 0, 255).astype(np.uint8)


def character_mask(name: str, h: int, w: int, cy: float, cx: float, scale: float) -> tuple[np.ndarray, np.ndarray]:
    """Boolean body and accent masks [h,w] of one character centred at (cy, cx), `scale` = its half height."""
    _, _, shape = CHARACTERS[name]
    yy, xx = np.mgrid[:h, :w].astype(np.float64)
    dy, dx = (yy - cy) / scale, (xx - cx) / scale
    if shape == "disc":
        body = dy**2 + dx**2 < 0.8**2
        accent = body & (dy < -0.35)
    elif shape == "wide":
        body = (np.abs(dy) < 0.55) & (np.abs(dx) < 1.3)
        accent = body & (np.abs(dy) < 0.15)
    else:  # tall
        body = (dy / 1.0) ** 2 + (dx / 0.45) ** 2 < 1.0
        accent = body & ((dy + 0.55) ** 2 + dx**2 < 0.22**2)
    return body, accent


def paint(img: np.ndarray, name: str, cy: float, cx: float, scale: float, rng: np.random.Generator) -> np.ndarray:
    """Draw a character into `img` in place (flat colours plus a little seeded texture); returns its body mask."""
    body_rgb, accent_rgb, _ = CHARACTERS[name]
    h, w = img.shape[:2]
    body, accent = character_mask(name, h, w, cy, cx, scale)
    tex = rng.integers(-12, 13, size=(h, w, 3))
    img[body] = np.clip(np.array(body_rgb) + tex[body], 0, 255)
    img[accent] = np.clip(np.array(accent_rgb) + tex[accent], 0, 255)
    return body


def gallery_image(index: int) -> np.ndarray:
    """uint8 [H,W,3] of GALLERY[index]: the character centred, filling most of the image."""
    _, caption, (h, w), bg, seed = GALLERY[index]
    rng = np.random.default_rng(seed)
    img = _background(h, w, rng, bg)
    name = next(n for n in CHARACTERS if n.lower() == caption.lower())
    paint(img, name, h / 2, w / 2, 0.45 * min(h, w) if CHARACTERS[name][2] != "wide" else 0.35 * min(h, w), rng)
    return img


# Query clips: per object (label 1, 2, ...), its appearances: (first frame, last frame, character name per frame
# or one name, start centre (y, x), velocity per frame (y, x), scale). Objects are drawn and labelled in order,
# so a later object overwrites an earlier one where they overlap (as the official mask.npy does).
CLIPS: dict[str, dict] = {
    "two_characters": {
        "frames": 17, "size": (72, 112), "seed": 101,
        "objects": [
            {"range": (0, 16), "name": "Akane", "start": (34.0, 10.0), "vel": (0.3, 6.0), "scale": 16.0},
            {"range": (4, 13), "name": "Bo", "start": (48.0, 90.0), "vel": (-0.8, -3.0), "scale": 11.0},
            {"range": (0, 5), "name": "Chiyo", "start": (20.0, 60.0), "vel": (0.0, 1.0), "scale": 14.0},
        ],
    },
    "changes_mid_clip": {
        "frames": 16, "size": (64, 64), "seed": 102,
        "objects": [
            {"range": (0, 15), "name": ["Akane"] * 8 + ["Chiyo"] * 8, "start": (32.0, 30.0), "vel": (0.0, 0.4),
             "scale": 18.0},
        ],
    },
    "tall_only": {
        "frames": 8, "size": (80, 60), "seed": 103,
        "objects": [
            {"range": (0, 7), "name": "Chiyo", "start": (40.0, 28.0), "vel": (0.5, 0.7), "scale": 22.0},
        ],
    },
}
MASK_DILATION = 2  # the label map covers the character plus 2 pixels around it (a tracker's mask is not exact)


def _dilate(mask: np.ndarray, r: int) -> np.ndarray:
    out = mask.copy()
    h, w = mask.shape
    for dy in range(-r, r + 1):
        for dx in range(-r, r + 1):
            src = mask[max(0, -dy):h - max(0, dy), max(0, -dx):w - max(0, dx)]
            out[max(0, dy):h - max(0, -dy), max(0, dx):w - max(0, -dx)] |= src
    return out


def clip(name: str) -> tuple[np.ndarray, np.ndarray]:
    """uint8 frames [T,H,W,3] and uint16 label map [T,H,W] (0 = background, k = object k) of CLIPS[name]."""
    spec = CLIPS[name]
    t, (h, w) = spec["frames"], spec["size"]
    rng = np.random.default_rng(spec["seed"])
    frames = np.stack([_background(h, w, rng, "noise") for _ in range(t)])
    labels = np.zeros((t, h, w), np.uint16)
    for k, obj in enumerate(spec["objects"], start=1):
        first, last = obj["range"]
        for i in range(first, last + 1):
            who = obj["name"] if isinstance(obj["name"], str) else obj["name"][i - first]
            cy = obj["start"][0] + obj["vel"][0] * (i - first)
            cx = obj["start"][1] + obj["vel"][1] * (i - first)
            body = paint(frames[i], who, cy, cx, obj["scale"], rng)
            labels[i][_dilate(body, MASK_DILATION)] = k
    return frames, labels


def sha256(arr: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(arr).tobytes()).hexdigest()
