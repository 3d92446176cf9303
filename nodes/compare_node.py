"""AnimeReward LoRA Comparison: the same seeds without and with a LoRA, scored together, side by side.

Made for the compare_lora example: two samplers share seeds and prompt, one on the base MODEL and one on the
MODEL through LoraLoaderModelOnly; this node scores all clips in one batch and draws one contact sheet with
each seed's two clips in adjacent rows, the LoRA row titled with its score difference.
"""

from __future__ import annotations

import json
from typing import Any

import torch
from comfy_api.latest import io

from .errors import NodeInputError, blocked
from .scoring import dimensions_for_inputs, score_clips
from .types import AnimeRewardType, RewardWeightsType

NODE = "AnimeReward LoRA Comparison"


def split_clips(images: torch.Tensor, frames_per_clip: int, name: str) -> torch.Tensor:
    """[N·T,H,W,C] (VAEDecode of N video latents) → [N,T,H,W,C]; errors name this node's input."""
    if images.shape[0] == 0:
        raise NodeInputError(NODE, name, "is empty (0 frames).", "connect the decoded clips of one sampler.")
    if frames_per_clip <= 0 or images.shape[0] % frames_per_clip:
        raise NodeInputError(NODE, "frames_per_clip", f"is {frames_per_clip}, which does not split the "
                             f"{images.shape[0]} frames of '{name}' into clips.",
                             "set it to the frame count of one decoded clip (the latent 'length').")
    return images.reshape(images.shape[0] // frames_per_clip, frames_per_clip, *images.shape[1:])


class AnimeRewardCompareLoRA(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="AnimeRewardCompareLoRA",
            display_name=NODE,
            category="AnimeReward/training",
            description="Scores clips made with the same seeds without and with a LoRA, and shows them side by "
                        "side with the score difference.",
            inputs=[
                AnimeRewardType.Input("reward", tooltip="The AnimeReward model from AnimeReward Loader."),
                io.Image.Input("without_lora", tooltip="The clips of the base model (VAEDecode of its latent "
                                                       "batch: N clips × frames_per_clip frames)."),
                io.Image.Input("with_lora", tooltip="The clips of the model with the LoRA, same seeds and prompt, "
                                                    "in the same order."),
                io.Int.Input("frames_per_clip", default=33, min=1, max=100000,
                             tooltip="Frames of one clip (the latent 'length')."),
                io.String.Input("prompt", multiline=True, default="", optional=True,
                                tooltip="The text prompt (needed by text-video consistency)."),
                io.Image.Input("first_frame", optional=True,
                               tooltip="The start image (needed by image-video consistency)."),
                RewardWeightsType.Input("weights", optional=True, tooltip="Dimension weights for the total."),
                io.Int.Input("sheet_frames", default=4, min=1, max=16, tooltip="Frames per contact-sheet row."),
                io.Boolean.Input("skip_unusable", default=True,
                                 tooltip="Skip dimensions whose input (prompt or first frame) is missing."),
            ],
            outputs=[
                io.Image.Output("sheet", display_name="sheet",
                                tooltip="One row per clip: each seed without, then with the LoRA (its title "
                                        "gives the total's difference)."),
                io.Float.Output("mean_difference", display_name="mean_difference",
                                tooltip="Mean over seeds of total(with LoRA) − total(without)."),
                io.String.Output("json", display_name="json",
                                 tooltip="Per seed: both totals, both score sets and the difference."),
            ],
            hidden=[io.Hidden.unique_id],
            is_output_node=True,
        )

    @classmethod
    def execute(cls, reward: Any, without_lora: torch.Tensor, with_lora: torch.Tensor, frames_per_clip: int,
                prompt: str = "", first_frame: torch.Tensor | None = None, weights: Any = None,
                sheet_frames: int = 4, skip_unusable: bool = True) -> io.NodeOutput:
        from ..animereward.contact_sheet import contact_sheet
        from ..animereward.overlay import panel_rows

        a = split_clips(without_lora, frames_per_clip, "without_lora")
        b = split_clips(with_lora, frames_per_clip, "with_lora")
        if a.shape != b.shape:
            raise NodeInputError(NODE, "with_lora", f"holds clips of shape {list(b.shape)}, 'without_lora' "
                                 f"{list(a.shape)}.", "sample both with the same latent size, length and batch.")
        n = a.shape[0]
        key = None if first_frame is None else first_frame[0]
        dims, warnings = dimensions_for_inputs(NODE, reward, prompt, key, skip_unusable)
        node_id = cls.hidden.unique_id if cls.hidden else None
        clips = torch.cat([a, b])
        results = score_clips(NODE, reward, list(clips), dims, prompt or None, key, weights, node_id=node_id,
                              clip_input="without_lora")
        totals = [r.total for r in results]
        order = [i for k in range(n) for i in (k, n + k)]
        # a clip may have no total (no dimension with a weight has a score for it): no difference for that seed
        diffs = [None if totals[n + k] is None or totals[k] is None else totals[n + k] - totals[k] for k in range(n)]
        titles = [t for k in range(n) for t in (
            f"seed {k}: without", f"seed {k}: LoRA " + ("n/a" if diffs[k] is None else f"{diffs[k]:+.3f}"))]
        sheet = contact_sheet(clips, order, [panel_rows(r.scores, r.unscored) for r in results], totals,
                              frames_per_row=sheet_frames, titles=titles)
        known = [d for d in diffs if d is not None]
        mean = sum(known) / len(known) if known else None
        payload = {"pairs": [{"index": k, "without": results[k].to_dict(), "with": results[n + k].to_dict(),
                              "difference": diffs[k]} for k in range(n)],
                   "mean_difference": mean, "warnings": warnings}
        if mean is None:
            mean = blocked(f"{NODE}: output 'mean_difference': no seed has a total both without and with the LoRA "
                           "(no dimension with a weight has a score). Fix: enable a dimension that scores every "
                           "clip, e.g. a flow metric.")
        return io.NodeOutput(sheet, mean, json.dumps(payload))
