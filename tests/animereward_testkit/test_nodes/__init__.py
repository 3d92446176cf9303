"""Test-only ComfyUI nodes (loaded from the tests' own custom_nodes folder, never shipped with the pack).

The umt5-xxl text encoder cannot be shrunk, so tiny-model workflows take random 4096-wide conditioning.
"""

from __future__ import annotations

import torch
from comfy_api.latest import ComfyExtension, io


class RandomTextConditioning(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="AnimeRewardTestRandomConditioning",
            display_name="Random Text Conditioning (AnimeReward tests)",
            category="testing",
            inputs=[
                io.Int.Input("seed", default=0, min=0, max=2**31 - 1),
                io.Int.Input("tokens", default=8, min=1, max=512),
                io.Int.Input("width", default=4096, min=1, max=8192),
                io.Int.Input("pooled", default=0, min=0, max=4096, optional=True),  # HunyuanVideo: 768 (CLIP-L)
                io.Boolean.Input("attention_mask", default=False, optional=True),  # LTX-Video's T5 gives one
            ],
            outputs=[io.Conditioning.Output()],
        )

    @classmethod
    def execute(cls, seed: int, tokens: int, width: int, pooled: int = 0, attention_mask: bool = False) -> io.NodeOutput:
        gen = torch.Generator().manual_seed(seed)
        cond = torch.randn(1, tokens, width, generator=gen) * 0.1
        extra: dict = {}
        if pooled:
            extra["pooled_output"] = torch.randn(1, pooled, generator=gen) * 0.1
        if attention_mask:
            extra["attention_mask"] = torch.ones(1, tokens, dtype=torch.int64)
        return io.NodeOutput([[cond, extra]])


def _summary(value: object) -> object:
    """JSON-able summary of a node output, precise enough for tests to compare tensors."""
    if isinstance(value, torch.Tensor):
        v = value.detach().float()
        per_item = v.reshape(v.shape[0], -1).sum(dim=1).tolist() if v.ndim else [v.item()]
        return {"shape": list(v.shape), "sum": float(v.sum()), "per_item_sum": per_item}
    if isinstance(value, dict) and "samples" in value:
        return {"latent": _summary(value["samples"])}
    if isinstance(value, list):
        return [_summary(v) for v in value]
    return value


class Capture(io.ComfyNode):
    """Output node that reports what reaches its inputs in its UI output, so tests can read node outputs."""

    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="AnimeRewardTestCapture",
            display_name="Capture (AnimeReward tests)",
            category="testing",
            inputs=[
                io.Float.Input("float", optional=True, force_input=True),
                io.Int.Input("int", optional=True, force_input=True),
                io.String.Input("string", optional=True, force_input=True),
                io.Image.Input("image", optional=True),
                io.Latent.Input("latent", optional=True),
            ],
            outputs=[],
            is_output_node=True,
        )

    @classmethod
    def execute(cls, **inputs: object) -> io.NodeOutput:
        return io.NodeOutput(ui={"captured": [{k: _summary(v) for k, v in inputs.items()}]})


class ClipList(io.ComfyNode):
    """A list of clips (one list item per clip), as list-producing nodes hand them to Best-of-N."""

    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="AnimeRewardTestClipList",
            display_name="Clip List (AnimeReward tests)",
            category="testing",
            inputs=[io.Image.Input("images"), io.String.Input("lengths", default="9,9")],
            outputs=[io.Image.Output(is_output_list=True)],
        )

    @classmethod
    def execute(cls, images: torch.Tensor, lengths: str) -> io.NodeOutput:
        sizes = [int(x) for x in lengths.split(",")]
        return io.NodeOutput(list(torch.split(images[: sum(sizes)], sizes)))


class ClipFormat(io.ComfyNode):
    """Re-encodes an IMAGE batch with another channel count and dtype, as other packs may hand one over:
    1 (grey), 3 (RGB) or 4 (RGBA, alpha 0.5) channels (2: an invalid clip, for error tests); float32, float16, bfloat16 or uint8 (0..255)."""

    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="AnimeRewardTestClipFormat",
            display_name="Clip Format (AnimeReward tests)",
            category="testing",
            inputs=[io.Image.Input("images"), io.Combo.Input("channels", options=["1", "2", "3", "4"], default="3"),
                    io.Combo.Input("dtype", options=["float32", "float16", "bfloat16", "uint8"], default="float32"),
                    io.Int.Input("frames", default=-1, min=-1, max=100000,
                                 tooltip="Keep only the first n frames (-1: all; 0 gives an empty batch).")],
            outputs=[io.Image.Output()],
        )

    @classmethod
    def execute(cls, images: torch.Tensor, channels: str, dtype: str, frames: int = -1) -> io.NodeOutput:
        x = images if frames < 0 else images[:frames]
        c = int(channels)
        if c == 1:
            x = x.mean(dim=-1, keepdim=True)
        elif c == 2:  # no clip format: for the tests of the errors
            x = x[..., :2]
        elif c == 4:
            x = torch.cat([x, torch.full_like(x[..., :1], 0.5)], dim=-1)
        x = (x * 255).round().to(torch.uint8) if dtype == "uint8" else x.to(getattr(torch, dtype))
        return io.NodeOutput(x)


class TestNodesExtension(ComfyExtension):
    async def get_node_list(self) -> list[type[io.ComfyNode]]:
        from .collect_nodes import COLLECT_TEST_NODES
        from .training_nodes import TRAINING_TEST_NODES

        return [RandomTextConditioning, Capture, ClipList, ClipFormat, *COLLECT_TEST_NODES, *TRAINING_TEST_NODES]


async def comfy_entrypoint() -> ComfyExtension:
    return TestNodesExtension()
