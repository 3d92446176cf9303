"""Runs one scoring call's work: every enabled dimension over every clip, in chunks, dimension-major.

Why it is shaped this way:
- Work is dimension-major: all clips go through one dimension (in chunks of `batch_size`, one batched forward
  per chunk) before the next is touched, so a model is loaded once per call, never once per clip.
- The hooks (hooks.py) run before each chunk: `should_stop` (also inside long loops and between the layers
  of a forward, through `cancel.check`), then `before_forward` with the chunk's shape (the
  ComfyUI layer lets model management place the module there; the scorers read their device from their
  parameters when preprocessing, so inputs follow a move), and `progress` after it.
- The next chunk is preprocessed on a helper thread while the current forward runs (`Prefetch`), when that
  forward runs off the CPU ("auto"), always (True) or never (False).
- Release policy: with `keep_loaded=False` each dimension's scorer is released after its last chunk, and
  every scorer when the call ends, also when it fails or is cancelled midway.
- One `ClipMemo` per call (clip_memo.py) is shared by every chunk of the call and dropped with it.

Frames each dimension reads (the registry's `Dimension.frames`): "official" = the official 24-frame sample
(DESIGN §2); "window" = every consecutive frame of the first min(T, 144) frames (the official 144-frame
window), so the flow metrics' cost is bounded for long clips and uneven sampling strides never look like jitter.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future
from dataclasses import dataclass

import torch
from torch import nn

from . import cancel
from . import clip_validation as cv
from .clip_memo import ClipMemo
from .dimensions import DIMENSIONS
from .hooks import BatchShape, CallbackHooks, Hooks, ScoringHooks
from .preprocess import MAX_LENGTH
from .scorer_cache import ScorerCache
from .scorer_protocol import ClipBatch

log = logging.getLogger(__name__)

FLOW_MAX_FRAMES = MAX_LENGTH
# Float32 frames kept between dimensions that read the same frames (see clip_validation.FrameCache).
FRAME_CACHE_BYTES = 2 * 1024**3

PREFETCH_ENV = "ANIMEREWARD_PREFETCH"
_PREFETCH_VALUES: dict[str, bool | str] = {"auto": "auto", "on": True, "off": False}


def flow_plan(num_frames: int) -> list[int]:
    """Consecutive frames of the official 144-frame window (the flow metrics measure frame-to-frame change)."""
    return list(range(min(num_frames, FLOW_MAX_FRAMES)))


def frame_plan(dimension: str) -> cv.FramePlan:
    """The original frame numbers a dimension reads, as a function of the clip length."""
    return flow_plan if DIMENSIONS[dimension].frames == "window" else cv.official_plan


def prefetch_default() -> bool | str:
    """`AnimeReward.prefetch` for new instances: $ANIMEREWARD_PREFETCH = auto (default), on or off."""
    value = os.environ.get(PREFETCH_ENV, "auto").strip().lower() or "auto"
    if value not in _PREFETCH_VALUES:
        log.warning("%s=%r is not one of %s; using auto", PREFETCH_ENV, value, list(_PREFETCH_VALUES))
        return "auto"
    return _PREFETCH_VALUES[value]


@dataclass
class ChunkResults:
    """Per clip: the score of each dimension that has one, the extras a scorer reported (see RewardScores),
    and why a dimension has no score for that clip (a scorer said so, e.g. no character in the clip)."""

    scores: list[dict[str, float]]
    extras: list[dict[str, dict[str, float]]]
    unscored: list[dict[str, str]]


def run_chunks(
    clips: Sequence[cv.ValidatedClip],
    prompts: Sequence[str | None],
    firsts: Sequence[torch.Tensor | None],
    dims: Sequence[str],
    *,
    scorers: ScorerCache,
    hooks: ScoringHooks,
    batch_size: int,
    prefetch: bool | str,
    keep_loaded: bool,
    settings: Mapping[str, object] | None = None,
) -> ChunkResults:
    """Score every clip on every dimension in `dims` (validated clips, inputs already checked); `settings`
    reach the scorers with each batch (ClipBatch.settings)."""
    if prefetch not in (True, False, "auto"):
        raise ValueError(f"prefetch: expected True, False or 'auto', got {prefetch!r}")
    plans = {d: frame_plan(d) for d in dims}
    frame_cache = cv.FrameCache(clips, FRAME_CACHE_BYTES)
    memo = ClipMemo()
    n = len(clips)
    scores: list[dict[str, float]] = [{} for _ in range(n)]
    extras: list[dict[str, dict[str, float]]] = [{} for _ in range(n)]
    unscored: list[dict[str, str]] = [{} for _ in range(n)]
    chunks = [(d, slice(s, min(n, s + batch_size))) for d in dims for s in range(0, n, batch_size)]

    def batch_of(k: int) -> ClipBatch:
        d, sl = chunks[k]
        return ClipBatch(frames=[frame_cache.frames(i, plans[d]) for i in range(sl.start, sl.stop)],
                         prompts=list(prompts[sl]), first_frames=list(firsts[sl]), memo=memo,
                         settings=dict(settings or {}))

    ahead = Prefetch() if prefetch and len(chunks) > 1 else None
    try:
        with torch.no_grad(), cancel.scope(stop_check(hooks)):  # long loops inside check it too
            for k, (d, sl) in enumerate(chunks):
                hooks.should_stop()
                module = scorers.get(d)
                batch = batch_of(k)
                hooks.before_forward(d, module, shape_of(batch))
                inputs = ahead.take(k, module) if ahead is not None else None
                if inputs is None:
                    inputs = module.preprocess(batch)
                last_of_dim = k + 1 == len(chunks) or chunks[k + 1][0] != d
                overlap = prefetch is True or runs_off_cpu(module)
                if ahead is not None and overlap and k + 1 < len(chunks) and (keep_loaded or not last_of_dim):
                    ahead.start(k + 1, scorers.get(chunks[k + 1][0]), batch_of(k + 1))
                values, info, reasons = forward(d, module, inputs, sl.stop - sl.start)
                for i, v in enumerate(values):
                    if v is None:
                        unscored[sl.start + i][d] = reasons[i] or "not scored"
                        continue
                    scores[sl.start + i][d] = v
                    if info[i]:
                        extras[sl.start + i][d] = info[i]
                hooks.progress(d, sl.stop, n)
                if last_of_dim and not keep_loaded:
                    scorers.release(d)
                del module, inputs, batch
    finally:
        if ahead is not None:
            ahead.close()  # waits for a preprocess in flight, so nothing lands in the memo after it is dropped
        if not keep_loaded:
            scorers.release()  # also when a chunk failed or was cancelled midway through a dimension
        memo.forget()  # the memo keeps frame tensors alive; also on Cancel
        frame_cache.clear()
    return ChunkResults(scores, extras, unscored)


def stop_check(hooks: ScoringHooks) -> Callable[[], None] | None:
    """The hooks' should_stop for the cancel scope, or None when they have none (then no scope is opened and
    no per-layer check is installed: a call without Cancel costs nothing for it)."""
    if isinstance(hooks, CallbackHooks):
        return hooks.on_should_stop
    if isinstance(hooks, Hooks) and type(hooks).should_stop is Hooks.should_stop:
        return None
    return hooks.should_stop


def shape_of(batch: ClipBatch) -> BatchShape:
    """The chunk's shape for the hooks: clips, and the most frames and the largest frame size among them."""
    frames = batch.frames
    return BatchShape(clips=len(frames), frames=max((int(f.shape[0]) for f in frames), default=0),
                      height=max((int(f.shape[1]) for f in frames), default=0),
                      width=max((int(f.shape[2]) for f in frames), default=0))


