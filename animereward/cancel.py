"""Cancel inside long work: one stop check that every long loop of the library can call.

The facade's `should_stop` (in ComfyUI: the Cancel button's check) used to run only between chunks, and a
chunk of 8 clips through a CPU model can take half a minute. Passing the callback down every call chain
would touch every scorer's signature, so the facade opens a `scope(should_stop)` for the duration of a
scoring call and the long loops (DIS flow pairs, per-frame resizes, each submodule of a scorer's forward
through `forward_checks`) call `check()`, which is a no-op outside a scope.

A scope latches: once `should_stop` has raised, every later `check()` in any thread re-raises that exception.
ComfyUI's check clears its flag when it raises, so without the latch a Cancel seen first by a helper thread
(prefetch, PIL pool) could be lost to the thread that has to stop. Checks are throttled to one call of
`should_stop` per `INTERVAL` seconds per scope.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from torch import nn

INTERVAL = 0.01  # seconds between two calls of should_stop (a check costs ~1 µs when throttled)


class _Scope:
    def __init__(self, should_stop: Callable[[], None]) -> None:
        self.should_stop = should_stop
        self.raised: BaseException | None = None
        self.last = 0.0
        self.lock = threading.Lock()

    def check(self) -> None:
        if self.raised is not None:
            raise self.raised
        now = time.monotonic()
        if now - self.last < INTERVAL:
            return
        with self.lock:
            if self.raised is not None:
                raise self.raised
            self.last = now
            try:
                self.should_stop()
            except BaseException as exc:  # Cancel is a BaseException on current ComfyUI
                self.raised = exc
                raise


_ACTIVE: list[_Scope] = []


@contextmanager
def scope(should_stop: Callable[[], None] | None) -> Iterator[None]:
    """Make `should_stop` what `check()` calls until the block ends (nothing when it is None)."""
    if should_stop is None:
        yield
        return
    entry = _Scope(should_stop)
    _ACTIVE.append(entry)
    try:
        yield
    finally:
        _ACTIVE.remove(entry)


def check() -> None:
    """Raise if the innermost active scope's should_stop raises (or already has); else return at once."""
    if _ACTIVE:
        _ACTIVE[-1].check()


@contextmanager
def forward_checks(module: nn.Module) -> Iterator[None]:
    """Call `check()` before each submodule's forward while the block runs: a forward that takes seconds
    (a CPU transformer) stops within one layer's time. Nothing is installed outside a scope."""
    if not _ACTIVE:
        yield
        return
    handles = [m.register_forward_pre_hook(lambda *_: check()) for m in module.modules()]
    try:
        yield
    finally:
        for h in handles:
            h.remove()
