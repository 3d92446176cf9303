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


class Wan22StartLatent(io.ComfyNode):
    """ComfyUI's own Wan22ImageToVideoLatent (the LATENT with the start frame and its noise_mask), with the
    stand-in encoder of the testkit in place of the full-size Wan 2.2 VAE."""

    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="AnimeRewardTestWan22StartLatent",
            display_name="Wan 2.2 Start Latent (AnimeReward tests)",
            category="testing",
            inputs=[io.Image.Input("start_image"), io.Int.Input("width", default=64),
                    io.Int.Input("height", default=64), io.Int.Input("length", default=5),
                    io.Int.Input("batch_size", default=2)],
            outputs=[io.Latent.Output()],
        )

    @classmethod
    def execute(cls, start_image, width: int, height: int, length: int, batch_size: int) -> io.NodeOutput:
        from comfy_extras.nodes_wan import Wan22ImageToVideoLatent

        from animereward_testkit.tiny_models import StandInVideoEncoder

        out = Wan22ImageToVideoLatent.execute(StandInVideoEncoder(), width, height, length, batch_size,
                                              start_image=start_image)
        return io.NodeOutput(out.result[0])


TRAINING_TEST_NODES = [LatentValues, Wan22StartLatent]
