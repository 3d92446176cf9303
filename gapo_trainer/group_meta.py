"""What a group is, apart from its tensors: the metadata dataclasses and their JSON form (meta.json and
ranking.json), with the checks that catch a damaged or inconsistent file. Kept apart from the store's file
handling so listings, pairs and the routes share one definition."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any

import torch

from .conditioning_codec import Conditioning
from .store_errors import StoreError

FORMAT_VERSION = 1
META_FILE, RANKING_FILE = "meta.json", "ranking.json"
PREVIEW_EXT_PATTERN = re.compile(r"[a-z0-9]{1,8}")


@dataclass
class CandidateMeta:
    """One candidate of a group: its generation index, seed, reward scores per dimension and total."""

    index: int
    seed: int | None = None
    scores: dict[str, float | None] = field(default_factory=dict)
    total: float | None = None


@dataclass
class GroupMeta:
    """Everything about a group except its tensors (what listings and pair building read)."""

    group_id: str
    dataset: str
    created: float
    format_version: int
    n: int
    latent_shape: list[int]  # per candidate, e.g. [C, T, H, W]
    latent_dtype: str  # torch dtype name, e.g. "bfloat16"
    model_name: str
    model_hash: str | None
    prompt: str | None
    negative_prompt: str | None
    sampler: dict[str, Any]
    candidates: list[CandidateMeta]
    human_ranking: list[int] | None  # candidate indices, best first
    ranked_at: float | None
    skipped: bool
    preview_files: list[str]

    @property
    def ranked(self) -> bool:
        """Whether the artist has ranked or skipped the group."""
        return self.human_ranking is not None or self.skipped


@dataclass
class Group:
    meta: GroupMeta
    latents: torch.Tensor  # [N, C, T, H, W] (or [N, C, H, W] for image models)
    positive: Conditioning
    negative: Conditioning
    noise_mask: torch.Tensor | None = None  # the sampled LATENT's noise mask, when it had one


@dataclass
class GroupPage:
    groups: list[GroupMeta]
    next_cursor: str | None
    total: int
    errors: list[str] = field(default_factory=list)  # groups on this page that could not be read


def finite_or_none(v: Any, what: str) -> float | None:
    if v is None:
        return None
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise StoreError(f"{what} must be a number or None, got {type(v).__name__}")
    v = float(v)
    return v if math.isfinite(v) else None  # a NaN score carries no order: stored as unknown


def candidate_records(candidates: list[CandidateMeta], n: int, dataset: str) -> list[dict[str, Any]]:
    """The candidates' JSON records, checked: one per latent, in generation order; non-finite scores -> None."""
    if len(candidates) != n:
        raise StoreError(f"{len(candidates)} candidate records for {n} latents", dataset=dataset)
    out = []
    try:
        for i, c in enumerate(candidates):
            if not isinstance(c, CandidateMeta) or c.index != i:
                raise StoreError(f"candidate {i}: expected CandidateMeta(index={i}, ...)")
            if c.seed is not None and (isinstance(c.seed, bool) or not isinstance(c.seed, int)):
                raise StoreError(f"candidate {i}: seed must be an int or None")
            scores = {}
            for k, v in dict(c.scores).items():
                if not isinstance(k, str):
                    raise StoreError(f"candidate {i}: score names must be str")
                scores[k] = finite_or_none(v, f"candidate {i} score '{k}'")
            out.append({"index": i, "seed": c.seed, "scores": scores,
                        "total": finite_or_none(c.total, f"candidate {i} total")})
    except StoreError as e:
        raise StoreError(str(e), dataset=dataset) from None
    return out


def meta_from_json(raw: dict[str, Any], ranking: Any, dataset: str, group_id: str) -> GroupMeta:
    """Parse meta.json (and ranking.json, or None) into a GroupMeta, checking that they are consistent."""

    def fail(msg: str) -> StoreError:
        return StoreError(msg, dataset=dataset, group_id=group_id)

    try:
        if raw["group_id"] != group_id:
            raise fail(f"{META_FILE} names group '{raw['group_id']}'; the folder was renamed or copied")
        n = int(raw["n"])
        candidates = [CandidateMeta(index=int(c["index"]), seed=c.get("seed"), scores=dict(c["scores"]),
                                    total=c.get("total")) for c in raw["candidates"]]
        meta = GroupMeta(
            group_id=group_id, dataset=dataset, created=float(raw["created"]),
            format_version=int(raw["format_version"]), n=n,
            latent_shape=[int(s) for s in raw["latent_shape"]], latent_dtype=str(raw["latent_dtype"]),
            model_name=str(raw["model_name"]), model_hash=raw.get("model_hash"), prompt=raw.get("prompt"),
            negative_prompt=raw.get("negative_prompt"), sampler=dict(raw.get("sampler") or {}),
            candidates=candidates, human_ranking=None, ranked_at=None, skipped=False,
            preview_files=[str(p) for p in raw.get("preview_files", [])])
    except StoreError:
        raise
    except (KeyError, TypeError, ValueError) as e:
        raise fail(f"{META_FILE} is damaged (field {e})") from None
    if len(candidates) != n or [c.index for c in candidates] != list(range(n)) or not meta.latent_shape:
        raise fail(f"{META_FILE} is damaged (candidates do not match n={n})")
    if any(not PREVIEW_EXT_PATTERN.fullmatch(p.split(".", 1)[-1]) or not p.startswith("preview_")
           for p in meta.preview_files):
        raise fail(f"{META_FILE} names preview files this store does not write")
    if ranking is not None:
        try:
            order, skipped, ranked_at = ranking["human_ranking"], bool(ranking["skipped"]), ranking["ranked_at"]
        except (KeyError, TypeError):
            raise fail(f"{RANKING_FILE} is damaged") from None
        if order is not None and (not isinstance(order, list) or sorted(order) != list(range(n))):
            raise fail(f"{RANKING_FILE} holds {order!r}, not a permutation of the {n} candidates")
        meta.human_ranking, meta.skipped = order, skipped
        meta.ranked_at = float(ranked_at) if ranked_at is not None else None
    return meta
