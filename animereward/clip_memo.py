"""One scoring call's memo of per-clip results, so the scorers of that call derive shared inputs once.

Several dimensions read the same thing off the same frames: the uint8 official sample (every model), the
official `img_all` (ActionCLIP and both BLIP models), the Idefics2 pixel values (both regression models) and
the DIS flow statistics (both flow metrics). The facade makes one `ClipMemo` per call and hands it, with the
same frame tensor objects, to every scorer of the call (`ClipBatch.memo`), so each of these is computed once
per clip and call; the memo is dropped with the call. It is an object of the call, not module state: two
calls (two threads, two AnimeReward instances) never see or clear each other's entries.

Keys are the tensor object (its id, checked against the kept reference) and its in-place version counter,
so a tensor modified in place is never served a stale result. Inference tensors (ComfyUI runs nodes under
`torch.inference_mode()`) keep no counter; for those the memo relies on living no longer than the call.

Memory is bounded: entries are dropped oldest first past `max_bytes` (then recomputed if asked again), so a
large best-of-N batch costs time, never unbounded memory.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Any, TypeVar

import numpy as np
import torch

T = TypeVar("T")

MAX_BYTES = 2 * 1024**3


def _version(t: torch.Tensor) -> int:
    return -1 if t.is_inference() else t._version


def nbytes(value: Any) -> int:
    """Bytes held by a result: tensors and arrays, also inside tuples, lists, dicts and objects' fields."""
    if isinstance(value, torch.Tensor):
        return value.numel() * value.element_size()
    if isinstance(value, np.ndarray):
        return int(value.nbytes)
    if isinstance(value, (tuple, list)):
        return sum(nbytes(v) for v in value)
    if isinstance(value, dict):
        return sum(nbytes(v) for v in value.values())
    fields = getattr(value, "__dict__", None)
    return sum(nbytes(v) for v in fields.values()) if isinstance(fields, dict) else 0


class ClipMemo:
    """Results keyed by (frames object, unmodified, kind); thread-safe (the prefetch thread shares it)."""

    def __init__(self, max_bytes: int = MAX_BYTES) -> None:
        self.max_bytes = max_bytes
        self._lock = threading.Lock()
        self._items: OrderedDict[tuple[int, Hashable], tuple[torch.Tensor, int, Any, int]] = OrderedDict()
        self._bytes = 0

    def get(self, frames: torch.Tensor, kind: Hashable, compute: Callable[[], T]) -> T:
        """`compute()` once per (frames object, unmodified, kind) until `forget()`; callers must not modify
        the result in place. Two threads asking for the same missing entry may both compute it."""
        key = (id(frames), kind)
        version = _version(frames)
        with self._lock:
            hit = self._items.get(key)
            if hit is not None and hit[0] is frames and hit[1] == version:
                return hit[2]
        value = compute()
        size = nbytes(value)
        with self._lock:
            old = self._items.pop(key, None)
            if old is not None:
                self._bytes -= old[3]
            if size <= self.max_bytes:
                while self._items and self._bytes + size > self.max_bytes:
                    self._bytes -= self._items.popitem(last=False)[1][3]
                self._items[key] = (frames, version, value, size)
                self._bytes += size
        return value

    def forget(self) -> None:
        """Drop every entry (and the frame tensors they keep alive)."""
        with self._lock:
            self._items.clear()
            self._bytes = 0

    def size(self) -> tuple[int, int]:
        """(entries, bytes) held now."""
        with self._lock:
            return len(self._items), self._bytes


def memoised(memo: ClipMemo | None, frames: torch.Tensor, kind: Hashable, compute: Callable[[], T]) -> T:
    """`memo.get(...)`, or just `compute()` without a memo (a preprocessing function called on its own)."""
    return compute() if memo is None else memo.get(frames, kind, compute)
