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
            ],
            outputs=[io.Conditioning.Output()],
        )

    @classmethod
    def execute(cls, seed: int, tokens: int, width: int) -> io.NodeOutput:
        gen = torch.Generator().manual_seed(seed)
        cond = torch.randn(1, tokens, width, generator=gen) * 0.1
        return io.NodeOutput([[cond, {}]])


class TestNodesExtension(ComfyExtension):
    async def get_node_list(self) -> list[type[io.ComfyNode]]:
        return [RandomTextConditioning]


async def comfy_entrypoint() -> ComfyExtension:
    return TestNodesExtension()
