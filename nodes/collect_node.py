"""AnimeReward Collect: store one group of ranked candidates (latents, conditioning, scores, previews) in a
preference dataset, and optionally wait for the artist's ranking from the panel."""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field
from typing import Any

import torch
from comfy_api.latest import io

from . import datasets_folder  # registers the datasets folder with folder_paths when the pack loads
from .comfy_compat import check_interrupt
from .errors import NodeInputError
from .page_messages import send_to_page

log = logging.getLogger("AnimeReward")

NODE = "AnimeReward Collect"
DEFAULT_DATASET = "my_rankings"
WAITING_EVENT = "animereward.collect.waiting"
RESULT_EVENT = "animereward.collect"
NO_MODEL = "none"  # model_name of groups collected without a MODEL (clips made elsewhere): not trainable


@dataclass
class Candidates:
    """What the checks established about the N candidates, before anything is written."""

    n: int
    latents: torch.Tensor | None  # [N,C,T,H,W], or None when they come from `frames` + `vae`
    clips: torch.Tensor | None  # [N,T,H,W,C] decoded frames for the previews
    scores: list[dict] = field(default_factory=list)  # one {"scores": {...}, "total": x} per candidate


def _latent_samples(latents: dict | None) -> torch.Tensor | None:
    if latents is None:
        return None
    samples = latents.get("samples") if isinstance(latents, dict) else None
    if not isinstance(samples, torch.Tensor):
        raise NodeInputError(NODE, "latents", "is not a LATENT (no 'samples' tensor).",
                             "connect the sampler's LATENT output.")
    if samples.ndim != 5:
        raise NodeInputError(NODE, "latents", f"has shape {list(samples.shape)}; Collect stores video latents "
                             "[N,C,T,H,W].", "connect the LATENT batch of a video model's sampler (Wan, Hunyuan, LTXV).")
    return samples


def parse_scores(text: str | None) -> list[dict] | None:
    """Best-of-N's scores_json ({clips: [...]}), a JSON list of Score outputs, or one Score output → per
    candidate {"scores", "total"} in generation order."""
    if text is None or not str(text).strip():
        return None
    try:
        data = json.loads(text)
    except ValueError as e:
        raise NodeInputError(NODE, "scores_json", f"is not JSON ({e}).",
                             "connect the scores_json output of AnimeReward Best-of-N.") from e
    if isinstance(data, dict) and isinstance(data.get("clips"), list):
        data = data["clips"]
    elif isinstance(data, dict):
        data = [data]
    if not isinstance(data, list) or not all(isinstance(c, dict) and isinstance(c.get("scores"), dict)
                                             for c in data):
        raise NodeInputError(NODE, "scores_json", "has no per-candidate 'scores'.",
                             "connect the scores_json output of AnimeReward Best-of-N.")
    out = []
    for c in data:
        scores = {str(k): (None if v is None else float(v)) for k, v in c["scores"].items()}
        total = c.get("total")
        out.append({"scores": scores, "total": None if total is None else float(total)})
    return out


def check_counts(latents: dict | None, frames: torch.Tensor | None, vae: Any, scores: list[dict] | None,
                 frames_per_clip: int) -> Candidates:
    """One count of candidates across latents, frames and scores, or a NodeInputError naming the input."""
    samples = _latent_samples(latents)
    if samples is None and (frames is None or vae is None):
        raise NodeInputError(NODE, "latents", "no candidate latents, and no frames + VAE to encode them from.",
                             "connect the sampler's LATENT batch, or the clips' frames and a VAE.")
    if samples is not None:
        n, source = samples.shape[0], "latents"
    elif frames_per_clip > 0:
        if frames.shape[0] % frames_per_clip:
            raise NodeInputError(NODE, "frames", f"has {frames.shape[0]} frames, not a multiple of "
                                 f"frames_per_clip={frames_per_clip}.", "set frames_per_clip to one clip's length.")
        n, source = frames.shape[0] // frames_per_clip, "frames"
    elif scores is not None:
        n, source = len(scores), "scores_json"
    else:
        raise NodeInputError(NODE, "frames_per_clip", "is 0, and neither latents nor scores say how many "
                             "candidates the frames hold.", "set frames_per_clip to one clip's length.")
    if n < 2:
        raise NodeInputError(NODE, source, f"holds {n} candidate; a ranked group needs 2 or more.",
                             "generate several candidates (batch_size on the empty latent).")
    if scores is not None and len(scores) != n:
        raise NodeInputError(NODE, "scores_json", f"scores {len(scores)} clips, but {source} hold {n} candidates.",
                             "connect the scores of these same candidates (Best-of-N fed from the same batch).")
    clips = None
    if frames is not None:
        if frames.shape[0] % n:
            raise NodeInputError(NODE, "frames", f"has {frames.shape[0]} frames, which do not split into the {n} "
                                 f"candidates of {source}.", "connect the frames decoded from these latents.")
        t = frames.shape[0] // n
        if frames_per_clip > 0 and t != frames_per_clip:
            raise NodeInputError(NODE, "frames_per_clip", f"is {frames_per_clip}, but {frames.shape[0]} frames for "
                                 f"{n} candidates make clips of {t} frames.", f"set it to {t} (or 0).")
        clips = frames.reshape(n, t, *frames.shape[1:])
    return Candidates(n=n, latents=samples, clips=clips, scores=scores or [])


