"""The AnimeReward facade: one object that loads, batches, scores and releases every enabled dimension.

Why it is shaped this way:
- Scorers load lazily (first `scorer(name)` or score call), so a loader node costs nothing until it runs, and
  `release()` / `keep_loaded=False` keep one model resident at a time on a small GPU.
- Work is dimension-major: all clips go through one dimension (in chunks of `batch_size`, one batched forward
  per chunk) before the next is touched, so a model is loaded once per call, never once per clip.
- Each clip is validated and reduced to the frames some enabled dimension reads before any per-frame work
  (clip_validation), so a 2,000-frame clip costs what its sampled frames cost.
- `before_forward(name, module)` runs before each chunk's preprocess: the ComfyUI layer uses it to let model
  management move the module; the scorers read their device from their parameters when preprocessing.

Frames each dimension reads: the five official models read the official 24-frame sample (DESIGN §2); the
flow metrics read every consecutive pair of the first min(T, 144) frames (the official 144-frame window), so
their cost is bounded for long clips and uneven sampling strides never look like jitter.

Totals: a weighted mean of the scored dimensions. Weights are relative (normalised to sum 1); a dimension left
out of a user mapping keeps the default weight 1.0.
"""

from __future__ import annotations

import importlib
import json
import logging
import math
import os
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from . import cancel, clip_memo
from . import clip_validation as cv
from . import dimensions as registry
from .dimensions import DIMENSIONS, check_dimension_names
from .preprocess import MAX_LENGTH
from .scorer_protocol import ClipBatch
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

SCHEMA_VERSION = 1
FLOW_MAX_FRAMES = MAX_LENGTH
# Float32 frames kept between dimensions that read the same frames (see clip_validation.FrameCache).
FRAME_CACHE_BYTES = 2 * 1024**3

Builder = Callable[..., nn.Module]


def flow_plan(num_frames: int) -> list[int]:
    """Consecutive frames of the official 144-frame window (the flow metrics measure frame-to-frame change)."""
    return list(range(min(num_frames, FLOW_MAX_FRAMES)))


def frame_plan(dimension: str) -> cv.FramePlan:
    """The original frame numbers a dimension reads, as a function of the clip length."""
    return flow_plan if DIMENSIONS[dimension].frames == "window" else cv.official_plan


# -- results ------------------------------------------------------------------------------------------------


@dataclass
class RewardScores:
    """Scores of one clip.

    JSON schema (`to_dict`/`to_json`, version 1; keys always present, dimensions in DIMENSIONS order):
      {"total": float,                          weighted mean of "scores" with "weights"
       "scores": {our dimension name: float},   each in [0, 1]
       "weights": {our dimension name: float},  normalised: they sum to 1, same keys as "scores"
       "official": {official key: float},       the scores under reward_infer.py's key names (no flow metrics)
       "extras": {our dimension name: {name: float}}}  optional per-dimension details, e.g.
                 visual_smoothness/visual_appeal: {"raw_score"} (unclamped logit / 100); a scorer whose
                 `stats` input has named columns (`stats_names`) adds them (finite values only)
    """

    scores: dict[str, float]
    weights: dict[str, float]
    total: float
    extras: dict[str, dict[str, float]] = field(default_factory=dict)

    def official(self) -> dict[str, float]:
        """Scores under the official `reward_infer.py` key names (the official dimensions only)."""
        return {DIMENSIONS[d].official_key: s for d, s in self.scores.items() if DIMENSIONS[d].official_key}

    def to_dict(self) -> dict[str, Any]:
        return {
            "total": float(self.total),
            "scores": {d: float(s) for d, s in self.scores.items()},
            "weights": {d: float(w) for d, w in self.weights.items()},
            "official": self.official(),
            "extras": {d: dict(e) for d, e in self.extras.items()},
        }

    def to_json(self, indent: int | None = None) -> str:
        return json.dumps(self.to_dict(), indent=indent, allow_nan=False)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RewardScores:
        """Inverse of `to_dict` (the `official` view is derived, so it is not read back)."""
        return cls(
            scores={str(k): float(v) for k, v in data["scores"].items()},
            weights={str(k): float(v) for k, v in data["weights"].items()},
            total=float(data["total"]),
            extras={str(k): {str(a): float(b) for a, b in v.items()} for k, v in data.get("extras", {}).items()},
        )


