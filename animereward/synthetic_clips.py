"""Synthetic cel-style clips with switchable defects, for tests, benchmarks and the demo.

A clip is a flat/gradient sky over a ground band with a few static flat-coloured props, and a handful of
flat-coloured shapes with dark outlines (circles, rotating rectangles, a simple character: body, head, eyes)
moving in straight lines. Everything is drawn from signed distance fields on a pixel grid (numpy, vectorised,
one pass per shape per frame) with a one-pixel anti-aliased edge, so optical flow sees clean edges, as it does
on real cel animation. Deterministic by seed.

Defects (any combination; `strength` scales them):
- `flicker`: per-frame global brightness change (x 1 +- 0.2);
- `jitter`: per-frame random offsets, of the camera (everything) and of each shape (+- 4 px at 160 wide);
- `freeze`: the picture stops for a few frames, then jumps to where the motion had got to;
- `distortion`: shapes stretch and squash over time (non-rigid deformation, +- 35 % per axis);
- `static`: nothing moves (camera and shapes still).

Named characters (`characters=("red", "blue")`, looks in `CHARACTER_LOOKS`: distinct colours and body shapes)
are drawn on top of the scene, each in its own vertical lane so they do not overlap (jitter and distortion
can push them a few pixels past it), for the
character_consistency tests: `make_character_clip` also returns the ground-truth label map of each frame
(which pixels show which character, as a tracker would give them), `change_at`/`change_to` make characters
take another look (colours and shape) from a given frame on (the defect that dimension should catch), and
`character_gallery_images` renders a character alone in a few poses and sizes, for a gallery folder.
Characters draw from their own random streams: the scene of a seed is the same with or without them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch

DEFECTS: tuple[str, ...] = ("flicker", "jitter", "freeze", "distortion", "static")

PALETTE = np.array(
    [
        (0.96, 0.55, 0.45),  # salmon
        (0.98, 0.85, 0.35),  # yellow
        (0.45, 0.75, 0.95),  # light blue
        (0.55, 0.85, 0.55),  # green
        (0.85, 0.55, 0.90),  # lilac
        (0.98, 0.98, 0.95),  # white
        (0.35, 0.45, 0.85),  # blue
        (0.95, 0.70, 0.80),  # pink
    ],
    dtype=np.float32,
)
OUTLINE = np.array((0.12, 0.10, 0.14), dtype=np.float32)


@dataclass(frozen=True)
class CharacterLook:
    """How a named character is drawn: body colour and shape, an accent (hat or belt) colour; head and eyes
    are the same for all."""

    body: tuple[float, float, float]
    accent: tuple[float, float, float]
    shape: str  # "round": oval body, hat; "square": box body, belt; "tall": narrow oval body, scarf


CHARACTER_LOOKS: dict[str, CharacterLook] = {
    "red": CharacterLook((0.86, 0.16, 0.16), (0.95, 0.85, 0.15), "round"),
    "blue": CharacterLook((0.16, 0.26, 0.86), (0.15, 0.78, 0.25), "square"),
    "green": CharacterLook((0.20, 0.68, 0.28), (0.85, 0.30, 0.80), "tall"),
}


@dataclass
class _Shape:
    kind: str  # "circle", "rect" or "character"
    pos: np.ndarray  # centre at frame 0, pixels (x, y)
    vel: np.ndarray  # pixels per frame
    size: float  # radius / half-extent, pixels
    aspect: float
    angle: float
    spin: float  # radians per frame (rects)
    color: np.ndarray
    phase: float  # for distortion


def _coverage(sdf: np.ndarray) -> np.ndarray:
    """Anti-aliased coverage of the inside of a signed distance field (one-pixel ramp)."""
    return np.clip(0.5 - sdf, 0.0, 1.0)


def _paint(img: np.ndarray, sdf: np.ndarray, color: np.ndarray, outline: float) -> None:
    """Fill (flat colour) then a dark outline band of width `outline` around the edge, in place."""
    fill = _coverage(sdf)[..., None]
    img += fill * (color - img)
    if outline > 0:
        ring = _coverage(np.abs(sdf + outline / 2) - outline / 2)[..., None]
        img += ring * (OUTLINE - img)


def _ellipse_sdf(x: np.ndarray, y: np.ndarray, cx: float, cy: float, rx: float, ry: float) -> np.ndarray:
    """Approximate signed distance to an axis-aligned ellipse (exact for circles, good for mild aspect)."""
    k = np.sqrt(((x - cx) / rx) ** 2 + ((y - cy) / ry) ** 2)
    return (k - 1.0) * min(rx, ry)


def _box_sdf(
    x: np.ndarray, y: np.ndarray, cx: float, cy: float, hx: float, hy: float, angle: float
) -> np.ndarray:
    c, s = np.cos(angle), np.sin(angle)
    u = (x - cx) * c + (y - cy) * s
    v = -(x - cx) * s + (y - cy) * c
    qx, qy = np.abs(u) - hx, np.abs(v) - hy
    outside = np.sqrt(np.maximum(qx, 0) ** 2 + np.maximum(qy, 0) ** 2)
    return outside + np.minimum(np.maximum(qx, qy), 0.0)


class _Frame:
    """One frame being drawn; shapes are painted only inside their bounding box (cost ~ shape area).

    With `labels` ([H,W] integer map), a shape drawn with `label=k` also writes k where its inside is (signed
    distance < 0: fill and outline), over what was there: the visible pixels of each labelled object.
    """

    def __init__(self, img: np.ndarray, cam: np.ndarray, outline: float, labels: np.ndarray | None = None) -> None:
        self.img, self.cam, self.outline, self.labels = img, cam, outline, labels
        self.h, self.w = img.shape[:2]

    def _region(
        self, cx: float, cy: float, extent: float
    ) -> tuple[slice, slice, np.ndarray, np.ndarray] | None:
        """Slices of the bounding box and the scene coordinates of its pixels, or None when off-frame."""
        ix, iy = cx + self.cam[0], cy + self.cam[1]
        pad = extent + self.outline + 2.0
        x0, x1 = max(0, int(ix - pad)), min(self.w, int(ix + pad) + 2)
        y0, y1 = max(0, int(iy - pad)), min(self.h, int(iy + pad) + 2)
        if x0 >= x1 or y0 >= y1:
            return None
        ys, xs = np.mgrid[y0:y1, x0:x1].astype(np.float32)
        return slice(y0, y1), slice(x0, x1), xs - self.cam[0], ys - self.cam[1]

    def _label(self, sy: slice, sx: slice, sdf: np.ndarray, label: int) -> None:
        if label and self.labels is not None:
            self.labels[sy, sx][sdf < 0] = label

    def ellipse(
        self, cx: float, cy: float, rx: float, ry: float, color: np.ndarray, outline: bool = True, label: int = 0
    ) -> None:
        reg = self._region(cx, cy, max(rx, ry))
        if reg is not None:
            sy, sx, x, y = reg
            sdf = _ellipse_sdf(x, y, cx, cy, rx, ry)
            _paint(self.img[sy, sx], sdf, color, self.outline if outline else 0.0)
            self._label(sy, sx, sdf, label)

    def box(
        self, cx: float, cy: float, hx: float, hy: float, angle: float, color: np.ndarray, label: int = 0
    ) -> None:
        reg = self._region(cx, cy, float(np.hypot(hx, hy)))
        if reg is not None:
            sy, sx, x, y = reg
            sdf = _box_sdf(x, y, cx, cy, hx, hy, angle)
            _paint(self.img[sy, sx], sdf, color, self.outline)
            self._label(sy, sx, sdf, label)


def _sky(rng: np.random.Generator, gradient: bool) -> np.ndarray:
    """Top and bottom sky colours [2,3] (equal for a flat sky)."""
    top = rng.uniform(0.45, 0.75, 3).astype(np.float32)
    bottom = np.clip(top + rng.uniform(0.1, 0.3, 3), 0, 1).astype(np.float32)
    return np.stack([top, bottom]) if gradient else np.stack([top, top])


def _random_shapes(n: int, h: int, w: int, frames: int, rng: np.random.Generator) -> list[_Shape]:
    shapes = []
    kinds = ["character"] + [str(k) for k in rng.choice(["circle", "rect"], size=max(0, n - 1))]
    scale = min(h, w)
    for i, kind in enumerate(kinds):
        size = float(rng.uniform(0.10, 0.17) * scale) if kind != "character" else float(0.16 * scale)
        speed = rng.uniform(0.6, 1.2) * w / 100.0  # ~1-2 px/frame at 160 wide
        ang = rng.uniform(0, 2 * np.pi)
        vel = np.array([np.cos(ang), 0.5 * np.sin(ang)]) * speed
        # start so that the straight path stays inside the frame (margin = size)
        travel = vel * (frames - 1)
        lo = np.array([size, size]) + np.maximum(-travel, 0)
        hi = np.array([w - size, h * 0.85 - size]) - np.maximum(travel, 0)
        pos = np.where(hi > lo, rng.uniform(np.minimum(lo, hi), np.maximum(lo, hi)), (np.array([w, h]) / 2))
        shapes.append(
            _Shape(
                kind=kind,
                pos=pos.astype(np.float64),
                vel=vel,
                size=size,
                aspect=float(rng.uniform(0.6, 1.4)),
                angle=float(rng.uniform(0, np.pi)),
                spin=float(rng.uniform(-0.03, 0.03)),
                color=PALETTE[(i * 3 + int(rng.integers(0, len(PALETTE)))) % len(PALETTE)],
                phase=float(rng.uniform(0, 2 * np.pi)),
            )
        )
    return shapes


@dataclass
class _Character:
    look: CharacterLook
    changed: CharacterLook | None  # the look from `change_at` on
    pos: np.ndarray  # pixels (x, y) at frame 0: the centre of the head/body joint
    vel: np.ndarray
    size: float
    phase: float


def _check_characters(
    characters: Sequence[str], change_at: int | None, change_to: Mapping[str, str] | None
) -> dict[str, str]:
    """Validate the names; the look each changing character takes (default: the next character's, cyclic)."""
    unknown = [c for c in (*characters, *(change_to or {}).values()) if c not in CHARACTER_LOOKS]
    if unknown:
        raise ValueError(f"unknown character look(s) {unknown}; known: {tuple(CHARACTER_LOOKS)}")
    if change_at is None:
        if change_to:
            raise ValueError("change_to needs change_at (the first frame drawn with the new look)")
        return {}
    if not characters:
        raise ValueError("change_at needs characters to change")
    if change_at < 0:
        raise ValueError(f"change_at is a frame index (0 = from the first frame on), not {change_at}")
    if change_to is not None:
        stray = [c for c in change_to if c not in characters]
        if stray:
            raise ValueError(f"change_to names {stray}, which are not among the characters {tuple(characters)}")
        return dict(change_to)
    names = list(characters) if len(set(characters)) > 1 else list(CHARACTER_LOOKS)
    return {c: names[(names.index(c) + 1) % len(names)] for c in characters}


def _place_characters(
    characters: Sequence[str], change_to: Mapping[str, str], h: int, w: int, frames: int, seed: int
) -> list[_Character]:
    """One lane (a vertical strip of width w/n) per character; slow straight motion that stays in its lane."""
    rng = np.random.default_rng([seed, 2])
    n = len(characters)
    lane = w / max(1, n)
    size = 0.16 * min(h, lane * 1.6)
    out = []
    for i, name in enumerate(characters):
        speed = rng.uniform(0.3, 0.7) * w / 160.0
        vel = np.array([rng.choice([-1.0, 1.0]) * speed, rng.uniform(-0.15, 0.15) * w / 160.0])
        travel = vel * (frames - 1)
        lo = np.array([i * lane + 0.85 * size, 1.8 * size]) + np.maximum(-travel, 0)
        hi = np.array([(i + 1) * lane - 0.85 * size, h - 1.6 * size]) - np.maximum(travel, 0)
        centre = np.array([(i + 0.5) * lane, h / 2])
        pos = np.where(hi > lo, rng.uniform(np.minimum(lo, hi), np.maximum(lo, hi)), centre)
        vel = np.where(hi > lo, vel, 0.0)  # too little room to move: stand still
        changed = CHARACTER_LOOKS[change_to[name]] if name in change_to else None
        out.append(_Character(CHARACTER_LOOKS[name], changed, pos, vel, size, float(rng.uniform(0, 2 * np.pi))))
    return out


def _draw_character(
    fr: _Frame, look: CharacterLook, cx: float, cy: float, r: float, sx: float, sy: float, label: int
) -> None:
    """Body (shape and colour of the look), accent, head, two eyes; every part labelled `label`."""
    body, accent = np.array(look.body, np.float32), np.array(look.accent, np.float32)
    by = cy + 0.6 * r * sy
    if look.shape == "round":
        fr.ellipse(cx, by, 0.75 * r * sx, 0.9 * r * sy, body, label=label)
    elif look.shape == "square":
        fr.box(cx, by, 0.7 * r * sx, 0.85 * r * sy, 0.0, body, label=label)
        fr.box(cx, by + 0.15 * r * sy, 0.7 * r * sx, 0.16 * r * sy, 0.0, accent, label=label)
    else:  # tall
        fr.ellipse(cx, by, 0.45 * r * sx, 1.0 * r * sy, body, label=label)
        fr.box(cx, by - 0.6 * r * sy, 0.42 * r * sx, 0.14 * r * sy, 0.0, accent, label=label)
    hx, hy = cx, cy - 0.75 * r * sy
    fr.ellipse(hx, hy, 0.6 * r * sx, 0.6 * r * sy, PALETTE[5], label=label)
    if look.shape == "round":  # hat
        fr.box(hx, hy - 0.6 * r * sy, 0.5 * r * sx, 0.2 * r * sy, 0.0, accent, label=label)
    for ex in (-0.22, 0.22):
        fr.ellipse(hx + ex * r * sx, hy, 0.08 * r + 0.5, 0.14 * r + 0.5, OUTLINE, outline=False, label=label)


@dataclass
class CharacterClip:
    """A clip with named characters and its ground truth: label k (1-based, in `characters` order) marks the
    pixels where character k is visible, 0 the rest (the layout of a tracker's label map)."""

    frames: torch.Tensor  # float32 [T,H,W,3] in 0..1
    labels: np.ndarray  # uint16 [T,H,W]
    characters: tuple[str, ...]
    change_to: dict[str, str]  # the characters that change and the look they take
    change_at: int | None


def make_clip(
    seed: int = 0,
    *,
    frames: int = 16,
    height: int = 96,
    width: int = 160,
    defects: Iterable[str] = (),
    strength: float = 1.0,
    shapes: int = 3,
    gradient: bool = True,
    should_stop: Callable[[], None] | None = None,
    characters: Sequence[str] = (),
    change_at: int | None = None,
    change_to: Mapping[str, str] | None = None,
) -> torch.Tensor:
    """A cel-style clip, float32 [T,H,W,3] in 0..1 (ComfyUI IMAGE layout), deterministic by seed.

    should_stop() runs before each frame is drawn and may raise to cancel (a 4K frame takes ~0.1 s).

    The same seed gives the same scene and motion with or without defects (defects draw from their own
    random stream), so a clean clip and its defective twin differ only by the defect.

    `characters`: names of `CHARACTER_LOOKS` drawn on top, one lane each; `change_at`: from that frame on the
    characters in `change_to` ({name: look}; default: each takes the next character's look) are drawn with
    their new look. `make_character_clip` gives the same frames with their label maps.
    """
    return _render(seed, frames, height, width, tuple(defects), strength, shapes, gradient, should_stop,
                   tuple(characters), change_at, change_to)[0]


def make_character_clip(
    seed: int = 0,
    characters: Sequence[str] = ("red", "blue"),
    *,
    change_at: int | None = None,
    change_to: Mapping[str, str] | None = None,
    frames: int = 16,
    height: int = 96,
    width: int = 160,
    defects: Iterable[str] = (),
    strength: float = 1.0,
    shapes: int = 3,
    gradient: bool = True,
) -> CharacterClip:
    """`make_clip` with named characters, and the ground-truth label maps of its frames (see `CharacterClip`).

    The same seed and characters give the same scene and the same motion with or without `change_at`, so a
    kept clip and its changed twin differ only in the changed characters' looks from `change_at` on.
    """
    characters = tuple(characters)
    if not characters:
        raise ValueError("make_character_clip needs at least one character, e.g. ('red', 'blue')")
    out, labels, looks = _render(seed, frames, height, width, tuple(defects), strength, shapes, gradient, None,
                                 characters, change_at, change_to)
    assert labels is not None
    return CharacterClip(out, labels, characters, looks, change_at)


def _render(
    seed: int,
    frames: int,
    height: int,
    width: int,
    defects: tuple[str, ...],
    strength: float,
    shapes: int,
    gradient: bool,
    should_stop: Callable[[], None] | None,
    characters: tuple[str, ...],
    change_at: int | None,
    change_to: Mapping[str, str] | None,
) -> tuple[torch.Tensor, np.ndarray | None, dict[str, str]]:
    """The frames, the label maps (None without characters) and the looks the changing characters take."""
    defects = tuple(defects)
    unknown = [d for d in defects if d not in DEFECTS]
    if unknown:
        raise ValueError(f"unknown defect(s) {unknown}; known: {DEFECTS}")
    if frames < 1 or height < 2 or width < 2:
        raise ValueError(f"need frames >= 1 and a frame of at least 2x2, got {frames}x{height}x{width}")
    rng = np.random.default_rng(seed)
    defect_rng = np.random.default_rng([seed, 1])
    sky = _sky(rng, gradient)
    ground_color = np.clip(rng.uniform(0.25, 0.55, 3), 0, 1).astype(np.float32)
    ground_y = 0.78 * height
    props = [
        (
            float(rng.uniform(0, width)),
            float(rng.uniform(0.04, 0.09) * width),
            float(rng.uniform(0.1, 0.25) * height),
            PALETTE[int(rng.integers(0, len(PALETTE)))] * 0.8,
        )
        for _ in range(3)
    ]
    shape_list = _random_shapes(shapes, height, width, frames, rng)
    static = "static" in defects
    looks = _check_characters(characters, change_at, change_to)
    chars = _place_characters(characters, looks, height, width, frames, seed)
    labels = np.zeros((frames, height, width), np.uint16) if characters else None

    # time index each frame shows (freeze: hold a few frames, then jump to where the motion had got to)
    shown = np.arange(frames, dtype=np.float64)
    if "freeze" in defects and frames >= 4:
        hold = max(2, round(frames * 0.3 * min(1.0, strength) + 1))
        start = int(defect_rng.integers(1, max(2, frames - hold)))
        shown[start : start + hold] = start
    if static:
        shown[:] = 0.0

    cam = np.zeros((frames, 2))
    jit = np.zeros((frames, len(shape_list), 2))
    char_jit = np.zeros((frames, len(chars), 2))
    if "jitter" in defects:
        amp = 4.0 * strength * width / 160.0
        cam = defect_rng.uniform(-amp / 2, amp / 2, size=(frames, 2))
        jit = defect_rng.uniform(-amp, amp, size=(frames, len(shape_list), 2))
        if chars:  # their own stream: the scene's jitter is the same with or without characters
            char_jit = np.random.default_rng([seed, 3]).uniform(-amp, amp, size=(frames, len(chars), 2))
    gain = np.ones(frames)
    if "flicker" in defects:
        gain = 1.0 + 0.2 * strength * defect_rng.uniform(-1, 1, size=frames)

    rows = np.arange(height, dtype=np.float32)[:, None]
    out = np.empty((frames, height, width, 3), dtype=np.float32)
    outline = max(1.0, 0.024 * min(height, width))
    for t in range(frames):
        if should_stop is not None:
            should_stop()
        y = rows - cam[t, 1]  # scene row of each image row (the camera shifts everything)
        frac = np.clip(y / max(1, height - 1), 0, 1)
        column = sky[0] * (1 - frac) + sky[1] * frac  # [H,3]: sky and ground vary by row only
        column += _coverage(ground_y - y) * (ground_color - column)
        img = np.repeat(column[:, None, :], width, axis=1)
        fr = _Frame(img, cam[t], outline, None if labels is None else labels[t])
        for px, hw, hh, col in props:
            fr.box(px, ground_y - hh / 2, hw, hh / 2, 0.0, col)
        for i, s in enumerate(shape_list):
            tt = shown[t]
            cx, cy = s.pos + s.vel * tt + jit[t, i]
            sx = sy = 1.0
            if "distortion" in defects and not static:
                wob = 0.35 * strength * np.sin(0.9 * t + s.phase)
                sx, sy = 1.0 + wob, 1.0 - wob
            r = s.size
            if s.kind == "circle":
                fr.ellipse(cx, cy, r * sx, r * s.aspect * sy, s.color)
            elif s.kind == "rect":
                fr.box(cx, cy, r * sx, r * s.aspect * sy, s.angle + s.spin * tt, s.color)
            else:  # character: body, head, two eyes
                fr.ellipse(cx, cy + 0.6 * r, 0.75 * r * sx, 0.9 * r * sy, s.color)
                hx, hy = cx, cy - 0.75 * r * sy
                fr.ellipse(hx, hy, 0.6 * r * sx, 0.6 * r * sy, PALETTE[5])
                for ex in (-0.22, 0.22):
                    fr.ellipse(hx + ex * r * sx, hy, 0.08 * r + 0.5, 0.14 * r + 0.5, OUTLINE, outline=False)
        for k, c in enumerate(chars, start=1):
            tt = shown[t]
            cx, cy = c.pos + c.vel * tt + char_jit[t, k - 1]
            sx = sy = 1.0
            if "distortion" in defects and not static:
                wob = 0.35 * strength * np.sin(0.9 * t + c.phase)
                sx, sy = 1.0 + wob, 1.0 - wob
            look = c.changed if c.changed is not None and change_at is not None and t >= change_at else c.look
            _draw_character(fr, look, cx, cy, c.size, sx, sy, k)
        out[t] = np.clip(img * gain[t], 0.0, 1.0)
    return torch.from_numpy(out), labels, looks


def defect_suite(seed: int = 0, **kwargs: object) -> dict[str, torch.Tensor]:
    """The clean clip and one twin per defect (same seed, same scene): {"clean": ..., "flicker": ..., ...}."""
    return {"clean": make_clip(seed, **kwargs)} | {
        d: make_clip(seed, defects=(d,), **kwargs) for d in DEFECTS
    }


def character_gallery_images(
    name: str, *, count: int = 4, size: int = 96, seed: int = 0, background: tuple[float, float, float] = (0.0, 0.0, 0.0)
) -> list[np.ndarray]:
    """`count` uint8 RGB images [size,size,3] of one character alone on a flat background, in different poses
    (position, size from 70 % to 100 %, a little stretch), for a gallery folder `<root>/<name>/<i>.png`.

    Drawn by the same code as the clips' characters, so a gallery made from them is the one those
    characters should be recognised against. Deterministic by seed (and the same poses for every name).
    """
    if name not in CHARACTER_LOOKS:
        raise ValueError(f"unknown character look {name!r}; known: {tuple(CHARACTER_LOOKS)}")
    rng = np.random.default_rng([seed, 4])
    look = CHARACTER_LOOKS[name]
    outline = max(1.0, 0.024 * size)
    images = []
    for scale in np.linspace(1.0, 0.7, count) if count > 1 else [1.0]:
        img = np.empty((size, size, 3), np.float32)
        img[:] = np.array(background, np.float32)
        r = size / 3.6 * float(scale)
        cx = size / 2 + rng.uniform(-0.1, 0.1) * (size - 1.7 * r)
        cy = size / 2 - 0.1 * r + rng.uniform(-0.1, 0.1) * (size - 3.3 * r)
        sx, sy = rng.uniform(0.9, 1.1, 2)
        _draw_character(_Frame(img, np.zeros(2), outline), look, cx, cy, r, float(sx), float(sy), 0)
        images.append((np.clip(img, 0, 1) * 255 + 0.5).astype(np.uint8))
    return images