class AnimeRewardCollect(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="AnimeRewardCollect",
            display_name=NODE,
            category="AnimeReward",
            description="Stores the N candidates of one prompt (latents, conditioning, reward scores, small "
                        "previews, model and sampler) as a group of a preference dataset, for the ranking "
                        "panel and the GAPO trainer. Can wait until you rank the group in the panel.",
            inputs=[
                io.String.Input("dataset", default=DEFAULT_DATASET,
                                tooltip="Dataset (a folder in the animereward_datasets folder, by default "
                                        "ComfyUI/user/animereward_datasets): 1-63 letters, digits, '_' or "
                                        "'-'. Created on first use."),
                io.Latent.Input("latents", optional=True,
                                tooltip="The sampler's LATENT batch: one latent per candidate [N,C,T,H,W]. "
                                        "Leave empty to encode 'frames' with 'vae' (clips made elsewhere)."),
                io.Image.Input("frames", optional=True,
                               tooltip="The candidates' decoded frames (an N×T batch, as VAEDecode gives), for "
                                       "the previews; without latents they are encoded with 'vae'."),
                io.Vae.Input("vae", optional=True,
                             tooltip="Encodes 'frames' when no latents are connected; decodes the latents for "
                                     "previews when no frames are connected."),
                io.Conditioning.Input("positive", optional=True,
                                      tooltip="The positive conditioning the candidates were sampled with (stored "
                                              "whole, so training replays it exactly). Without it the group can "
                                              "be ranked but not trained on."),
                io.Conditioning.Input("negative", optional=True,
                                      tooltip="The negative conditioning the candidates were sampled with."),
                io.String.Input("scores_json", optional=True, force_input=True,
                                tooltip="The scores_json of AnimeReward Best-of-N for these candidates (the "
                                        "reward order; the panel shows the scores)."),
                io.Model.Input("model", optional=True,
                               tooltip="The video model that generated the candidates: its file name (read "
                                       "from the workflow) and a fingerprint of its weights are stored, so "
                                       "training only uses groups of the same model."),
                io.Int.Input("frames_per_clip", default=0, min=0, max=100000,
                             tooltip="Frames per candidate, to split 'frames' when neither latents nor scores "
                                     "give the count. 0: work it out."),
                io.String.Input("prompt", optional=True, multiline=True, default="",
                                tooltip="The prompt text. Empty: read from the text encoder the positive "
                                        "conditioning comes from."),
                io.String.Input("negative_prompt", optional=True, multiline=True, default="",
                                tooltip="The negative prompt text. Empty: read from the workflow."),
                io.Int.Input("seed", optional=True, default=-1, min=-1, max=2**64 - 1,
                             tooltip="The sampler seed (candidate i is item i of the batch noise). -1: read "
                                     "from the sampler that made the latents."),
                io.Boolean.Input("wait_for_ranking", default=False,
                                 tooltip="Hold the workflow until the group is ranked or skipped in the ranking "
                                         "panel (or the timeout passes). Cancel stops the wait."),
                io.Int.Input("timeout_seconds", default=600, min=1, max=86400,
                             tooltip="How long to wait for the ranking; afterwards the workflow continues and "
                                     "the group stays unranked (rank it later in the panel)."),
            ],
            outputs=[
                io.String.Output("group_id", display_name="group_id",
                                 tooltip="The id of the stored group (its folder name in the dataset)."),
                io.String.Output("ranking", display_name="ranking",
                                 tooltip="The human ranking when waited for, candidate indices best first "
                                         "(e.g. '2,0,1'); empty when not ranked, 'skipped' when skipped."),
                io.Int.Output("dataset_size", display_name="dataset_size",
                              tooltip="Groups in the dataset after this one was added."),
            ],
            hidden=[io.Hidden.unique_id, io.Hidden.prompt],
            is_output_node=True,
        )

    @classmethod
    def validate_inputs(cls, dataset: str | None = None) -> bool | str:
        """A bad dataset name is reported when the prompt is queued, before anything runs."""
        if dataset is None:
            return True
        try:
            datasets_folder.open_store().dataset_path(dataset)
        except ValueError as e:  # StoreError
            return f"{NODE}: input 'dataset': {e} Fix: use 1-63 letters, digits, '_' or '-'."
        return True

    @classmethod
    def execute(cls, dataset: str, frames_per_clip: int, wait_for_ranking: bool, timeout_seconds: int,
                latents=None, frames=None, vae=None, positive=None, negative=None, scores_json=None,
                model=None, prompt: str = "", negative_prompt: str = "", seed: int = -1) -> io.NodeOutput:
        from ..gapo_trainer.store import CandidateMeta, StoreError, check_conditioning
        from . import model_identity
        from .conditioning_records import to_store
        from .previews import PREVIEW_EXT, preview_webp

        store = datasets_folder.open_store()
        try:
            store.dataset_path(dataset)
        except StoreError as e:
            raise NodeInputError(NODE, "dataset", str(e), "use 1-63 letters, digits, '_' or '-'.") from e
        scores = parse_scores(scores_json)
        cand = check_counts(latents, frames, vae, scores, int(frames_per_clip))
        warnings: list[str] = []
        conds = {}
        for name, cond in (("positive", positive), ("negative", negative)):
            stored = to_store(cond) if cond is not None else []
            try:
                check_conditioning(stored, name)
            except StoreError as e:
                raise NodeInputError(NODE, name, f"holds something the dataset cannot store: {e}",
                                     "connect the conditioning straight from the text encoder / image-to-video "
                                     "node, without ControlNets or hooks.") from e
            conds[name] = stored
        if positive is None:
            warnings.append("no positive conditioning: the group can be ranked but not trained on")

        samples = cand.latents
        noise_mask = None
        if samples is not None:  # image-to-video by noise mask (Wan 2.2 TI2V, LTXV): training replays it
            from .noise_masks import stored_noise_mask

            noise_mask = stored_noise_mask(latents, samples)
        if samples is None:
            samples = torch.cat([vae.encode(clip[..., :3]) for clip in cand.clips])
        clips = cand.clips
        if clips is None:
            if vae is None:
                raise NodeInputError(NODE, "frames", "no frames for the previews, and no VAE to decode the latents.",
                                     "connect the decoded frames (VAEDecode of these latents) or the VAE.")
            decoded = vae.decode(samples)
            clips = decoded if decoded.ndim == 5 else decoded.reshape(cand.n, -1, *decoded.shape[-3:])
        previews = [preview_webp(c) for c in clips]
        check_interrupt()

        graph = cls.hidden.prompt if cls.hidden else None
        node_id = cls.hidden.unique_id if cls.hidden else None
        links = (graph or {}).get(str(node_id), {}).get("inputs", {}) if node_id is not None else {}
        sampler = model_identity.sampler_from_graph(graph, links.get("latents"))
        if seed is None or seed < 0:
            seed = next((sampler[k] for k in ("seed", "noise_seed") if isinstance(sampler.get(k), int)), None)
        text = prompt or model_identity.text_from_graph(graph, links.get("positive")) or None
        negative_text = negative_prompt or model_identity.text_from_graph(graph, links.get("negative")) or None
        if model is not None:
            model_name = (model_identity.model_name_from_graph(graph, links.get("model"))
                          or type(getattr(model, "model", model)).__name__)
            model_hash = model_identity.model_hash(model)
        else:
            model_name, model_hash = NO_MODEL, None
        candidates = [CandidateMeta(index=i, seed=seed,
                                    scores=cand.scores[i]["scores"] if cand.scores else {},
                                    total=cand.scores[i]["total"] if cand.scores else None)
                      for i in range(cand.n)]
        try:  # the store checks everything (e.g. latents of another model than the dataset's) before writing
            meta = store.add_group(dataset, latents=samples.detach().cpu(), positive=conds["positive"],
                                   negative=conds["negative"], candidates=candidates, previews=previews,
                                   preview_ext=PREVIEW_EXT, model_name=model_name, model_hash=model_hash,
                                   prompt=text, negative_prompt=negative_text, sampler=sampler or None,
                                   noise_mask=noise_mask)
        except StoreError as e:
            raise NodeInputError(NODE, "dataset", str(e), "collect each video model's candidates into a "
                                 "dataset of their own (a new name).") from e
        ranking, status = "", "stored"
        if wait_for_ranking:
            ranking, status = cls._wait(store, dataset, meta.group_id, int(timeout_seconds))
        size = store.count(dataset)
        shown = {"dataset": dataset, "group_id": meta.group_id, "size": size, "n": cand.n, "status": status,
                 "ranking": ranking, "warnings": warnings}
        for w in warnings:
            log.warning("%s: %s", NODE, w)
        send_to_page(RESULT_EVENT, {"node": str(node_id), "collect": shown})
        return io.NodeOutput(meta.group_id, ranking, size)

    @classmethod
    def _wait(cls, store: Any, dataset: str, group_id: str, timeout: float) -> tuple[str, str]:
        from .ranking_wait import wait_for

        def ranked() -> tuple[str, str] | None:
            meta = store.read_meta(dataset, group_id)
            if meta.skipped:
                return "skipped", "skipped"
            if meta.human_ranking is not None:
                return ",".join(map(str, meta.human_ranking)), "ranked"
            return None

        send_to_page(WAITING_EVENT, {"dataset": dataset, "group_id": group_id, "timeout": timeout,
                                    "node": cls.hidden.unique_id if cls.hidden else None})
        t0 = time.monotonic()
        found = wait_for(ranked, timeout, check_interrupt)
        if found is None:
            log.info("%s: no ranking for %s/%s after %.0fs; continuing", NODE, dataset, group_id,
                     time.monotonic() - t0)
            return "", "timed out"
        return found
