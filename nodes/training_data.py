"""From a preference dataset to what the training loop reads: the pairs, their latents and conditioning.

Every refusal happens here, before the first step: an empty dataset, one whose rankings give no pair (only
ties, only skipped groups), latents from another model (channels, dimensions) or of mixed shapes.
Groups that cannot be read are reported by name and left out; they never stop the others.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from .errors import NodeInputError

log = logging.getLogger("AnimeReward")


@dataclass
class TrainingData:
    """The pairs (in the store's order) with the tensors they need, kept on the CPU."""

    dataset: str
    pairs: list[Any]  # gapo_trainer.pairs.PreferencePair
    latents: dict[str, torch.Tensor]  # group id → [N, C, T, H, W]
    positive: dict[str, list]  # group id → ComfyUI CONDITIONING
    latent_shape: list[int]
    groups_total: int
    skipped_ties: int = 0
    skipped_small_gap: int = 0
    errors: list[str] = field(default_factory=list)
    model_hashes: set[str] = field(default_factory=set)  # of the groups used (None: not recorded)
    noise_masks: dict[str, torch.Tensor] = field(default_factory=dict)  # group id → [1,C,T,H,W] 0/1 mask

    def inpaint(self) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        """What ComfyDenoiser replays per masked group: the mask and the latent the sampler kept (candidate
        0's: every candidate holds it where the mask is 0)."""
        return {gid: (mask, self.latents[gid][0]) for gid, mask in self.noise_masks.items()}

    def summary(self) -> dict[str, Any]:
        return {
            "dataset": self.dataset, "groups": self.groups_total, "groups_used": len(self.latents),
            "pairs": len(self.pairs), "skipped_ties": self.skipped_ties,
            "skipped_small_gap": self.skipped_small_gap, "unreadable_groups": len(self.errors),
            "noise_masked_groups": len(self.noise_masks),
        }


class StorePairs:
    """gapo_trainer.protocols.PairSource over TrainingData: pair i → PairExample with cond = its group id."""

    def __init__(self, data: TrainingData) -> None:
        from ..gapo_trainer.protocols import PairExample

        self._example = PairExample
        self.data = data

    def __len__(self) -> int:
        return len(self.data.pairs)

    def __getitem__(self, index: int) -> Any:
        p = self.data.pairs[index]
        lat = self.data.latents[p.group_id]
        return self._example(pair_id=f"{p.group_id}:{p.winner}>{p.loser}", x0_winner=lat[p.winner],
                             x0_loser=lat[p.loser], cond=p.group_id, s_winner=p.s_winner, s_loser=p.s_loser)


def model_latent_format(model: Any) -> tuple[int, int]:
    """(channels, dimensions per sample) of the latents this MODEL denoises: 16 and 4 ([C,T,H,W]) for Wan."""
    fmt = model.model.latent_format
    dims = getattr(fmt, "latent_dimensions", 2)  # ComfyUI sets 3 for video formats
    return int(fmt.latent_channels), int(dims) + 1


def load_training_data(node: str, store: Any, dataset: str, model: Any, mode: str, min_gap: float,
                       from_store: Any) -> TrainingData:
    """Read the dataset's rankings, build the pairs and load the groups they use; refuse what cannot train.
    `from_store` turns the store's conditioning back into ComfyUI's (clip-vision objects included)."""
    from ..gapo_trainer.pairs import build_pairs
    from ..gapo_trainer.store import StoreError

    if dataset not in store.datasets():
        raise NodeInputError(node, "dataset", f"there is no dataset '{dataset}' in {store.root}.",
                             "collect groups with AnimeReward Collect first, or pick another dataset.")
    total = store.count(dataset)
    if total == 0:
        raise NodeInputError(node, "dataset", f"dataset '{dataset}' holds no groups.",
                             "collect some groups of candidates first.")
    channels, ndim = model_latent_format(model)
    metas = list(store.iter_groups(dataset))
    foreign = [m for m in metas if not isinstance(m, StoreError)
               and (len(m.latent_shape) != ndim or m.latent_shape[0] != channels)]
    if foreign:
        m = foreign[0]
        raise NodeInputError(
            node, "dataset",
            f"dataset '{dataset}' holds latents of shape {m.latent_shape} per candidate (model '{m.model_name}'), "
            f"but this MODEL denoises {channels}-channel latents of {ndim} dimensions.",
            "train on a dataset collected with this model, or connect the model the dataset was collected with.",
        )
    try:
        pairset = build_pairs(metas, mode, min_gap)  # type: ignore[arg-type]
    except ValueError as e:
        raise NodeInputError(node, "pair_mode", str(e)) from e
    if not pairset.pairs:
        why = []
        if pairset.skipped_ties:
            why.append(f"{pairset.skipped_ties} candidate pairs tie")
        if pairset.skipped_small_gap:
            why.append(f"{pairset.skipped_small_gap} pairs have a score gap below min_gap {min_gap}")
        if pairset.skipped_groups:
            why.append(f"{pairset.skipped_groups} groups are marked skipped")
        if pairset.unordered_groups:
            why.append(f"{pairset.unordered_groups} groups have neither a ranking nor two reward scores")
        if pairset.errors:
            why.append(f"{len(pairset.errors)} groups cannot be read")
        raise NodeInputError(
            node, "dataset", f"dataset '{dataset}' gives no preference pair ({'; '.join(why) or 'no groups'}).",
            "rank some groups in the ranking panel (a strict order), score the candidates, or lower min_gap.",
        )
    errors = list(pairset.errors)
    used = sorted({p.group_id for p in pairset.pairs})
    latents: dict[str, torch.Tensor] = {}
    positive: dict[str, list] = {}
    masks: dict[str, torch.Tensor] = {}
    hashes = {m.model_hash for m in metas if not isinstance(m, StoreError) and m.group_id in set(used) and m.model_hash}
    for gid in used:
        try:
            group = store.load_group(dataset, gid)
        except StoreError as e:
            errors.append(str(e))
            continue
        if group.noise_mask is not None:
            from .noise_masks import replay_mask

            try:
                masks[gid] = replay_mask(group.noise_mask, group.latents, list(group.latents.shape[1:]))
            except ValueError as e:
                errors.append(f"group '{gid}' of dataset '{dataset}' (sampled with a noise mask): {e}")
                continue
        latents[gid] = group.latents
        positive[gid] = from_store(group.positive)
    pairs = [p for p in pairset.pairs if p.group_id in latents]
    if not pairs:
        raise NodeInputError(node, "dataset", f"no group of dataset '{dataset}' can be trained on: {errors[:3]}",
                             "see the log for each group's problem.")
    shapes = {tuple(lat.shape[1:]) for lat in latents.values()}
    if len(shapes) > 1:
        raise NodeInputError(node, "dataset", f"dataset '{dataset}' mixes latent sizes {sorted(shapes)}.",
                             "train on groups of one resolution and length (collect them in separate datasets).")
    for e in errors:
        log.warning("GAPO trainer: left out %s", e)
    return TrainingData(dataset=dataset, pairs=pairs, latents=latents, positive=positive,
                        latent_shape=list(next(iter(shapes))), groups_total=total,
                        skipped_ties=pairset.skipped_ties, skipped_small_gap=pairset.skipped_small_gap,
                        errors=errors, model_hashes=hashes, noise_masks=masks)


def latent_dims(shape: Sequence[int]) -> str:
    return "×".join(str(s) for s in shape)
