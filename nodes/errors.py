"""Errors shown to the artist: which node, which input, what is wrong, how to fix it."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager


class NodeInputError(ValueError):
    def __init__(self, node: str, input_name: str, problem: str, fix: str | None = None) -> None:
        msg = f"{node}: input '{input_name}': {problem}"
        if fix:
            msg += f" Fix: {fix}"
        super().__init__(msg)
        self.node, self.input_name = node, input_name


@contextmanager
def from_library(node: str) -> Iterator[None]:
    """Prefix the node's name to the library's errors (which already name the input or file and the fix):
    ValueErrors, missing files, and checkpoints that cannot be read. Cancel passes untouched."""
    from ..animereward.checkpoints import CheckpointError

    try:
        yield
    except NodeInputError:
        raise
    except (ValueError, FileNotFoundError, CheckpointError) as e:
        raise ValueError(f"{node}: {e}") from e
