"""Pairs and gaps for every mode, from reward totals, from human rankings, and when the two disagree."""

from __future__ import annotations

from pathlib import Path

import pytest
from animereward_testkit.store_data import group_kwargs

from gapo_trainer.pairs import build_pairs, group_order, rank_scores
from gapo_trainer.store import CandidateMeta, GroupMeta, PreferenceStore, StoreError


def meta(totals: list[float | None], ranking: list[int] | None = None, skipped: bool = False,
         gid: str = "g1") -> GroupMeta:
    n = len(totals)
    return GroupMeta(
        group_id=gid, dataset="d", created=0.0, format_version=1, n=n, latent_shape=[16, 1, 2, 2],
        latent_dtype="bfloat16", model_name="m", model_hash=None, prompt=None, negative_prompt=None, sampler={},
        candidates=[CandidateMeta(i, None, {}, t) for i, t in enumerate(totals)], human_ranking=ranking,
        ranked_at=1.0 if ranking else None, skipped=skipped, preview_files=[])


def triples(ps) -> list[tuple[int, int, float, float]]:
    return [(p.winner, p.loser, p.s_winner, p.s_loser) for p in ps.pairs]


def test_reward_order_every_mode():
    g = meta([0.2, 0.9, 0.5, 0.7])  # order 1, 3, 2, 0
    assert triples(build_pairs([g], "adjacent")) == [(1, 3, 0.9, 0.7), (3, 2, 0.7, 0.5), (2, 0, 0.5, 0.2)]
    assert triples(build_pairs([g], "best_vs_rest")) == [(1, 3, 0.9, 0.7), (1, 2, 0.9, 0.5), (1, 0, 0.9, 0.2)]
    all_pairs = build_pairs([g], "all")
    assert [(w, lo) for w, lo, *_ in triples(all_pairs)] == [(1, 3), (1, 2), (1, 0), (3, 2), (3, 0), (2, 0)]
    for p in all_pairs.pairs:
        assert p.source == "reward" and p.gap == pytest.approx(p.s_winner - p.s_loser) and p.gap > 0
    assert all_pairs.groups_used == 1 and all_pairs.skipped_ties == 0


def test_ties_and_small_gaps_are_skipped_and_counted():
    g = meta([0.5, 0.8, 0.5, 0.52])  # order 1, 3, 0, 2 (0 and 2 tie: generation order)
    ps = build_pairs([g], "all", min_gap=0.05)
    assert (ps.skipped_ties, ps.skipped_small_gap) == (1, 2)  # (0,2) tie; (3,0) and (3,2) gap 0.02
    assert [(w, lo) for w, lo, *_ in triples(ps)] == [(1, 3), (1, 0), (1, 2)]
    adj = build_pairs([g], "adjacent")
    assert [(w, lo) for w, lo, *_ in triples(adj)] == [(1, 3), (3, 0)] and adj.skipped_ties == 1
    assert build_pairs([meta([0.4, 0.4])]).groups_used == 0


def test_scores_outside_unit_interval_are_clamped_and_order_kept():
    ps = build_pairs([meta([1.3, -0.2, 0.6])], "all")
    assert triples(ps) == [(0, 2, 1.0, 0.6), (0, 1, 1.0, 0.0), (2, 1, 0.6, 0.0)]
    ps = build_pairs([meta([1.3, 1.1, 0.6])], "all")  # 1.3 and 1.1 both clamp to 1: a tie
    assert ps.skipped_ties == 1 and len(ps.pairs) == 2


def test_human_order_agreeing_with_the_reward_keeps_the_reward_scores():
    reward = build_pairs([meta([0.2, 0.9, 0.5])], "all")
    human = build_pairs([meta([0.2, 0.9, 0.5], ranking=[1, 2, 0])], "all")
    assert triples(human) == triples(reward) and {p.source for p in human.pairs} == {"human"}


