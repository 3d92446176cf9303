"""The one protocol between a scoring call and whoever runs it (the ComfyUI nodes, a script, a benchmark).

Passed the same way to every call (`score(..., hooks=...)`, `score_batch(..., hooks=...)`):
- `before_forward(dimension, module, shape)`: before each chunk is preprocessed and run. The ComfyUI layer lets
  model management place the module here and asks for working memory estimated from `shape`; a hook may move
  or cast the module (inputs follow it).
- `progress(dimension, done, total)`: after each chunk (clips of this dimension done so far, of `total`).
- `should_stop()`: before each chunk; raise to cancel (nothing in the library catches it).

Subclass `Hooks` and override what you need; `CallbackHooks` wraps plain functions.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from torch import nn


@dataclass(frozen=True)
class BatchShape:
    """What one forward is about to process: `clips` clips of at most `frames` frames of `height`×`width`
    (the frames the dimension reads, at their input size; the scorer resizes them itself)."""

    clips: int
    frames: int
    height: int
    width: int

    @property
    def total_frames(self) -> int:
        return self.clips * self.frames


class ScoringHooks(Protocol):
    def before_forward(self, dimension: str, module: nn.Module, shape: BatchShape) -> None: ...

    def progress(self, dimension: str, done: int, total: int) -> None: ...

    def should_stop(self) -> None: ...


class Hooks:
    """Does nothing; the default, and a base class for hooks that need only some of the three."""

    def before_forward(self, dimension: str, module: nn.Module, shape: BatchShape) -> None:
        pass

    def progress(self, dimension: str, done: int, total: int) -> None:
        pass

    def should_stop(self) -> None:
        pass


@dataclass
class CallbackHooks(Hooks):
    """Hooks from plain functions (any of them may be left out)."""

    on_before_forward: Callable[[str, nn.Module, BatchShape], None] | None = None
    on_progress: Callable[[str, int, int], None] | None = None
    on_should_stop: Callable[[], None] | None = None

    def before_forward(self, dimension: str, module: nn.Module, shape: BatchShape) -> None:
        if self.on_before_forward is not None:
            self.on_before_forward(dimension, module, shape)

    def progress(self, dimension: str, done: int, total: int) -> None:
        if self.on_progress is not None:
            self.on_progress(dimension, done, total)

    def should_stop(self) -> None:
        if self.on_should_stop is not None:
            self.on_should_stop()


NO_HOOKS = Hooks()
