"""Per-call results keyed by a clip's frame tensor, so scorers of one call derive shared inputs once.

Several dimensions read the same thing off the same frames: the uint8 official sample (every model), the
official `img_all` (ActionCLIP and both BLIP models), the Idefics2 pixel values (both regression models) and
the DIS flow statistics (both flow metrics). The facade hands every scorer the same tensor objects and calls
`forget()` after each call, so each of these is computed once per clip and call.

Keys are the tensor object (its id, checked against the kept reference) and its in-place version counter,
so a tensor modified in place is never served a stale result. Inference tensors (ComfyUI runs nodes under
`torch.inference_mode()`) keep no counter; for those the memo relies on `forget()` at the end of each call.

Memory is bounded: entries are dropped oldest first past `MAX_BYTES` (then recomputed if asked again), so a
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

_lock = threading.Lock()
_items: OrderedDict[tuple[int, Hashable], tuple[torch.Tensor, int, Any, int]] = OrderedDict()
_bytes = 0


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


def memoised(frames: torch.Tensor, kind: Hashable, compute: Callable[[], T]) -> T:
    """`compute()` once per (frames object, unmodified, kind) until `forget()`; callers must not modify
    the result in place. Thread-safe; two threads asking for the same missing entry may both compute it."""
    global _bytes
    key = (id(frames), kind)
    version = _version(frames)
    with _lock:
        hit = _items.get(key)
        if hit is not None and hit[0] is frames and hit[1] == version:
            return hit[2]
    value = compute()
    size = nbytes(value)
    with _lock:
        old = _items.pop(key, None)
        if old is not None:
            _bytes -= old[3]
        if size <= MAX_BYTES:
            while _items and _bytes + size > MAX_BYTES:
                _bytes -= _items.popitem(last=False)[1][3]
            _items[key] = (frames, version, value, size)
            _bytes += size
    return value


def forget() -> None:
    """Drop every entry (and the frame tensors they keep alive); the facade calls it after each call."""
    global _bytes
    with _lock:
        _items.clear()
        _bytes = 0


def size() -> tuple[int, int]:
    """(entries, bytes) held now."""
    with _lock:
        return len(_items), _bytes
