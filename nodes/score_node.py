"""AnimeReward Score and AnimeReward Overlay nodes."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch
from comfy_api.latest import io

from .comfy_compat import check_interrupt
from .errors import NodeInputError, blocked
from .loader_node import appended_dimensions, leading_dimensions
from .score_display import scores_payload, show_scores
from .scoring import dimensions_for_inputs, first_frames_for, score_clips
from .types import AnimeRewardType, RewardWeightsType

if TYPE_CHECKING:
    from ..animereward.scores import RewardScores

POSITIONS = ["auto", "top-left", "top-right", "bottom-left", "bottom-right"]  # animereward.overlay.POSITIONS


def frames_from(node: str, frames: torch.Tensor | None, video: object | None) -> torch.Tensor:
    """IMAGE frames or a VIDEO's frames; exactly one of them must be connected."""
    if frames is not None and video is not None:
        raise NodeInputError(node, "frames", "both 'frames' and 'video' are connected.", "connect only one.")
    if video is not None:
        return video.get_components().images
    if frames is None:
        raise NodeInputError(node, "frames", "no clip connected.", "connect IMAGE frames or a VIDEO.")
    return frames


def not_scored(node: str, dimension: str, reward: Any, warnings: list[str],
               unscored: dict[str, str] | None = None) -> Any:
    """What an unscored dimension's FLOAT output carries: not a number a math node would use without complaint
    (it was -1.0), but ComfyUI's ExecutionBlocker: a node connected to it does not run, and the page shows why."""
    if unscored and dimension in unscored:  # scored, but this clip has no score (e.g. no character found)
        return blocked(f"{node}: output '{dimension}': this clip has no {dimension} score: {unscored[dimension]}. "
                       "The total counts the other dimensions. Fix: nothing to fix in the graph; take the wire "
                       "from this output away if a node must always run.")
    if dimension in getattr(reward, "skipped", {}):
        why = "its weights were not found when the loader ran"
    elif any(w.startswith(f"{dimension} skipped") for w in warnings):
        why = "its prompt or first frame is not connected (skip_unusable is on)"
    else:
        why = "it is switched off in the AnimeReward Loader"
    return blocked(f"{node}: output '{dimension}': {dimension} was not scored: {why}. "
                   f"Fix: switch it on and give it its weights, or take the wire from this output away.")


def dimension_output_tooltip(d: str) -> str:
    return (f"The {d} score, 0 to 1 (higher is better). Not scored (off, no weights, or no score for this clip, "
            "e.g. no character found): a node connected here is stopped with a message saying why.")


