"""The pieces the facade is made of, each on its own: the hooks protocol (shape before each forward, no Cancel
machinery when nobody can cancel), the scorer cache, the per-call memo, the results (`RewardScores.from_json`,
`rank`)."""

from __future__ import annotations

import threading

import pytest
import torch
from torch import nn

from animereward.hooks import BatchShape, CallbackHooks, Hooks
from animereward.reward import AnimeReward
from animereward.scorer_cache import ScorerCache
from animereward.scorer_protocol import ClipBatch
from animereward.scores import RewardScores, ScoresFormatError, rank
from animereward.synthetic_clips import make_clip


class Mean(nn.Module):
    """Mean brightness; records whether Cancel's per-layer checks were installed during its forward."""

    def __init__(self, name: str) -> None:
        super().__init__()
        self.name = name
        self.inner = nn.Identity()
        self.checked: list[bool] = []

    def preprocess(self, batch: ClipBatch) -> dict[str, torch.Tensor]:
        return {"x": torch.stack([f.float().mean() for f in batch.frames])}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.checked.append(bool(self.inner._forward_pre_hooks))
        return self.inner(x)


def test_hooks_see_each_chunk_shape_before_its_forward() -> None:
    module = Mean("visual_motion")
    reward = AnimeReward(["visual_motion"], builders={"visual_motion": lambda *a, **k: module})
    clips = [make_clip(i, frames=t, height=32 + 8 * i, width=48) for i, t in enumerate((30, 3, 5))]
    shapes: list[BatchShape] = []
    reward.score_batch(clips, batch_size=2, hooks=CallbackHooks(on_before_forward=lambda d, m, s: shapes.append(s)))
    # the official sample: 24 of 30 frames, all of 3 or 5; the largest frame of each chunk
    assert shapes == [BatchShape(clips=2, frames=24, height=40, width=48), BatchShape(1, 5, 48, 48)]
    assert shapes[0].total_frames == 48


def test_cancel_checks_only_when_someone_can_cancel() -> None:
    module = Mean("visual_motion")
    reward = AnimeReward(["visual_motion"], builders={"visual_motion": lambda *a, **k: module})
    clip = make_clip(0, frames=3, height=16, width=16)
    reward.score(clip)  # no hooks
    reward.score(clip, hooks=Hooks())  # hooks that do not override should_stop
    reward.score(clip, hooks=CallbackHooks(on_progress=lambda *a: None))
    reward.score(clip, hooks=CallbackHooks(on_should_stop=lambda: None))

    class Stoppable(Hooks):
        def should_stop(self) -> None:
            pass

    reward.score(clip, hooks=Stoppable())
    assert module.checked == [False, False, False, True, True]


def test_scorer_cache_builds_once_and_releases() -> None:
    built: list[str] = []

    def build(name: str, path: object, **kwargs: object) -> nn.Module:
        built.append(name)
        return Mean(name)

    cache = ScorerCache(["visual_motion", "flow_motion"], paths={}, builders={"visual_motion": build},
                        dtype=torch.float32, device=torch.device("cpu"), quantization=None)
    assert cache.loaded() == {}
    first = cache.get("visual_motion")
    assert cache.get("visual_motion") is first and built == ["visual_motion"]
    assert type(cache.get("flow_motion")).__name__ == "FlowScorer"  # the registry's builder
    cache.release("visual_motion")
    assert set(cache.loaded()) == {"flow_motion"}
    assert cache.get("visual_motion") is not first and built == ["visual_motion"] * 2


def test_two_calls_at_once_keep_their_own_memo() -> None:
    """Two threads scoring at the same time: each call's memo is its own, so neither sees or clears the other's."""
    clips = [make_clip(s, frames=9, height=48, width=64, defects=d) for s, d in ((1, ()), (2, ("flicker",)))]
    serial = [AnimeReward.from_folder(None).score(c).scores for c in clips]
    results: dict[int, dict[str, float]] = {}
    barrier = threading.Barrier(2)

    def work(i: int) -> None:
        reward = AnimeReward.from_folder(None)
        barrier.wait()
        results[i] = reward.score(clips[i]).scores

    threads = [threading.Thread(target=work, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert [results[0], results[1]] == serial


def test_rank_is_best_first_with_ties_in_generation_order() -> None:
    assert rank([0.2, 0.9, 0.5, 0.9, 0.2]) == [1, 3, 2, 0, 4]
    assert rank([]) == []


def test_scores_json_round_trip_and_errors() -> None:
    scores = RewardScores(scores={"flow_motion": 0.25, "visual_motion": 0.75}, weights={"flow_motion": 0.5,
                          "visual_motion": 0.5}, total=0.5, extras={"flow_motion": {"warp": 0.01}})
    again = RewardScores.from_json(scores.to_json())
    assert again == scores and again.official() == {"visual_motion": 0.75}
    ranking = '{"order": [1, 0], "clips": [' + scores.to_json() + ', {"scores": {"flow_motion": 0.1}}]}'
    second = RewardScores.from_json(ranking, clip_index=1)
    assert second.scores == {"flow_motion": 0.1} and second.total is None and second.weights == {}
    cases = [
        ('{"scores": {"flow_motion": "high"}}', 0, "text", ["score of 'flow_motion'", "'high'", "not a number"]),
        ('{"scores": {"flow_motion": NaN}}', 0, "text", ["nan"]),
        ('{"scores": {"flow_motion": 0.1}, "total": true}', 0, "text", ["total", "True"]),
        ('{"total": 0.5}', 0, "text", ["no 'scores' object"]),
        ("scores: 0.5", 0, "text", ["not JSON"]),
        (ranking, 2, "clip_index", ["2 is out of range for 2 clips", "0..1"]),
    ]
    for text, index, arg, needles in cases:
        with pytest.raises(ScoresFormatError) as err:
            RewardScores.from_json(text, clip_index=index)
        assert err.value.arg == arg and all(n in str(err.value) for n in needles), (text, str(err.value))
        assert isinstance(err.value, ValueError)
