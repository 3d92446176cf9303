"""Test-only nodes for the Collect tests: a CLIP-vision output (the real encoder cannot be shrunk), the stored
conditioning of a group rebuilt as the trainer replays it, a deep comparison of two conditionings, and a
conditioning holding something no store can hold."""

from __future__ import annotations

import json

import torch
from comfy_api.latest import io


class RandomClipVision(io.ComfyNode):
    """A CLIP-vision output like CLIPVisionEncode's for ViT-H (what Wan 2.1 i2v reads), with random tensors:
    the real encoder cannot be shrunk (ComfyUI builds it from fixed configs)."""

    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="AnimeRewardTestRandomClipVision",
            display_name="Random CLIP Vision Output (AnimeReward tests)",
            category="testing",
            inputs=[io.Int.Input("seed", default=0, min=0, max=2**31 - 1)],
            outputs=[io.ClipVisionOutput.Output()],
        )

    @classmethod
    def execute(cls, seed: int) -> io.NodeOutput:
        import comfy.clip_vision

        gen = torch.Generator().manual_seed(seed)
        out = comfy.clip_vision.Output()
        out["last_hidden_state"] = torch.randn(1, 257, 1280, generator=gen)
        out["image_embeds"] = torch.randn(1, 1024, generator=gen)
        out["penultimate_hidden_states"] = torch.randn(1, 257, 1280, generator=gen)
        out["mm_projected"] = None
        return io.NodeOutput(out)


def _pack_module(name: str) -> object:
    """One of the pack's modules as ComfyUI loaded it (the pack's package is named after its folder path)."""
    import importlib

    import nodes

    package = nodes.NODE_CLASS_MAPPINGS["AnimeRewardCollect"].__module__.rsplit(".nodes.", 1)[0]
    return importlib.import_module(f"{package}.{name}")


class StoredConditioning(io.ComfyNode):
    """The positive and negative conditioning of a stored group, rebuilt as the trainer replays them."""

    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="AnimeRewardTestStoredConditioning",
            display_name="Stored Conditioning (AnimeReward tests)",
            category="testing",
            inputs=[io.String.Input("dataset", default="tests"), io.String.Input("group_id", force_input=True)],
            outputs=[io.Conditioning.Output(display_name="positive"), io.Conditioning.Output(display_name="negative")],
        )

    @classmethod
    def execute(cls, dataset: str, group_id: str) -> io.NodeOutput:
        folder = _pack_module("nodes.datasets_folder")
        records = _pack_module("nodes.conditioning_records")
        group = folder.open_store().load_group(dataset, group_id)
        return io.NodeOutput(records.from_store(group.positive), records.from_store(group.negative))


def _differences(a: object, b: object, path: str) -> list[str]:
    """Where two conditionings differ: types, dict keys, tensor dtype/shape/values, plain values."""
    if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
        if not (isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor)):
            return [f"{path}: {type(a).__name__} vs {type(b).__name__}"]
        if a.dtype != b.dtype or a.shape != b.shape:
            return [f"{path}: {a.dtype}{list(a.shape)} vs {b.dtype}{list(b.shape)}"]
        return [] if torch.equal(a.cpu(), b.cpu()) else [f"{path}: values differ"]
    if type(a) is not type(b):
        return [f"{path}: {type(a).__name__} vs {type(b).__name__}"]
    if isinstance(a, dict):
        if set(a) != set(b):
            return [f"{path}: keys {sorted(a)} vs {sorted(b)}"]
        return [d for k in sorted(a) for d in _differences(a[k], b[k], f"{path}[{k!r}]")]
    if isinstance(a, (list, tuple)):
        if len(a) != len(b):
            return [f"{path}: length {len(a)} vs {len(b)}"]
        return [d for i, (x, y) in enumerate(zip(a, b, strict=True)) for d in _differences(x, y, f"{path}[{i}]")]
    if hasattr(a, "__dict__"):
        return _differences(vars(a), vars(b), f"{path}.<{type(a).__name__}>")
    return [] if a == b else [f"{path}: {a!r} vs {b!r}"]


class CompareConditioning(io.ComfyNode):
    """Reports (as a string) every difference between two conditionings; empty when identical."""

    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="AnimeRewardTestCompareConditioning",
            display_name="Compare Conditioning (AnimeReward tests)",
            category="testing",
            inputs=[io.Conditioning.Input("a"), io.Conditioning.Input("b")],
            outputs=[io.String.Output(display_name="differences"), io.String.Output(display_name="keys")],
        )

    @classmethod
    def execute(cls, a: list, b: list) -> io.NodeOutput:
        keys = [sorted(c[1]) for c in b]
        kinds = {k: type(v).__module__ + "." + type(v).__name__ for c in b for k, v in c[1].items()}
        return io.NodeOutput("\n".join(_differences(a, b, "cond")), json.dumps({"keys": keys, "types": kinds}))


class OddConditioning(io.ComfyNode):
    """Adds a value no store can hold (a plain object, as a ControlNet or hook would be) to conditioning."""

    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="AnimeRewardTestOddConditioning",
            display_name="Odd Conditioning (AnimeReward tests)",
            category="testing",
            inputs=[io.Conditioning.Input("conditioning")],
            outputs=[io.Conditioning.Output()],
        )

    @classmethod
    def execute(cls, conditioning: list) -> io.NodeOutput:
        return io.NodeOutput([[c[0], {**c[1], "odd": object()}] for c in conditioning])


COLLECT_TEST_NODES = [RandomClipVision, StoredConditioning, CompareConditioning, OddConditioning]