def forward(name: str, module: nn.Module, inputs: Mapping[str, torch.Tensor], n: int
            ) -> tuple[list[float | None], list[dict[str, float]], list[str | None]]:
    """The scorer's forward on preprocessed inputs, with the contract checks (Cancel: between layers).

    A scorer may leave a clip without a score (NaN) only when it says why: `last_reasons` (one str or None
    per clip of the chunk) names the reason for every NaN; the value is then None. Any other non-finite score
    is a scorer bug."""
    with cancel.forward_checks(module):
        out = module(**inputs)
    if not isinstance(out, torch.Tensor) or out.shape != (n,):
        shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise RuntimeError(f"{name}: the scorer returned {shape} for {n} clips; the contract is a tensor [N]")
    values = out.detach().float().cpu()
    reasons = list(getattr(module, "last_reasons", None) or [None] * n)
    if len(reasons) != n:
        raise RuntimeError(f"{name}: the scorer gave {len(reasons)} reasons for {n} clips")
    explained = torch.tensor([isinstance(r, str) for r in reasons], dtype=torch.bool)
    bad = ~torch.isfinite(values) & ~(torch.isnan(values) & explained)
    if bool(bad.any()):
        raise RuntimeError(f"{name}: non-finite score for clip(s) {bad.nonzero().flatten().tolist()} of this chunk "
                           "(a scorer bug)")
    clamped = values.clamp(0.0, 1.0).tolist()  # the contract; guards float rounding just past the ends
    result: list[float | None] = [None if isinstance(reasons[i], str) and torch.isnan(values[i]) else v
                                  for i, v in enumerate(clamped)]
    return result, extras_of(module, inputs, n), [r if result[i] is None else None for i, r in enumerate(reasons)]


