"""AnimeReward: score anime clips on the six AnimeReward dimensions and two weight-free flow metrics.

`import animereward` imports nothing heavy: the public names below resolve on first access (module
`__getattr__`), and the model code (transformers, OpenCV) loads only when a scorer is first built. ComfyUI
imports the pack at start-up, so this keeps start-up cheap.

    from animereward import AnimeReward
    reward = AnimeReward.from_folder("models/animereward/reward")   # finds the files, loads nothing
    result = reward.score(frames, prompt="...", first_frame=image)  # frames: [T,H,W,3] in 0..1
    result.total, result.scores, result.to_json()
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

# public name -> submodule that defines it
_EXPORTS: dict[str, str] = {
    "AnimeReward": "reward",
    "RewardScores": "scores",
    "resolve_weights": "scores",
    "rank": "scores",
    "Hooks": "hooks",
    "CallbackHooks": "hooks",
    "BatchShape": "hooks",
    "register": "dimensions",
    "ClipBatch": "scorer_protocol",
    "DIMENSIONS": "dimensions",
    "ANIMEREWARD_DIMENSIONS": "dimensions",
    "FLOW_DIMENSIONS": "dimensions",
    "OFFICIAL_TO_OURS": "dimensions",
    "WEIGHTS_SOURCE": "dimensions",
    "available_dimensions": "weights_layout",
    "locate": "weights_layout",
    "missing_files": "weights_layout",
    "MissingWeightsError": "weights_layout",
    "DimensionNotAvailableError": "weights_layout",
    "ClipInputError": "clip_validation",
    "ClipValueWarning": "clip_validation",
}

__all__ = [
    "ANIMEREWARD_DIMENSIONS",
    "DIMENSIONS",
    "FLOW_DIMENSIONS",
    "OFFICIAL_TO_OURS",
    "WEIGHTS_SOURCE",
    "AnimeReward",
    "BatchShape",
    "CallbackHooks",
    "ClipBatch",
    "ClipInputError",
    "ClipValueWarning",
    "DimensionNotAvailableError",
    "Hooks",
    "MissingWeightsError",
    "RewardScores",
    "available_dimensions",
    "locate",
    "missing_files",
    "rank",
    "register",
    "resolve_weights",
]

if TYPE_CHECKING:  # for type checkers and IDEs only; never executed
    from .clip_validation import ClipInputError, ClipValueWarning
    from .dimensions import (
        ANIMEREWARD_DIMENSIONS,
        DIMENSIONS,
        FLOW_DIMENSIONS,
        OFFICIAL_TO_OURS,
        WEIGHTS_SOURCE,
        register,
    )
    from .hooks import BatchShape, CallbackHooks, Hooks
    from .reward import AnimeReward
    from .scorer_protocol import ClipBatch
    from .scores import RewardScores, rank, resolve_weights
    from .weights_layout import (
        DimensionNotAvailableError,
        MissingWeightsError,
        available_dimensions,
        locate,
        missing_files,
    )


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