def resolve_weights(
    user: Mapping[str, float] | None, scored: Sequence[str], arg: str = "weights"
) -> dict[str, float]:
    """Normalised weights over `scored`; errors name unknown, not-scored, negative and all-zero weights."""
    if user is None:
        raw = dict.fromkeys(scored, 1.0)
    else:
        if not isinstance(user, Mapping):
            raise ValueError(f"{arg}: expected a mapping of dimension name to weight, got {type(user).__name__}")
        unknown = [k for k in user if k not in DIMENSIONS]
        if unknown:
            raise ValueError(f"{arg}: unknown dimension name(s) {unknown}; known: {list(DIMENSIONS)}")
        outside = [k for k in user if k not in scored]
        if outside:
            raise ValueError(
                f"{arg}: weights given for dimension(s) {outside} that are not enabled/scored here; "
                f"scored: {list(scored)}"
            )
        raw = {}
        for d in scored:
            w = user.get(d, 1.0)
            try:
                w = float(w)
            except (TypeError, ValueError):
                raise ValueError(f"{arg}[{d!r}]: a weight must be a number, got {w!r}") from None
            if not math.isfinite(w) or w < 0:
                raise ValueError(f"{arg}[{d!r}]: a weight must be a finite number >= 0, got {w}")
            raw[d] = w
    total = sum(raw.values())
    if total <= 0:
        raise ValueError(f"{arg}: all weights are 0 for the scored dimensions {list(scored)}; give one a weight > 0")
    return {d: w / total for d, w in raw.items()}