def test_human_order_contradicting_the_reward_follows_the_human_with_positive_gaps():
    # reward: 1 > 2 > 0; the artist says 0 > 2 > 1 (a full reversal)
    ps = build_pairs([meta([0.2, 0.9, 0.5], ranking=[0, 2, 1])], "all")
    assert triples(ps) == [(0, 2, 0.9, 0.5), (0, 1, 0.9, 0.2), (2, 1, 0.5, 0.2)]
    for mode in ("all", "best_vs_rest", "adjacent"):
        for p in build_pairs([meta([0.2, 0.9, 0.5, 0.1], ranking=[3, 0, 2, 1])], mode).pairs:
            assert 0.0 <= p.s_loser < p.s_winner <= 1.0 and p.gap > 0 and p.source == "human"
            assert 2 ** p.s_winner - 2 ** p.s_loser > 0  # GAPO's weight is positive


def test_only_a_human_order_gives_rank_derived_scores():
    ps = build_pairs([meta([None, None, None, None], ranking=[2, 0, 3, 1])], "all")
    assert triples(ps)[0] == (2, 0, 1.0, 2 / 3)
    assert triples(ps)[-1] == (3, 1, 1 / 3, 0.0)
    assert len(ps.pairs) == 6 and ps.skipped_ties == 0
    # tied or partly missing totals also fall back to ranks: the human's strict order is never lost
    tied = build_pairs([meta([0.5, 0.5, 0.5], ranking=[1, 0, 2])], "adjacent")
    assert triples(tied) == [(1, 0, 1.0, 0.5), (0, 2, 0.5, 0.0)]
    partial = build_pairs([meta([0.9, None, 0.1], ranking=[1, 2, 0])], "best_vs_rest")
    assert triples(partial) == [(1, 2, 1.0, 0.5), (1, 0, 1.0, 0.0)]
    assert rank_scores(1) == [1.0] and rank_scores(5) == [1.0, 0.75, 0.5, 0.25, 0.0]


def test_skipped_unscored_and_bad_groups():
    groups = [meta([0.1, 0.9], skipped=True, gid="a"), meta([0.1, None], gid="b"),
              meta([0.1, 0.2], ranking=[0, 0], gid="c"), StoreError("truncated", dataset="d", group_id="e"),
              meta([0.3, 0.6], gid="f")]
    ps = build_pairs(groups)
    assert ps.skipped_groups == 1 and ps.unordered_groups == 1 and ps.groups_used == 1
    assert [p.group_id for p in ps.pairs] == ["f"]
    assert len(ps.errors) == 2 and "group 'c'" in ps.errors[0] and "group 'e'" in ps.errors[1]
    assert group_order(meta([0.1, 0.9], skipped=True)) is None
    with pytest.raises(ValueError, match="pair mode"):
        build_pairs([], "random")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="min_gap"):
        build_pairs([], "all", min_gap=2.0)


def test_pairs_from_a_real_store(tmp_path: Path):
    store = PreferenceStore(tmp_path)
    a = store.add_group("d", **group_kwargs(n=3, totals=[0.1, 0.6, 0.4], latent=(16, 1, 2, 2)))
    b = store.add_group("d", **group_kwargs(n=3, totals=[0.7, 0.2, 0.5], latent=(16, 1, 2, 2), seed=1))
    c = store.add_group("d", **group_kwargs(n=2, latent=(16, 1, 2, 2), seed=2))
    store.set_ranking("d", b.group_id, [1, 0, 2])  # the artist disagrees with the reward
    store.set_ranking("d", c.group_id, None, skipped=True)
    ps = build_pairs(store.iter_groups("d"), "best_vs_rest")
    assert [(p.group_id, p.winner, p.loser, p.source) for p in ps.pairs] == [
        (a.group_id, 1, 2, "reward"), (a.group_id, 1, 0, "reward"),
        (b.group_id, 1, 0, "human"), (b.group_id, 1, 2, "human")]
    assert [(p.s_winner, p.s_loser) for p in ps.pairs[2:]] == [(0.7, 0.5), (0.7, 0.2)]
    assert ps.skipped_groups == 1 and ps.groups_used == 2
