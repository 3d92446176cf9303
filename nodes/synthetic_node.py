"""AnimeReward Synthetic Clips: cel-style test clips with known defects, to try the reward nodes without a
video model (and what the demo workflow reranks)."""

from __future__ import annotations

import torch
from comfy_api.latest import io

from .comfy_compat import check_interrupt
from .errors import NodeInputError

NODE = "AnimeReward Synthetic Clips"


class AnimeRewardSyntheticClips(io.ComfyNode):
    NODE_NAME = NODE  # shown as its title and in its errors

    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="AnimeRewardSyntheticClips",
            display_name=cls.NODE_NAME,
            category="AnimeReward/testing",
            description="Flat-coloured shapes moving over a background; one clip per entry of 'defects', "
                        "all from the same scene, as one N×T IMAGE batch (like VAEDecode of a latent batch).",
            inputs=[
                io.String.Input("defects", default="clean, flicker, jitter, freeze",
                                tooltip="One candidate per comma-separated entry: clean, flicker, jitter, "
                                        "freeze, distortion, static, or several joined with '+'."),
                io.Int.Input("frames", default=17, min=2, max=1024,
                             tooltip="Frames per clip; 17 is enough for the flow metrics."),
                io.Int.Input("width", default=320, min=16, max=4096, step=8,
                             tooltip="Frame width; 320×192 is quick on a CPU."),
                io.Int.Input("height", default=192, min=16, max=4096, step=8, tooltip="Frame height in pixels (a multiple of 8)."),
                io.Int.Input("seed", default=0, min=0, max=2**31 - 1,
                             tooltip="The scene: same seed, same shapes and motion in every candidate."),
            ],
            outputs=[io.Image.Output("images", display_name="images",
                                     tooltip="All candidates as one N×T batch, like VAEDecode of a latent batch."),
                     io.Int.Output("frames_per_clip", display_name="frames_per_clip",
                                   tooltip="Frames in one clip: connect to Best-of-N's frames_per_clip.")],
        )

    @classmethod
    def execute(cls, defects: str, frames: int, width: int, height: int, seed: int) -> io.NodeOutput:
        from ..animereward.synthetic_clips import DEFECTS, make_clip

        specs = [s.strip() for s in defects.split(",") if s.strip()]
        if not specs:
            raise NodeInputError(NODE, "defects", "is empty.", "list at least one entry, e.g. 'clean, flicker'.")
        clips = []
        for spec in specs:
            parts = tuple(p.strip() for p in spec.split("+") if p.strip() and p.strip() != "clean")
            bad = [p for p in parts if p not in DEFECTS]
            if bad:
                raise NodeInputError(NODE, "defects", f"unknown defect {bad[0]!r}.",
                                     f"use clean or one of {', '.join(DEFECTS)}.")
            clips.append(make_clip(seed, frames=frames, height=height, width=width, defects=parts,
                                   should_stop=check_interrupt))  # Cancel is checked before every frame
        return io.NodeOutput(torch.cat(clips), frames)
