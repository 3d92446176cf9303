"""What the Score and Best-of-N nodes share: input checks, weights, progress, Cancel, the UI payload."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import torch

from .errors import NodeInputError, from_library
from .reward_handle import NodeHooks, RewardHandle

if TYPE_CHECKING:
    from ..animereward.scores import RewardScores

log = logging.getLogger("AnimeReward")

# What to connect when a dimension lacks an input (the registry says which inputs a dimension reads).
CONNECT = {
    "prompt": "connect the text prompt used to generate the clip",
    "first_frame": "connect the start image of the image-to-video run",
}


def dimensions_for_inputs(node: str, handle: RewardHandle, prompt: str | None, first_frame: Any,
                          skip_unusable: bool) -> tuple[list[str], list[str]]:
    """The dimensions to score given the inputs present, and warnings for those skipped.

    A dimension without an input it reads (prompt, first frame) is an error naming the input, unless
    `skip_unusable` is on: then it is skipped and the warning is shown on the node.
    """
    from ..animereward.clip_validation import missing_input

    dims, warnings = [], []
    for d in handle.dimensions:
        need = missing_input(d, prompt, first_frame)
        if need is None:
            dims.append(d)
        elif skip_unusable:
            warnings.append(f"{d} skipped: no {need}")
        else:
            raise NodeInputError(node, need, f"{d} is enabled but '{need}' is empty.",
                                 f"{CONNECT[need]}, switch {d} off in the loader, or turn on skip_unusable.")
    if not dims:
        raise NodeInputError(node, "reward", "no dimension can be scored with the inputs given.",
                             "; ".join(warnings))
    for w in warnings:
        log.warning("%s: %s", node, w)
    return dims, warnings


def weights_for(dims: Sequence[str], weights: dict[str, float] | None) -> dict[str, float] | None:
    """The Weights node's values for the dimensions being scored (None = equal weights)."""
    if weights is None:
        return None
    picked = {d: float(weights.get(d, 1.0)) for d in dims}
    return picked if any(w > 0 for w in picked.values()) else None


def first_frames_for(node: str, first_frame: torch.Tensor | None, n: int) -> torch.Tensor | None:
    """The first_frame input for n clips: None, one image [H,W,C] for every clip, or [n,H,W,C], one per clip
    in order (a batch whose size matches the candidates). Any other count is an error naming the input."""
    if first_frame is None:
        return None
    b = int(first_frame.shape[0]) if first_frame.ndim == 4 else 1
    if first_frame.ndim != 4:
        return first_frame
    if b == 1:
        return first_frame[0]
    if b == n:
        return first_frame
    what = "is an empty batch (0 images)" if b == 0 else f"holds {b} images for {n} clip{'s' if n > 1 else ''}"
    per = f", or {n} images (one per candidate, in order)" if n > 1 else ""
    raise NodeInputError(node, "first_frame", f"{what}.",
                         f"connect one start image (used for every clip){per}.")


def score_clips(node: str, handle: RewardHandle, clips: Sequence[torch.Tensor], dims: Sequence[str],
                prompt: str | None, first_frame: torch.Tensor | None,
                weights: dict[str, float] | None, node_id: str | None = None,
                clip_input: str = "frames") -> list[RewardScores]:
    """Batched scoring of all clips (chunks of the loader's batch_size) with a ProgressBar per clip and
    dimension, stoppable by Cancel (also inside a chunk: animereward.cancel), scorers placed by model
    management (NodeHooks). Errors name the node's inputs (`clip_input`, first_frame, prompt)."""
    hooks = NodeHooks(handle, list(dims), len(clips), node_id)
    with from_library(node, clip_input, one_clip=len(clips) == 1):
        return handle.reward.score_batch(
            list(clips), prompts=prompt, first_frames=first_frame, weights=weights_for(dims, weights),
            dimensions=list(dims), batch_size=handle.batch_size, hooks=hooks,
        )
