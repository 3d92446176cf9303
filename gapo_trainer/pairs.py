"""Preference pairs for GAPO from stored groups: who wins, who loses, and the two scores the gap reads.

GAPO weights each pair's Diffusion-DPO loss by g = 2^{s_w} - 2^{s_l} (DESIGN §2), so every pair must have
s_winner > s_loser, both in [0, 1]. Scores per group (docs/dataset.md, "Pairs and gaps"):

- reward order (no human ranking): s = the candidate's reward total clamped to [0, 1]; order = totals
  descending, ties in generation order; candidates without a total take no part.
- human order, every total known and the clamped totals all distinct: the group's reward scores sorted
  descending and handed out in the human order (best-ranked gets the highest score, and so on). When the human
  agrees with the reward this is exactly the reward's scores; when they disagree the pair follows the human
  and keeps the reward's sense of how far apart the group's candidates are, and s_w > s_l holds by construction.
- human order otherwise (totals missing or tied): rank-derived scores, evenly spaced: s = (n-1-r)/(n-1) for
  rank r (0 = best), so 1 for the best, 0 for the worst.

A pair's `gap` is the score gap s_winner - s_loser (> 0). Pairs whose scores tie are skipped and counted
(`skipped_ties`), as are pairs with gap < min_gap (`skipped_small_gap`). Skipped groups give no pairs.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Literal

from .store import GroupMeta, StoreError

PairMode = Literal["all", "best_vs_rest", "adjacent"]
PAIR_MODES: tuple[str, ...] = ("all", "best_vs_rest", "adjacent")


@dataclass(frozen=True)
class PreferencePair:
    """Candidate `winner` is preferred to `loser` within one group; s_* in [0,1], s_winner > s_loser."""

    dataset: str
    group_id: str
    winner: int
    loser: int
    s_winner: float
    s_loser: float
    gap: float  # s_winner - s_loser
    source: Literal["reward", "human"]


@dataclass
class PairSet:
    pairs: list[PreferencePair]
    skipped_ties: int = 0
    skipped_small_gap: int = 0
    groups_used: int = 0
    errors: list[str] = field(default_factory=list)
    skipped_groups: int = 0  # groups the artist marked "skip"
    unordered_groups: int = 0  # no human ranking and fewer than two reward totals


def _clamp01(x: float) -> float:
    return min(1.0, max(0.0, float(x)))


def rank_scores(n: int) -> list[float]:
    """Rank-derived scores, best first: evenly spaced from 1 down to 0."""
    return [1.0] if n == 1 else [(n - 1 - r) / (n - 1) for r in range(n)]


def group_order(meta: GroupMeta) -> tuple[list[int], dict[int, float], Literal["reward", "human"]] | None:
    """The group's order (candidate indices, best first), each candidate's score in [0,1], and the source.
    None when the group gives no order (skipped, or no human ranking and fewer than two totals).
    Raises ValueError for a human ranking that is not a permutation of the candidates."""
    if meta.skipped:
        return None
    totals = [c.total for c in meta.candidates]
    if meta.human_ranking is not None:
        order = list(meta.human_ranking)
        if sorted(order) != list(range(meta.n)):
            raise ValueError(f"human ranking {order} is not a permutation of the {meta.n} candidates")
        clamped = [_clamp01(t) for t in totals if t is not None]
        if len(clamped) == meta.n and len(set(clamped)) == meta.n:
            by_rank = sorted(clamped, reverse=True)
        else:
            by_rank = rank_scores(meta.n)
        return order, {c: by_rank[r] for r, c in enumerate(order)}, "human"
    known = [i for i, t in enumerate(totals) if t is not None]
    if len(known) < 2:
        return None
    order = sorted(known, key=lambda i: -totals[i])  # stable: ties keep generation order
    return order, {i: _clamp01(totals[i]) for i in known}, "reward"


def _index_pairs(k: int, mode: PairMode) -> list[tuple[int, int]]:
    if mode == "all":
        return [(a, b) for a in range(k) for b in range(a + 1, k)]
    if mode == "best_vs_rest":
        return [(0, b) for b in range(1, k)]
    return [(a, a + 1) for a in range(k - 1)]


def build_pairs(groups: Iterable[GroupMeta | StoreError], mode: PairMode = "all",
                min_gap: float = 0.0) -> PairSet:
    """Pairs from every group (StoreErrors from `PreferenceStore.iter_groups` become `errors`)."""
    if mode not in PAIR_MODES:
        raise ValueError(f"pair mode {mode!r} is not one of {', '.join(PAIR_MODES)}")
    if not 0.0 <= float(min_gap) <= 1.0:
        raise ValueError(f"min_gap {min_gap} must lie in [0, 1] (a difference of scores in [0, 1])")
    out = PairSet(pairs=[])
    for meta in groups:
        if isinstance(meta, StoreError):
            out.errors.append(str(meta))
            continue
        try:
            got = group_order(meta)
        except ValueError as e:
            out.errors.append(str(StoreError(str(e), dataset=meta.dataset, group_id=meta.group_id)))
            continue
        if got is None:
            if meta.skipped:
                out.skipped_groups += 1
            else:
                out.unordered_groups += 1
            continue
        order, score, source = got
        used = False
        for a, b in _index_pairs(len(order), mode):
            w, lo = order[a], order[b]
            s_w, s_l = score[w], score[lo]
            if s_w <= s_l:
                out.skipped_ties += 1
            elif s_w - s_l < min_gap:
                out.skipped_small_gap += 1
            else:
                out.pairs.append(PreferencePair(meta.dataset, meta.group_id, w, lo, s_w, s_l, s_w - s_l, source))
                used = True
        out.groups_used += used
    return out