def extras_of(module: nn.Module, inputs: Mapping[str, torch.Tensor], n: int) -> list[dict[str, float]]:
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


def placement(module: nn.Module) -> tuple[torch.device, torch.dtype] | None:
    """Where a scorer's inputs must go: its first parameter's device and dtype (None without parameters)."""
    p = next(module.parameters(), None)
    return None if p is None else (p.device, p.dtype)


def runs_off_cpu(module: nn.Module) -> bool:
    """True when the scorer's forward runs on an accelerator, leaving the CPU free for preprocessing."""
    where = placement(module)
    return where is not None and where[0].type != "cpu"


class Prefetch:
    """Preprocesses the next chunk on a helper thread while the current chunk's forward runs.

    Preprocessing (uint8 conversion, PIL resizes, tokenising, DIS flow) is CPU work that mostly releases the
    GIL; a forward keeps the GPU, or the CPU's matrix units, busy. Overlapping the two is the classic input
    pipeline. The prefetched inputs are used only if the module is still where it was (same device and dtype)
    after `before_forward`: ComfyUI's model management may move it in between, and then the chunk is
    preprocessed again on the calling thread (the per-clip work comes from the call's memo, so little is redone).
    """

    def __init__(self) -> None:
        from concurrent.futures import ThreadPoolExecutor

        self.pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="animereward-prefetch")
        self.pending: tuple[int, tuple[torch.device, torch.dtype] | None, Future] | None = None
        self.inference = torch.is_inference_mode_enabled()

    def start(self, k: int, module: nn.Module, batch: ClipBatch) -> None:
        def run() -> dict[str, torch.Tensor]:
            # grad modes are per thread: keep the caller's (ComfyUI runs nodes under inference_mode)
            with torch.inference_mode() if self.inference else torch.no_grad():
                return module.preprocess(batch)

        self.pending = (k, placement(module), self.pool.submit(run))

    def take(self, k: int, module: nn.Module) -> dict[str, torch.Tensor] | None:
        """The prefetched inputs of chunk k (re-raising its error), or None when there are none to use."""
        if self.pending is None or self.pending[0] != k:
            return None
        _, where, future = self.pending
        self.pending = None
        inputs = future.result()
        return inputs if placement(module) == where else None

    def close(self) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)
