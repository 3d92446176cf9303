"""The six AnimeReward dimensions and the two weight-free flow metrics: one name per concept.

Our names are used everywhere (Python, JSON, web front, docs); the official key names of
`reward_infer.py` stay available so results can be compared with the official code.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Dimension:
    name: str
    official_key: str | None
    group: str  # "appearance", "consistency" or "flow"
    needs_prompt: bool = False
    needs_first_frame: bool = False
    needs_weights: bool = True


DIMENSIONS: dict[str, Dimension] = {
    d.name: d
    for d in (
        Dimension("visual_smoothness", "visual_smooth", "appearance", needs_prompt=True),
        Dimension("visual_motion", "visual_motion", "appearance"),
        Dimension("visual_appeal", "visual_quality", "appearance", needs_prompt=True),
        Dimension("text_video_consistency", "text-video_consist", "consistency", needs_prompt=True),
        Dimension("image_video_consistency", "img-video_consist", "consistency", needs_first_frame=True),
        Dimension("character_consistency", "character_consist", "consistency"),
        Dimension("flow_smoothness", None, "flow", needs_weights=False),
        Dimension("flow_motion", None, "flow", needs_weights=False),
    )
}

ANIMEREWARD_DIMENSIONS: tuple[str, ...] = tuple(n for n, d in DIMENSIONS.items() if d.needs_weights)
FLOW_DIMENSIONS: tuple[str, ...] = tuple(n for n, d in DIMENSIONS.items() if not d.needs_weights)
OFFICIAL_TO_OURS: dict[str, str] = {d.official_key: n for n, d in DIMENSIONS.items() if d.official_key}

# Where the official weights are published (for error messages that tell the user what to fetch).
WEIGHTS_SOURCE = "Hugging Face hub repo IndexTeam/Index-anisora, folder reward/ (weights/, IP_checkpoints/)"


def check_dimension_names(names: list[str] | tuple[str, ...]) -> None:
    unknown = [n for n in names if n not in DIMENSIONS]
    if unknown:
        raise ValueError(f"unknown AnimeReward dimension(s) {unknown}; known: {list(DIMENSIONS)}")