# -- the facade ---------------------------------------------------------------------------------------------


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
        before_forward: Callable[[str, nn.Module], None] | None = None,
        keep_loaded: bool = True,
        builders: Mapping[str, Builder] | None = None,
    ) -> None:
        """Prefer `from_folder`. paths: checkpoint file/folder per weighted dimension; builders: a
        `build_scorer`-like callable per dimension replacing the default (tests, benchmarks)."""
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
        self.before_forward = before_forward
        self.keep_loaded = keep_loaded
        self.default_weights = dict(weights) if weights is not None else None
        if weights is not None:
            resolve_weights(weights, self.dimensions)  # fail at construction, not at the first score
        self._loaded: dict[str, nn.Module] = {}
        self._lock = threading.RLock()
        # Preprocess the next chunk while the current one runs its forward (see _Prefetch): "auto" when that
        # forward runs on an accelerator (on the CPU the two would only fight over the same cores: measured
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
        before_forward: Callable[[str, nn.Module], None] | None = None,
        keep_loaded: bool = True,
        builders: Mapping[str, Builder] | None = None,
    ) -> AnimeReward:
        """Locate the files of the enabled dimensions under `root` (official or flat layout, see
        weights_layout); nothing is loaded yet.

        root None: flow metrics only. dimensions None: every dimension whose files are present, plus the flow
        metrics. Explicitly enabled dimensions with missing files: one MissingWeightsError listing every
        missing path. character_consistency: DimensionNotAvailableError (no implementation yet).
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
            weights=weights, before_forward=before_forward, keep_loaded=keep_loaded, builders=builders,
        )

    def __repr__(self) -> str:
        return f"AnimeReward(dimensions={list(self.dimensions)}, loaded={list(self._loaded)}, root={self.root})"

    # -- loading -------------------------------------------------------------------------------------------

    def scorer(self, name: str) -> nn.Module:
        """The scorer module of an enabled dimension, built on first use (weights read then)."""
        with self._lock:
            module = self._loaded.get(name)
            if module is not None:
                return module
            if name not in self.dimensions:
                _check_enabled([name])
                raise ValueError(f"{name} is not enabled in this AnimeReward; enabled: {list(self.dimensions)}")
            module = self._build(name)
            self._loaded[name] = module
            return module

    def _build(self, name: str) -> nn.Module:
        builder = self.builders.get(name) or builder_of(name)
        kwargs: dict[str, Any] = {"dtype": self.dtype, "device": self.device}
        if self.quantization is not None and self.quantization in DIMENSIONS[name].quantizations:
            kwargs["quantization"] = self.quantization
        log.info("loading %s from %s", name, self.paths.get(name, "(no weights)"))
        module = builder(name, self.paths.get(name), **kwargs)
        if getattr(module, "name", name) != name:
            raise RuntimeError(f"the builder for {name} returned a scorer named {module.name!r}")
        return module

    def loaded(self) -> dict[str, nn.Module]:
        """The scorers currently built (a copy: changing it changes nothing)."""
        with self._lock:
            return dict(self._loaded)

    def release(self, name: str | None = None) -> None:
        """Drop a scorer's weights (all scorers when name is None); the next use loads them again."""
        with self._lock:
            names = list(self._loaded) if name is None else [name]
            for n in names:
                if n not in self.dimensions:
                    _check_enabled([n])
                    raise ValueError(f"{n} is not enabled in this AnimeReward; enabled: {list(self.dimensions)}")
                self._loaded.pop(n, None)
        if names and torch.cuda.is_available():
            torch.cuda.empty_cache()

    # -- scoring -------------------------------------------------------------------------------------------

    def score(
        self,
        frames: Any,
        prompt: str | None = None,
        first_frame: Any = None,
        weights: Mapping[str, float] | None = None,
        *,
        dimensions: Sequence[str] | None = None,
    ) -> RewardScores:
        """Score one clip [T,H,W,C] (tensor, array or list of frames); see clip_validation for what is accepted."""
        if isinstance(prompt, (list, tuple)):
            raise ValueError("prompt: one clip takes one prompt string; use score_batch for several clips")
        raw = [cv.as_clip(frames, "frames")]
        prompts = cv.prompt_list(prompt, 1, "prompt")
        firsts = [None if first_frame is None else cv.as_image(first_frame, "first_frame")]
        return self._score(raw, prompts, firsts, weights, dimensions, "prompt", "first_frame")[0]

    def score_batch(
        self,
        clips: Any,
        prompts: str | Sequence[str | None] | None = None,
        first_frames: Any = None,
        weights: Mapping[str, float] | None = None,
        progress: Callable[[str, int, int], None] | None = None,
        should_stop: Callable[[], None] | None = None,
        batch_size: int = 8,
        *,
        dimensions: Sequence[str] | None = None,
    ) -> list[RewardScores]:
        """Score N clips (a list of [T,H,W,C], or one [N,T,H,W,C]); clips may differ in length and size.

        prompts: one string for all clips or one per clip. first_frames: one image for all, or one per clip.
        dimensions: a subset of the enabled dimensions for this call. progress(dimension, done, total) after
        each chunk; should_stop() before each chunk and, through `cancel.check`, inside long loops and between
        the layers of a forward (it may raise to cancel; nothing catches it).
        """
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size: expected an integer >= 1, got {batch_size!r}")
        raw = cv.clip_list(clips, "clips")
        prompt_items = cv.prompt_list(prompts, len(raw), "prompts")
        firsts = cv.first_frame_list(first_frames, len(raw), "first_frames")
        return self._score(raw, prompt_items, firsts, weights, dimensions, "prompts", "first_frames",
                           progress=progress, should_stop=should_stop, batch_size=batch_size)

    def _score(
        self,
        raw: list[cv.RawClip],
        prompts: list[str | None],
        firsts: list[torch.Tensor | None],
        weights: Mapping[str, float] | None,
        dimensions: Sequence[str] | None,
        prompt_arg: str,
        first_arg: str,
        progress: Callable[[str, int, int], None] | None = None,
        should_stop: Callable[[], None] | None = None,
        batch_size: int = 8,
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
        plans = {d: frame_plan(d) for d in dims}
        unique_plans = list({id(p): p for p in plans.values()}.values())
        clips = [cv.validate_clip(c, unique_plans) for c in raw]
        frame_cache = cv.FrameCache(clips, FRAME_CACHE_BYTES)
        n = len(clips)
        scores: list[dict[str, float]] = [{} for _ in range(n)]
        extras: list[dict[str, dict[str, float]]] = [{} for _ in range(n)]
        chunks = [(d, slice(s, min(n, s + batch_size))) for d in dims for s in range(0, n, batch_size)]

        def batch_of(k: int) -> ClipBatch:
            d, sl = chunks[k]
            return ClipBatch(frames=[frame_cache.frames(i, plans[d]) for i in range(sl.start, sl.stop)],
                             prompts=prompts[sl], first_frames=firsts[sl])

        if self.prefetch not in (True, False, "auto"):
            raise ValueError(f"prefetch: expected True, False or 'auto', got {self.prefetch!r}")
        ahead = _Prefetch() if self.prefetch and len(chunks) > 1 else None
        try:
            with torch.no_grad(), cancel.scope(should_stop):  # long loops inside check it too
                for k, (d, sl) in enumerate(chunks):
                    if should_stop is not None:
                        should_stop()
                    module = self.scorer(d)
                    if self.before_forward is not None:
                        self.before_forward(d, module)
                    inputs = ahead.take(k, module) if ahead is not None else None
                    if inputs is None:
                        inputs = module.preprocess(batch_of(k))
                    last_of_dim = k + 1 == len(chunks) or chunks[k + 1][0] != d
                    overlap = self.prefetch is True or _runs_off_cpu(module)
                    if ahead is not None and overlap and k + 1 < len(chunks) and (self.keep_loaded or not last_of_dim):
                        ahead.start(k + 1, self.scorer(chunks[k + 1][0]), batch_of(k + 1))
                    values, info = self._forward(d, module, inputs, sl.stop - sl.start)
                    for i, v in enumerate(values):
                        scores[sl.start + i][d] = v
                        if info[i]:
                            extras[sl.start + i][d] = info[i]
                    if progress is not None:
                        progress(d, sl.stop, n)
                    if last_of_dim and not self.keep_loaded:
                        self.release(d)
                    del module, inputs
        finally:
            if ahead is not None:
                ahead.close()  # waits for a preprocess in flight, so nothing lands in the memo after forget
            if not self.keep_loaded:
                self.release()  # also when a chunk failed or was cancelled midway through a dimension
            clip_memo.forget()  # also on Cancel: the memo keeps frame tensors alive
            frame_cache.clear()
        results = []
        for i in range(n):
            total = float(sum(norm[d] * scores[i][d] for d in dims))
            results.append(RewardScores(scores=scores[i], weights=dict(norm), total=total, extras=extras[i]))
        return results

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

    def _forward(self, name: str, module: nn.Module, inputs: Mapping[str, Any], n: int
                 ) -> tuple[list[float], list[dict[str, float]]]:
        """The scorer's forward on preprocessed inputs, with the contract checks (Cancel: between layers)."""
        with cancel.forward_checks(module):
            out = module(**inputs)
        if not isinstance(out, torch.Tensor) or out.shape != (n,):
            shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
            raise RuntimeError(f"{name}: the scorer returned {shape} for {n} clips; the contract is a tensor [N]")
        values = out.detach().float().cpu()
        if not bool(torch.isfinite(values).all()):
            bad = (~torch.isfinite(values)).nonzero().flatten().tolist()
            raise RuntimeError(f"{name}: non-finite score for clip(s) {bad} of this chunk (a scorer bug)")
        values = values.clamp(0.0, 1.0)  # the contract; guards float rounding just past the ends
        return values.tolist(), _extras(name, module, inputs, n)


def _placement(module: nn.Module) -> tuple[torch.device, torch.dtype] | None:
    """Where a scorer's inputs must go: its first parameter's device and dtype (None without parameters)."""
    p = next(module.parameters(), None)
    return None if p is None else (p.device, p.dtype)


PREFETCH_ENV = "ANIMEREWARD_PREFETCH"
_PREFETCH_VALUES: dict[str, bool | str] = {"auto": "auto", "on": True, "off": False}


def prefetch_default() -> bool | str:
    """`AnimeReward.prefetch` for new instances: $ANIMEREWARD_PREFETCH = auto (default), on or off."""
    value = os.environ.get(PREFETCH_ENV, "auto").strip().lower() or "auto"
    if value not in _PREFETCH_VALUES:
        log.warning("%s=%r is not one of %s; using auto", PREFETCH_ENV, value, list(_PREFETCH_VALUES))
        return "auto"
    return _PREFETCH_VALUES[value]


def _runs_off_cpu(module: nn.Module) -> bool:
    """True when the scorer's forward runs on an accelerator, leaving the CPU free for preprocessing."""
    placement = _placement(module)
    return placement is not None and placement[0].type != "cpu"


class _Prefetch:
    """Preprocesses the next chunk on a helper thread while the current chunk's forward runs.

    Preprocessing (uint8 conversion, PIL resizes, tokenising, DIS flow) is CPU work that mostly releases the
    GIL; a forward keeps the GPU, or the CPU's matrix units, busy. Overlapping the two is the classic input
    pipeline. The prefetched inputs are used only if the module is still where it was (same device and dtype)
    after `before_forward`: ComfyUI's model management may move it in between, and then the chunk is
    preprocessed again on the calling thread (the per-clip work comes from clip_memo, so little is redone).
    """

    def __init__(self) -> None:
        from concurrent.futures import ThreadPoolExecutor

        self.pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="animereward-prefetch")
        self.pending: tuple[int, Any, Any] | None = None  # (chunk, placement at submit, future)
        self.inference = torch.is_inference_mode_enabled()

    def start(self, k: int, module: nn.Module, batch: ClipBatch) -> None:
        def run() -> Any:
            # grad modes are per thread: keep the caller's (ComfyUI runs nodes under inference_mode)
            with torch.inference_mode() if self.inference else torch.no_grad():
                return module.preprocess(batch)

        self.pending = (k, _placement(module), self.pool.submit(run))

    def take(self, k: int, module: nn.Module) -> Any:
        """The prefetched inputs of chunk k (re-raising its error), or None when there are none to use."""
        if self.pending is None or self.pending[0] != k:
            return None
        _, placement, future = self.pending
        self.pending = None
        inputs = future.result()
        return inputs if _placement(module) == placement else None

    def close(self) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)


