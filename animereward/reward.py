"""The AnimeReward facade: the object a caller holds to score clips on the enabled dimensions.

It checks what it is given and assembles the results; the work is done by pieces that stand alone:
- `scorer_cache.ScorerCache` builds each scorer lazily (weights read on first use) and releases it;
- `chunk_runner.run_chunks` runs a call dimension-major in chunks of `batch_size`, with the hooks, the
  prefetch thread, the release policy and the call's clip memo;
- `scores` holds the results (`RewardScores`), the weighting of the total and the ranking;
- `weights_layout` finds the files, `clip_validation` checks the inputs, `dimensions` says what each
  dimension is.

Each clip is validated and reduced to the frames some enabled dimension reads before any per-frame work
(clip_validation), so a 2,000-frame clip costs what its sampled frames cost. Hooks (hooks.py) are passed the
same way to every call: before each forward (with the chunk's shape), progress, should-stop.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from . import clip_validation as cv
from . import dimensions as registry
from .chunk_runner import frame_plan, prefetch_default, run_chunks
from .dimensions import DIMENSIONS, check_dimension_names
from .hooks import NO_HOOKS, ScoringHooks
from .scorer_cache import Builder, ScorerCache, builder_of
from .scorer_protocol import DEFAULT_BATCH_SIZE
from .scores import SCHEMA_VERSION, RewardScores, ScoresFormatError, rank, resolve_weights, weighted_totals
from .weights_layout import (
    DimensionNotAvailableError,
    MissingWeightsError,
    available_dimensions,
    locate,
    missing_files,
    missing_message,
    not_available_message,
)

log = logging.getLogger(__name__)

# Re-exported: they were defined here before the facade was split.
__all__ = [
    "SCHEMA_VERSION", "AnimeReward", "Builder", "RewardScores", "ScoresFormatError", "builder_of", "frame_plan",
    "rank", "resolve_weights",
]



class AnimeReward:
    """Every enabled dimension's scorer, loaded lazily, scored in batches; see the module docstring."""

    def __init__(
        self,
        dimensions: Sequence[str],
        *,
        paths: Mapping[str, Path] | None = None,
        root: Path | None = None,
        dtype: torch.dtype = torch.float32,
        device: str | torch.device = "cpu",
        quantization: str | None = None,
        weights: Mapping[str, float] | None = None,
        keep_loaded: bool = True,
        builders: Mapping[str, Builder] | None = None,
        settings: Mapping[str, Any] | None = None,
    ) -> None:
        """Prefer `from_folder`. paths: checkpoint file/folder per weighted dimension; builders: a
        `build_scorer`-like callable per dimension replacing the registry's (tests, benchmarks); settings:
        what some scorers read with each batch (e.g. character_consistency's gallery, see `with_settings`)."""
        dims = list(dict.fromkeys(dimensions))
        if not dims:
            raise ValueError("dimensions: no dimension enabled; enable at least one")
        _check_enabled(dims)
        if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
            raise ValueError(f"dtype: expected a floating torch dtype, got {dtype!r}")
        self.dimensions: tuple[str, ...] = tuple(d for d in DIMENSIONS if d in dims)
        self.paths: dict[str, Path] = {d: Path(p) for d, p in (paths or {}).items()}
        self.builders: dict[str, Builder] = dict(builders or {})
        lacking = [d for d in self.dimensions if DIMENSIONS[d].needs_weights and d not in self.paths
                   and d not in self.builders]
        if lacking:
            raise ValueError(
                f"paths: no checkpoint given for {lacking}; use AnimeReward.from_folder(root, ...) to find them"
            )
        self.device = torch.device(device)
        if quantization not in registry.QUANTIZATIONS:
            raise ValueError(f"quantization: expected one of {registry.QUANTIZATIONS}, got {quantization!r}")
        quantized = [d for d in self.dimensions if quantization in DIMENSIONS[d].quantizations
                     and d not in self.builders]
        if quantization is not None and quantized and self.device.type != "cuda":
            raise ValueError(
                f"quantization={quantization!r} (bitsandbytes, for {quantized}) loads the weights straight onto a "
                f"CUDA GPU, but device is {str(self.device)!r}; pass device='cuda' or quantization=None"
            )
        self.root = root
        self.dtype = dtype
        self.quantization = quantization
        self.keep_loaded = keep_loaded
        self.default_weights = dict(weights) if weights is not None else None
        self.settings: dict[str, Any] = dict(settings or {})
        if weights is not None:
            resolve_weights(weights, self.dimensions)  # fail at construction, not at the first score
        self._scorers = ScorerCache(self.dimensions, paths=self.paths, builders=self.builders, dtype=dtype,
                                    device=self.device, quantization=quantization)
        # Preprocess the next chunk while the current one runs its forward (chunk_runner.Prefetch): "auto" when
        # that forward runs on an accelerator (on the CPU the two would only fight over the same cores: measured
        # in bench_scoring), True always, False never. Default from $ANIMEREWARD_PREFETCH (auto/on/off).
        self.prefetch: bool | str = prefetch_default()

    @classmethod
    def from_folder(
        cls,
        root: str | Path | None,
        dimensions: Sequence[str] | None = None,
        *,
        dtype: torch.dtype = torch.float32,
        device: str | torch.device = "cpu",
        quantization: str | None = None,
        weights: Mapping[str, float] | None = None,
        keep_loaded: bool = True,
        builders: Mapping[str, Builder] | None = None,
        settings: Mapping[str, Any] | None = None,
    ) -> AnimeReward:
        """Locate the files of the enabled dimensions under `root` (official or flat layout, see
        weights_layout); nothing is loaded yet.

        root None: weight-free dimensions only. dimensions None: every dimension whose files are present, plus
        the weight-free ones. Explicitly enabled dimensions with missing files: one MissingWeightsError listing
        every missing path. A dimension without an implementation (character_consistency):
        DimensionNotAvailableError.
        """
        root_path = None if root is None else Path(root)
        if root_path is not None and not root_path.is_dir():
            raise FileNotFoundError(f"root: the weights folder {root_path} does not exist (or is not a folder)")
        if dimensions is None:
            present = available_dimensions(root_path) if root_path is not None else {}
            dims = [d for d, ok in present.items() if ok] + [
                d for d in registry.available() if not DIMENSIONS[d].needs_weights]
            if root_path is not None and not any(present.values()):
                log.warning("no AnimeReward weights found under %s; scoring with the flow metrics only", root_path)
        else:
            if isinstance(dimensions, str):
                raise ValueError(f"dimensions: expected a list of names, got the string {dimensions!r}")
            dims = list(dimensions)
            _check_enabled(dims)
        weighted = [d for d in dims if DIMENSIONS[d].needs_weights and d not in (builders or {})]
        paths: dict[str, Path] = {}
        if weighted:
            if root_path is None:
                missing = {d: [Path(_official_rel(d))] for d in weighted}
                raise MissingWeightsError(missing_message(None, missing), missing)
            missing_files(root_path, weighted, raise_error=True)
            paths = {d: locate(root_path, d) for d in weighted}
        return cls(
            dims, paths=paths, root=root_path, dtype=dtype, device=device, quantization=quantization,
            weights=weights, keep_loaded=keep_loaded, builders=builders, settings=settings,
        )

    def with_settings(self, **settings: Any) -> AnimeReward:
        """The same AnimeReward (the same loaded scorers: nothing is loaded twice) with these settings changed,
        e.g. `with_settings(character_gallery=path)` scores character_consistency against another gallery."""
        other = copy.copy(self)
        other.settings = {**self.settings, **settings}
        return other

    def __repr__(self) -> str:
        return f"AnimeReward(dimensions={list(self.dimensions)}, loaded={list(self.loaded())}, root={self.root})"

    # -- loading -------------------------------------------------------------------------------------------

    def scorer(self, name: str) -> nn.Module:
        """The scorer module of an enabled dimension, built on first use (weights read then)."""
        self._check_in_this(name)
        return self._scorers.get(name)

    def loaded(self) -> dict[str, nn.Module]:
        """The scorers currently built (a copy: changing it changes nothing)."""
        return self._scorers.loaded()

    def release(self, name: str | None = None) -> None:
        """Drop a scorer's weights (all scorers when name is None); the next use loads them again."""
        if name is not None:
            self._check_in_this(name)
        self._scorers.release(name)

    def _check_in_this(self, name: str) -> None:
        if name not in self.dimensions:
            _check_enabled([name])
            raise ValueError(f"{name} is not enabled in this AnimeReward; enabled: {list(self.dimensions)}")

    # -- scoring -------------------------------------------------------------------------------------------

    def score(
        self,
        frames: Any,
        prompt: str | None = None,
        first_frame: Any = None,
        weights: Mapping[str, float] | None = None,
        *,
        dimensions: Sequence[str] | None = None,
        hooks: ScoringHooks = NO_HOOKS,
    ) -> RewardScores:
        """Score one clip [T,H,W,C] (tensor, array or list of frames); see clip_validation for what is accepted."""
        if isinstance(prompt, (list, tuple)):
            raise ValueError("prompt: one clip takes one prompt string; use score_batch for several clips")
        raw = [cv.as_clip(frames, "frames")]
        prompts = cv.prompt_list(prompt, 1, "prompt")
        firsts = [None if first_frame is None else cv.as_image(first_frame, "first_frame")]
        return self._score(raw, prompts, firsts, weights, dimensions, "prompt", "first_frame", hooks)[0]

    def score_batch(
        self,
        clips: Any,
        prompts: str | Sequence[str | None] | None = None,
        first_frames: Any = None,
        weights: Mapping[str, float] | None = None,
        *,
        batch_size: int = DEFAULT_BATCH_SIZE,
        dimensions: Sequence[str] | None = None,
        hooks: ScoringHooks = NO_HOOKS,
    ) -> list[RewardScores]:
        """Score N clips (a list of [T,H,W,C], or one [N,T,H,W,C]); clips may differ in length and size.

        prompts: one string for all clips or one per clip. first_frames: one image for all, or one per clip.
        dimensions: a subset of the enabled dimensions for this call. batch_size: clips per forward.
        hooks: see hooks.py (progress after each chunk, should_stop before it, before_forward).
        """
        if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
            raise ValueError(f"batch_size: expected an integer >= 1, got {batch_size!r}")
        raw = cv.clip_list(clips, "clips")
        prompt_items = cv.prompt_list(prompts, len(raw), "prompts")
        firsts = cv.first_frame_list(first_frames, len(raw), "first_frames")
        return self._score(raw, prompt_items, firsts, weights, dimensions, "prompts", "first_frames", hooks,
                           batch_size=batch_size)

    def _score(
        self,
        raw: list[cv.RawClip],
        prompts: list[str | None],
        firsts: list[torch.Tensor | None],
        weights: Mapping[str, float] | None,
        dimensions: Sequence[str] | None,
        prompt_arg: str,
        first_arg: str,
        hooks: ScoringHooks,
        batch_size: int = DEFAULT_BATCH_SIZE,
    ) -> list[RewardScores]:
        dims = self._dimensions_for_call(dimensions)
        cv.require_inputs(dims, prompts, firsts, prompt_arg, first_arg)
        if weights is not None:
            norm = resolve_weights(weights, dims)
        elif self.default_weights is not None:
            norm = resolve_weights({d: w for d, w in self.default_weights.items() if d in dims}, dims,
                                   "weights (AnimeReward default)")
        else:
            norm = resolve_weights(None, dims)
        plans = list({id(p): p for p in (frame_plan(d) for d in dims)}.values())
        clips = [cv.validate_clip(c, plans) for c in raw]
        out = run_chunks(clips, prompts, firsts, dims, scorers=self._scorers, hooks=hooks, batch_size=batch_size,
                         prefetch=self.prefetch, keep_loaded=self.keep_loaded, settings=self.settings)
        totals = weighted_totals(out.scores, norm)  # clips without a dimension's score: see scores.py
        return [RewardScores(scores=scores, weights=used, total=total, extras=extras, unscored=unscored)
                for scores, extras, unscored, (total, used)
                in zip(out.scores, out.extras, out.unscored, totals, strict=True)]

    def _dimensions_for_call(self, dimensions: Sequence[str] | None) -> list[str]:
        if dimensions is None:
            return list(self.dimensions)
        if isinstance(dimensions, str):
            raise ValueError(f"dimensions: expected a list of names, got the string {dimensions!r}")
        wanted = list(dict.fromkeys(dimensions))
        _check_enabled(wanted)
        outside = [d for d in wanted if d not in self.dimensions]
        if outside:
            raise ValueError(
                f"dimensions: {outside} not enabled in this AnimeReward (enabled: {list(self.dimensions)}); "
                f"load it with those dimensions enabled"
            )
        if not wanted:
            raise ValueError("dimensions: empty; give at least one dimension to score")
        return [d for d in self.dimensions if d in wanted]


def _official_rel(dimension: str) -> str:
    files = DIMENSIONS[dimension].files
    return files.official if files is not None else dimension


def _check_enabled(dims: Sequence[str]) -> None:
    """Known names, and no dimension that has a name but no implementation yet."""
    check_dimension_names(list(dims))
    for d in dims:
        if not DIMENSIONS[d].available:
            raise DimensionNotAvailableError(not_available_message(d))
