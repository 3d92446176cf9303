"""Errors shown to the artist: which node, which input, what is wrong, how to fix it."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any


class NodeInputError(ValueError):
    def __init__(self, node: str, input_name: str, problem: str, fix: str | None = None) -> None:
        msg = f"{node}: input '{input_name}': {problem}"
        if fix:
            msg += f" Fix: {fix}"
        super().__init__(msg)
        self.node, self.input_name = node, input_name


def node_names(message: str, clip_input: str = "frames", one_clip: bool = True) -> str:
    """The library's argument names (`clips[0]`, `first_frames[2]`, `prompts`) as the node's inputs
    (`frames`, `first_frame (image 2)`, `prompt`), so an error points at a socket the artist can see."""
    def clip(m: re.Match[str]) -> str:
        return clip_input if one_clip else f"{clip_input} (candidate {m.group(1)})"

    message = re.sub(r"\bclips\[(\d+)\]", clip, message)
    message = re.sub(r"\bfirst_frames\[(\d+)\]", r"first_frame (image \1)", message)
    message = re.sub(r"\bfirst_frames\b", "first_frame", message)
    return re.sub(r"\bprompts\b", "prompt", message)


@contextmanager
def from_library(node: str, clip_input: str | None = None, one_clip: bool = True) -> Iterator[None]:
    """Prefix the node's name to the library's errors (which already name the input or file and the fix):
    ValueErrors, missing files, and checkpoints that cannot be read. Cancel passes untouched.
    clip_input: the node scores clips; the library's argument names become the node's input names."""
    from ..animereward.checkpoints import CheckpointError

    try:
        yield
    except NodeInputError:
        raise
    except (ValueError, FileNotFoundError, CheckpointError) as e:
        text = str(e) if clip_input is None else node_names(str(e), clip_input, one_clip)
        raise ValueError(f"{node}: {text}") from e


def blocked(message: str) -> Any:
    """What an output carries when it has no value: ComfyUI's ExecutionBlocker, so a node connected to it does
    not run and the page shows `message` (a number such as -1.0 would flow on unnoticed)."""
    from comfy_execution.graph_utils import ExecutionBlocker

    return ExecutionBlocker(message)
