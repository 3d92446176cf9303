"""AnimeReward Best-of-N: rerank N generated candidate clips and keep the best."""

from __future__ import annotations

import json
from typing import Any

import torch
from comfy_api.latest import io

from .errors import NodeInputError
from .score_display import scores_payload, show_scores
from .scoring import dimensions_for_inputs, first_frames_for, score_clips
from .types import AnimeRewardType, RewardWeightsType

NODE = "AnimeReward Best-of-N"


def split_candidates(images: list[torch.Tensor], frames_per_clip: int) -> torch.Tensor:
    """N candidate clips as [N,T,H,W,C], from a list of clips or one N×T batch (what VAEDecode gives)."""
    if len(images) > 1:  # a list of clips (e.g. from a list-producing node)
        lengths = {tuple(c.shape) for c in images}
        if len(lengths) > 1:
            raise NodeInputError(NODE, "images", f"the clips in the list differ in shape: {sorted(lengths)}.",
                                 "generate every candidate with the same length and size.")
        return torch.stack(images)
    batch = images[0]
    b = batch.shape[0]
    if frames_per_clip <= 0:
        raise NodeInputError(NODE, "frames_per_clip", "is 0, so the batch cannot be split into clips.",
                             "set it to the frame count of one clip (the 'length' of the empty video latent).")
    if b % frames_per_clip:
        divisors = [d for d in range(2, min(b, 400) + 1) if b % d == 0 and b // d >= 2]
        raise NodeInputError(NODE, "frames_per_clip", f"is {frames_per_clip}, which does not divide the {b} frames "
                             f"of 'images' (frames_per_clip={frames_per_clip}).",
                             "set it to the frame count of one decoded clip (for Wan: the latent 'length', 4·k+1)"
                             + (f"; values that split {b} frames into 2 or more clips: "
                                f"{', '.join(map(str, divisors[:12]))}." if divisors else "."))
    return batch.reshape(b // frames_per_clip, frames_per_clip, *batch.shape[1:])


def check_latents(latents: list[dict] | None, n: int) -> None:
    """One latent per candidate: checked before any scoring time is spent."""
    if not latents:
        return
    if len(latents) > 1:
        if len(latents) != n:
            raise NodeInputError(NODE, "latents", f"{len(latents)} latents for {n} clips.",
                                 "connect the latent batch the candidates were decoded from.")
    elif latents[0]["samples"].shape[0] != n:
        raise NodeInputError(NODE, "latents", f"batch of {latents[0]['samples'].shape[0]} latents for {n} clips.",
                             "connect the sampler output that VAEDecode decoded into these clips.")


def pick_latent(latents: list[dict] | None, n: int, index: int) -> dict | None:
    """The latent of the winning candidate from an N-batch LATENT (or a list of N single latents)."""
    if not latents:
        return None
    if len(latents) > 1:
        return latents[index]
    lat = latents[0]
    samples = lat["samples"]
    out = {k: v for k, v in lat.items() if k not in ("samples", "noise_mask", "batch_index")}
    out["samples"] = samples[index:index + 1].clone()
    mask = lat.get("noise_mask")
    if isinstance(mask, torch.Tensor) and mask.shape[0] == n:
        out["noise_mask"] = mask[index:index + 1].clone()
    return out


def left_out_of_totals(results: list[Any]) -> list[str]:
    """Warnings for the dimensions some candidates have no score for: the totals leave them out for all, so
    the candidates are compared on the same dimensions (animereward.scores.weighted_totals)."""
    out = []
    for d in dict.fromkeys(d for r in results for d in r.unscored):
        lacking = [i for i, r in enumerate(results) if d in r.unscored]
        counted = any(d in r.weights for r in results)
        why = results[lacking[0]].unscored[d]
        out.append(f"{d}: no score for candidate{'s' if len(lacking) > 1 else ''} {', '.join(map(str, lacking))} "
                   f"({why}); " + ("counted only where scored" if counted else "left out of every total"))
    return out


def _one(value: Any, default: Any = None) -> Any:
    """is_input_list hands every input over as a list; widgets and single wires have one item."""
    if isinstance(value, list):
        return value[0] if value else default
    return default if value is None else value


class AnimeRewardBestOfN(io.ComfyNode):
    NODE_NAME = NODE  # shown as its title and in its errors

    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="AnimeRewardBestOfN",
            display_name=cls.NODE_NAME,
            category="AnimeReward",
            description="Scores N candidate clips in batches, orders them best first and returns the best "
                        "clip, its index, the top-k clips, a contact sheet and the best candidate's latent.",
            inputs=[
                AnimeRewardType.Input("reward", tooltip="The judge from AnimeReward Loader (which dimensions, which weights folder)."),
                io.Image.Input("images", tooltip="N candidates: one N×T batch (VAEDecode of a latent batch) "
                                                 "or a list of clips."),
                io.Int.Input("frames_per_clip", default=0, min=0, max=100000,
                             tooltip="Frames in one clip, to split an N×T batch. Ignored for a list of clips."),
                io.String.Input("prompt", multiline=True, default="", optional=True,
                                tooltip="The prompt the candidates were generated from; needed by the text "
                                        "dimensions (smoothness, appeal, text-video)."),
                io.Image.Input("first_frame", optional=True,
                               tooltip="The start image of an image-to-video run; needed by image-video "
                                       "consistency."),
                io.Latent.Input("latents", optional=True,
                                tooltip="The latent batch of the candidates, to output the best one's latent."),
                RewardWeightsType.Input("weights", optional=True,
                                        tooltip="Optional, from AnimeReward Weights: how much each dimension counts "
                                                "in the total. Unconnected: every scored dimension counts the same."),
                io.Int.Input("top_k", default=2, min=0, max=64,
                             tooltip="How many of the best clips the top_k_clips output holds, best first, as one batch "
                                     "(a copy: 0 outputs an empty batch, worth it for long clips)."),
                io.Int.Input("sheet_frames", default=4, min=1, max=16, tooltip="Frames per contact-sheet row."),
                io.Boolean.Input("skip_unusable", default=False,
                                 tooltip="Skip, with a warning, dimensions whose prompt or first frame is missing."),
            ],
            outputs=[
                io.Image.Output("best", display_name="best", tooltip="The best clip's frames: for the save node."),
                io.Int.Output("best_index", display_name="best_index",
                              tooltip="Index of the best clip among the candidates (0 = the first generated)."),
                io.String.Output("order", display_name="order", tooltip="Candidate indices, best first, e.g. 2,0,3,1."),
                io.Image.Output("top_k_clips", display_name="top_k_clips",
                                tooltip="The top_k best clips, best first, as one batch."),
                io.String.Output("scores_json", display_name="scores_json",
                                 tooltip="Every candidate's scores and the order as JSON (for Overlay with "
                                         "clip_index, or Collect)."),
                io.Image.Output("contact_sheet", display_name="contact_sheet",
                                tooltip="One row per candidate, best first, with its scores: for Save Image."),
                io.Latent.Output("best_latent", display_name="best_latent",
                                 tooltip="The winner's latent, when latents is connected: re-decode, upscale "
                                         "or refine it."),
            ],
            hidden=[io.Hidden.unique_id],
            is_input_list=True,
            is_output_node=True,
        )

    @classmethod
    def validate_inputs(cls, skip_unusable: object = None) -> bool | str:
        """Before the run (before a long generation upstream): the prompt and first frame the loaded
        dimensions read (see graph_checks)."""
        from .graph_checks import missing_input_problem

        node_id = _one(getattr(cls.hidden, "unique_id", None))
        return missing_input_problem(NODE, node_id, _one(skip_unusable, False)) or True

    @classmethod
    def execute(cls, reward, images, frames_per_clip, prompt=None, first_frame=None, latents=None,
                weights=None, top_k=None, sheet_frames=None, skip_unusable=None) -> io.NodeOutput:
        from ..animereward.contact_sheet import contact_sheet
        from ..animereward.overlay import panel_rows
        from ..animereward.scores import rank

        handle = _one(reward)
        if not images or all(c.shape[0] == 0 for c in images):
            raise NodeInputError(NODE, "images", "is empty (0 frames).", "connect the decoded candidates "
                                 "(VAEDecode of the sampler's latent batch) or a list of clips.")
        clips = split_candidates(list(images), int(_one(frames_per_clip, 0)))
        n = clips.shape[0]
        if n < 2:
            raise NodeInputError(NODE, "images", f"holds {n} clip of {clips.shape[1]} frames; best-of-N needs 2 "
                                 "or more.", "generate several candidates (batch_size on the empty latent) or "
                                 "check frames_per_clip.")
        latent_list = list(latents) if latents is not None else None
        check_latents(latent_list, n)
        text = _one(prompt, "") or ""
        key = first_frames_for(NODE, _one(first_frame), n)  # one for all, or one per candidate
        dims, warnings = dimensions_for_inputs(NODE, handle, text, key, bool(_one(skip_unusable, False)))
        node_id = _one(cls.hidden.unique_id) if cls.hidden else None
        results = score_clips(NODE, handle, list(clips), dims, text or None, key, _one(weights), node_id=node_id,
                              clip_input="images")
        totals = [r.total for r in results]
        order = rank(totals)  # best first, ties in generation order, clips without a total last (the library's)
        best = order[0]
        k = min(int(_one(top_k, 2)), n)
        sheet = contact_sheet(clips, order, [panel_rows(r.scores, r.unscored) for r in results], totals,
                              frames_per_row=int(_one(sheet_frames, 4)))
        warnings = warnings + left_out_of_totals(results)
        payload = {"order": order, "best_index": best, "clips": [r.to_dict() for r in results],
                   "warnings": warnings}
        # A copy of k clips (ComfyUI caches outputs whatever is connected, so it cannot be skipped when the
        # socket is unconnected): top_k = 0 gives an empty batch, for long clips whose copy would cost GBs.
        top = clips[order[:k]].reshape(-1, *clips.shape[2:])
        show_scores(node_id, scores_payload(handle.skipped, results, warnings, order))
        return io.NodeOutput(clips[best], best, ",".join(map(str, order)), top, json.dumps(payload), sheet,
                             pick_latent(latent_list, n, best))
