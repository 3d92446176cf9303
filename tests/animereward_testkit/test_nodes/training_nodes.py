"""Test-only nodes for the trainer tests: a LATENT's values as JSON, so a test can compare two models'
outputs element by element after they went through ComfyUI's own sampler."""

from __future__ import annotations

import json

from comfy_api.latest import io


class LatentValues(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="AnimeRewardTestLatentValues",
            display_name="Latent Values (AnimeReward tests)",
            category="testing",
            inputs=[io.Latent.Input("latent")],
            outputs=[io.String.Output()],
        )

    @classmethod
    def execute(cls, latent: dict) -> io.NodeOutput:
        x = latent["samples"].detach().float()
        return io.NodeOutput(json.dumps({"shape": list(x.shape), "values": x.reshape(-1).tolist()}))


TRAINING_TEST_NODES = [LatentValues]