def _extras(name: str, module: nn.Module, inputs: Mapping[str, torch.Tensor], n: int) -> list[dict[str, float]]:
    """Per-clip details worth keeping next to the score (see RewardScores)."""
    out: list[dict[str, float]] = [{} for _ in range(n)]
    raw = getattr(module, "last_raw_scores", None)
    if isinstance(raw, torch.Tensor) and raw.numel() == n:
        for i, v in enumerate(raw.detach().float().cpu().tolist()):
            if math.isfinite(v):
                out[i]["raw_score"] = v
    # A scorer whose `stats` input holds named per-clip measurements (columns named by its `stats_names`).
    names = getattr(module, "stats_names", None)
    stats = inputs.get("stats")
    if names and isinstance(stats, torch.Tensor) and stats.shape == (n, len(names)):
        for i, row in enumerate(stats.detach().float().cpu().tolist()):
            out[i].update({str(k): v for k, v in zip(names, row, strict=False) if math.isfinite(v)})
    return out


def _official_rel(dimension: str) -> str:
    files = DIMENSIONS[dimension].files
    return files.official if files is not None else dimension


def builder_of(name: str) -> Builder:
    """The registry's scorer builder of a dimension (its module is imported now, on first use)."""
    scorer = DIMENSIONS[name].scorer
    if scorer is None:
        raise DimensionNotAvailableError(not_available_message(name))
    if callable(scorer):
        return scorer
    module = importlib.import_module(scorer, __package__ if scorer.startswith(".") else None)
    return module.build_scorer


def _check_enabled(dims: Sequence[str]) -> None:
    """Known names, and no dimension that has a name but no implementation yet."""
    check_dimension_names(list(dims))
    for d in dims:
        if not DIMENSIONS[d].available:
            raise DimensionNotAvailableError(not_available_message(d))