class AnimeRewardScore(io.ComfyNode):
    NODE_NAME = "AnimeReward Score"

    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="AnimeRewardScore",
            display_name=cls.NODE_NAME,
            category="AnimeReward",
            description="Scores one clip on every enabled AnimeReward dimension; shows the scores on the node.",
            inputs=[
                AnimeRewardType.Input("reward", tooltip="The judge from AnimeReward Loader (which dimensions, which weights folder)."),
                io.Image.Input("frames", optional=True, tooltip="The clip as IMAGE frames."),
                io.Video.Input("video", optional=True, tooltip="Or the clip as a VIDEO."),
                io.String.Input("prompt", multiline=True, default="", optional=True,
                                tooltip="The text prompt of the clip (needed by the text dimensions)."),
                io.Image.Input("first_frame", optional=True,
                               tooltip="The conditioning image (needed by image-video consistency)."),
                RewardWeightsType.Input("weights", optional=True,
                                  tooltip="Optional, from AnimeReward Weights: how much each dimension counts in "
                                          "the total. Unconnected: every scored dimension counts the same."),
                io.Boolean.Input("skip_unusable", default=False,
                                 tooltip="Skip, with a warning, dimensions whose input (prompt or first frame) "
                                         "is missing instead of failing."),
            ],
            outputs=[
                io.Float.Output("total", display_name="total",
                                tooltip="Weighted mean of the scored dimensions, 0 to 1 (higher is better)."),
                *[io.Float.Output(d, display_name=d, tooltip=dimension_output_tooltip(d)) for d in leading_dimensions()],
                io.String.Output("json", display_name="json",
                                 tooltip="Every score, the weights, and why a dimension has no score (unscored), "
                                         "as JSON: for AnimeReward Overlay, or a text node to read them."),
                *[io.Float.Output(d, display_name=d, tooltip=dimension_output_tooltip(d))
                  for d in appended_dimensions()],
            ],
            hidden=[io.Hidden.unique_id],
            is_output_node=True,
        )

    @classmethod
    def validate_inputs(cls, skip_unusable: object = None) -> bool | str:
        """Before the run: the prompt and first frame the loaded dimensions read (see graph_checks)."""
        from .graph_checks import missing_input_problem

        return missing_input_problem(cls.NODE_NAME, getattr(cls.hidden, "unique_id", None), skip_unusable) or True

    @classmethod
    def execute(cls, reward, frames=None, video=None, prompt: str = "", first_frame=None, weights=None,
                skip_unusable: bool = False) -> io.NodeOutput:
        clip = frames_from(cls.NODE_NAME, frames, video)
        key = first_frames_for(cls.NODE_NAME, first_frame, 1)
        dims, warnings = dimensions_for_inputs(cls.NODE_NAME, reward, prompt, key, skip_unusable)
        result = score_clips(cls.NODE_NAME, reward, [clip], dims, prompt or None, key, weights,
                             node_id=cls.hidden.unique_id, clip_input="video" if video is not None else "frames")[0]
        def output(d: str) -> Any:
            if d in result.scores:
                return float(result.scores[d])
            return not_scored(cls.NODE_NAME, d, reward, warnings, result.unscored)

        if result.total is None:
            total: Any = blocked(f"{cls.NODE_NAME}: output 'total': no dimension with a weight has a score for this "
                                 f"clip ({'; '.join(f'{d}: {w}' for d, w in result.unscored.items())}). Fix: enable "
                                 "another dimension, or give one that has a score a weight above 0.")
        else:
            total = float(result.total)
        show_scores(cls.hidden.unique_id, scores_payload(reward.skipped, [result], warnings))
        return io.NodeOutput(total, *map(output, leading_dimensions()), result.to_json(),
                             *map(output, appended_dimensions()))


class AnimeRewardOverlay(io.ComfyNode):
    NODE_NAME = "AnimeReward Overlay"

    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="AnimeRewardOverlay",
            display_name=cls.NODE_NAME,
            category="AnimeReward",
            description="Draws a score panel (a bar per dimension and the total) on every frame.",
            inputs=[
                io.Image.Input("frames", tooltip="The clip to draw the panel on (the clip that was scored)."),
                io.String.Input("scores_json", force_input=True,
                                tooltip="The json output of AnimeReward Score (or one clip of Best-of-N's)."),
                io.Combo.Input("position", options=POSITIONS, default="auto",
                               tooltip="Corner of the score panel; auto picks the corner where the clip shows least "
                                       "(flat background rather than the character)."),
                io.Float.Input("opacity", default=0.85, min=0.0, max=1.0, step=0.05,
                               tooltip="0 invisible … 1 opaque; 0.85 keeps the picture faintly visible under "
                                       "the panel."),
                io.Int.Input("clip_index", default=0, min=0, max=4096,
                             tooltip="Which clip of a Best-of-N json to draw (ignored for Score's json)."),
            ],
            outputs=[io.Image.Output("scored_frames", display_name="scored_frames",
                                     tooltip="The clip with the score panel drawn on every frame.")],
        )

    @classmethod
    def execute(cls, frames, scores_json: str, position: str, opacity: float, clip_index: int = 0) -> io.NodeOutput:
        from ..animereward.cancel import scope
        from ..animereward.overlay import draw_scores

        entry = parse_scores_json(cls.NODE_NAME, scores_json, clip_index)
        with scope(check_interrupt):  # Cancel between slices of a long clip
            out = draw_scores(frames, entry.scores, entry.total, position, opacity, unscored=entry.unscored)
        return io.NodeOutput(out)


def parse_scores_json(node: str, text: str, clip_index: int = 0) -> RewardScores:
    """A Score json ({total, scores, ...}) or a Best-of-N json ({clips: [...]}) → one clip's scores (read by the
    library, `RewardScores.from_json`); its errors name this node's input and how to fix it."""
    from ..animereward.scores import RewardScores, ScoresFormatError

    try:
        return RewardScores.from_json(text, clip_index)
    except ScoresFormatError as e:
        if e.arg == "clip_index":
            raise NodeInputError(node, "clip_index", e.problem, e.fix) from e
        fix = e.fix if "number" in e.problem else "connect the json output of AnimeReward Score or Best-of-N."
        raise NodeInputError(node, "scores_json", e.problem, fix) from e
