"""The registry of dimensions: everything the pack knows about a dimension, in one entry.

The six AnimeReward dimensions and the two weight-free flow metrics. Every other layer reads this registry:
the facade (which module builds a scorer, which frames it reads, which quantisations it takes), the input
checks (prompt, first frame), the weights layout (official files), the nodes (loader toggles, weights,
outputs), the overlay and the web front (labels, sent with each result). Adding a dimension means one
`register(Dimension(...))` plus its scorer module, nothing else.

Our names are used everywhere (Python, JSON, web front, docs); the official key names of `reward_infer.py`
stay available so results can be compared with the official code.

Nothing here imports more than the standard library, so ComfyUI can read it when drawing its menus.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Literal

Group = Literal["appearance", "consistency", "flow"]
FrameSampling = Literal["official", "window"]


@dataclass(frozen=True)
class WeightsPart:
    """One of the several files or folders a dimension reads (`WeightsEntry.parts`).

    paths: where it may lie, relative to the entry's folder, preferred first. A path with a suffix (`.pth`,
    `.pt`) is a checkpoint file (its converted `.safetensors` sibling also counts); a path without one is a
    Hugging Face folder (config.json + safetensors weights). kind "gallery": a folder of images with its list.
    required: False for a part the dimension can do without (it is then looked for, never reported missing).
    """

    name: str  # what it is for, as messages show it: "recognizer", "detector", "tracker", "gallery"
    paths: tuple[str, ...]
    required: bool = True
    kind: Literal["checkpoint", "gallery"] = "checkpoint"


@dataclass(frozen=True)
class WeightsEntry:
    """One dimension's official files.

    kind "file" (a .pth checkpoint) or "folder" (an HF checkpoint folder): `relpath` is relative to the
    official folder `base` (the hub's `reward/weights/`). kind "parts": the dimension reads several files
    (`parts`), each relative to the folder `base` (the official `reward/character/`); `relpath` is the
    sub-folder whose presence marks that folder (`IP_checkpoints`).
    """

    relpath: str
    kind: Literal["file", "folder", "parts"]
    base: str = "weights"
    parts: tuple[WeightsPart, ...] = ()

    @property
    def official(self) -> str:
        """The path relative to the hub's `reward/` folder, as error messages show it."""
        return f"{self.base}/{self.relpath}"


@dataclass(frozen=True)
class Dimension:
    """What a dimension is.

    scorer: the module that builds it (a name relative to this package, e.g. ".actionclip", or an absolute
    module name), whose `build_scorer(name, path, *, dtype, device[, quantization])` returns the scorer; or
    that callable itself; None while the dimension has no implementation (it is then never offered).
    frames: "official" = the official 24-frame sample (DESIGN §2); "window" = every consecutive frame of the
    official 144-frame window (what frame-to-frame metrics need).
    """

    name: str
    official_key: str | None
    group: Group
    label: str  # for people: tooltips, docs
    short_label: str  # for tight places: the score table on the node, the overlay panel
    needs_prompt: bool = False
    needs_first_frame: bool = False
    needs_weights: bool = True
    files: WeightsEntry | None = None  # where its official weights live (when it needs weights)
    quantizations: tuple[str, ...] = ()  # besides full precision, e.g. ("8bit", "4bit")
    scorer: str | Callable[..., Any] | None = None
    frames: FrameSampling = "official"
    default_weight: float = 1.0
    # Added after workflows were saved with the pack's nodes: its Loader toggle (off by default) and Weights
    # input come after the nodes' other inputs (optional), and its Score output after `json`, so the widget
    # values and links of a saved workflow (UI widgets are stored by position, links by output index) keep
    # their meaning and it scores what it scored before.
    appended: bool = False

    @property
    def available(self) -> bool:
        """Implemented in this version (a scorer exists), so it can be enabled."""
        return self.scorer is not None


_IDEFICS2 = ("8bit", "4bit")

# character_consistency reads three models and a gallery, laid out as the official code expects them under
# `reward/character/` (`reward_infer.py`, `samurai_with_gdino_t2v.py`, `scripts/demo.py`, `eval_pretrain.yaml`).
# The SAM2.1 tracker may also be the same weights as an HF folder (facebook/sam2.1-hiera-base-plus).
CHARACTER_FILES = WeightsEntry("IP_checkpoints", "parts", base="character", parts=(
    WeightsPart("recognizer", ("IP_checkpoints/blip_checkpoints/animate_recoginzer.pth",)),
    WeightsPart("detector", ("IP_checkpoints/grouding-dino-base",)),
    WeightsPart("tracker", ("IP_checkpoints/sam2_checkpoints/sam2.1_hiera_base_plus.pt",
                            "IP_checkpoints/sam2_checkpoints/sam2.1-hiera-base-plus",
                            "IP_checkpoints/sam2.1-hiera-base-plus")),
    WeightsPart("gallery", ("videos",), required=False, kind="gallery"),
))

DIMENSIONS: dict[str, Dimension] = {}


def register(dim: Dimension) -> Dimension:
    """Add a dimension (after the built-in ones, in the order registered). Names are unique."""
    if not isinstance(dim, Dimension):
        raise TypeError(f"register: expected a Dimension, got {type(dim).__name__}")
    if dim.name in DIMENSIONS:
        raise ValueError(f"register: a dimension named {dim.name!r} exists already")
    if dim.needs_weights and dim.available and dim.files is None:
        raise ValueError(f"register: {dim.name} needs weights but names no files (Dimension.files)")
    DIMENSIONS[dim.name] = dim
    _refresh()
    return dim


def unregister(name: str) -> None:
    """Remove a registered dimension (tests; a pack that registered one and is unloaded)."""
    DIMENSIONS.pop(name)
    _refresh()


@contextmanager
def registered(dim: Dimension) -> Iterator[Dimension]:
    """`register(dim)` for the duration of a `with` block."""
    register(dim)
    try:
        yield dim
    finally:
        unregister(dim.name)


for _d in (
    Dimension("visual_smoothness", "visual_smooth", "appearance", "Visual smoothness", "smooth",
              needs_prompt=True, quantizations=_IDEFICS2, scorer=".idefics2_regression",
              files=WeightsEntry("mantis-8b-idefics2-video-eval-24frame-benchmark-1epoch_4096_regression/"
                                 "checkpoint-final", "folder")),
    Dimension("visual_motion", "visual_motion", "appearance", "Visual motion", "motion", scorer=".actionclip",
              files=WeightsEntry("testvl-pre76-top187-rec69.pth", "file")),
    Dimension("visual_appeal", "visual_quality", "appearance", "Visual appeal", "appeal",
              needs_prompt=True, quantizations=_IDEFICS2, scorer=".idefics2_regression",
              files=WeightsEntry("mantis-8b-idefics2-video-eval-24frame-quality_4096_regression/checkpoint-final",
                                 "folder")),
    Dimension("text_video_consistency", "text-video_consist", "consistency", "Text-video consistency", "text-vid",
              needs_prompt=True, scorer=".blip_consistency",
              files=WeightsEntry("Pretrain_text_humangt_meanvideo_trainset_wGT_random_samescore/checkpoint_05.pth",
                                 "file")),
    Dimension("image_video_consistency", "img-video_consist", "consistency", "Image-video consistency", "img-vid",
              needs_first_frame=True, scorer=".blip_consistency",
              files=WeightsEntry("Pretrain_humangt_meanvideo_trainset_wGT/checkpoint_06.pth", "file")),
    Dimension("character_consistency", "character_consist", "consistency", "Character consistency", "character",
              scorer=".character_scorer", frames="window", appended=True, files=CHARACTER_FILES),
    Dimension("flow_smoothness", None, "flow", "Flow smoothness", "flow-smooth", needs_weights=False,
              scorer=".flow_metrics", frames="window"),
    Dimension("flow_motion", None, "flow", "Flow motion", "flow-motion", needs_weights=False,
              scorer=".flow_metrics", frames="window"),
):
    DIMENSIONS[_d.name] = _d

# Derived views, refreshed on every (un)registration: read them as `dimensions.NAME` (or through the
# functions below) where registrations may come later; `from .dimensions import NAME` keeps a snapshot.
ANIMEREWARD_DIMENSIONS: tuple[str, ...] = ()  # every dimension that needs weights (implemented or not)
FLOW_DIMENSIONS: tuple[str, ...] = ()  # the weight-free ones
OFFICIAL_TO_OURS: dict[str, str] = {}
QUANTIZATIONS: tuple[str | None, ...] = (None,)  # None = full precision, then every mode some dimension takes


def _refresh() -> None:
    global ANIMEREWARD_DIMENSIONS, FLOW_DIMENSIONS, OFFICIAL_TO_OURS, QUANTIZATIONS
    ANIMEREWARD_DIMENSIONS = tuple(n for n, d in DIMENSIONS.items() if d.needs_weights)
    FLOW_DIMENSIONS = tuple(n for n, d in DIMENSIONS.items() if not d.needs_weights)
    OFFICIAL_TO_OURS = {d.official_key: n for n, d in DIMENSIONS.items() if d.official_key}
    QUANTIZATIONS = (None, *dict.fromkeys(q for d in DIMENSIONS.values() for q in d.quantizations))


_refresh()

# Where the official weights are published (for error messages that tell the user what to fetch).
WEIGHTS_SOURCE = ("Hugging Face hub repo IndexTeam/Index-anisora, folder reward/ (weights/, IP_checkpoints/, "
                  "videos.tar.gz)")


def available() -> tuple[str, ...]:
    """The dimensions that can be enabled in this version, in registry (panel) order."""
    return tuple(n for n, d in DIMENSIONS.items() if d.available)


def weighted() -> tuple[str, ...]:
    """The available dimensions that read weights files."""
    return tuple(n for n, d in DIMENSIONS.items() if d.available and d.needs_weights)


def official_files() -> dict[str, WeightsEntry]:
    """Official files of every available dimension that reads weights (DESIGN §2 "Checkpoint files")."""
    return {n: d.files for n, d in DIMENSIONS.items() if d.available and d.files is not None}


def labels() -> dict[str, str]:
    """Short label of every dimension (what the web front and the overlay print)."""
    return {n: d.short_label for n, d in DIMENSIONS.items()}


def check_dimension_names(names: list[str] | tuple[str, ...]) -> None:
    unknown = [n for n in names if n not in DIMENSIONS]
    if unknown:
        raise ValueError(f"unknown AnimeReward dimension(s) {unknown}; known: {list(DIMENSIONS)}")
