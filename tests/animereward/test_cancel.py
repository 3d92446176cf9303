"""Cancel stops scoring inside a chunk: between the layers of a slow forward and between DIS frame pairs,
not only between chunks; a Cancel seen first by a helper thread is not lost; scope ends leave no hooks.

The slow scorer is a real module whose layers each take a fixed time, so the time to stop is measured, not
assumed. The flow metric is the real one on a real synthetic clip.
"""

from __future__ import annotations

import threading
import time

import pytest
import torch
from torch import nn

from animereward import AnimeReward, cancel
from animereward.flow_metrics import clip_flow_stats
from animereward.hooks import CallbackHooks
from animereward.scorer_protocol import ClipBatch
from animereward.synthetic_clips import make_clip

LAYER_S = 0.02
LAYERS = 100  # a 2 s forward for one chunk


class Cancelled(BaseException):
    """Like ComfyUI's InterruptProcessingException on current releases: not an Exception."""


class Slow(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        time.sleep(LAYER_S)
        return x


class SlowScorer(nn.Module):
    name = "visual_motion"

    def __init__(self) -> None:
        super().__init__()
        self.layers = nn.Sequential(*[Slow() for _ in range(LAYERS)])
        self.calls = 0

    def preprocess(self, batch: ClipBatch) -> dict[str, torch.Tensor]:
        return {"x": torch.zeros(len(batch))}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        return self.layers(x) + 0.5


def stop_after(seconds: float):
    start = time.monotonic()

    def should_stop() -> None:
        if time.monotonic() - start > seconds:
            raise Cancelled()

    return should_stop


def test_cancel_stops_a_forward_between_layers():
    scorer = SlowScorer()
    reward = AnimeReward(["visual_motion"], builders={"visual_motion": lambda *a, **k: scorer})
    clips = [make_clip(i, frames=3, height=16, width=16) for i in range(4)]
    t0 = time.monotonic()
    with pytest.raises(Cancelled):
        reward.score_batch(clips, hooks=CallbackHooks(on_should_stop=stop_after(0.3)), batch_size=8)  # one chunk: a 2 s forward
    elapsed = time.monotonic() - t0
    assert scorer.calls == 1 and elapsed < 0.3 + 0.5, elapsed  # stopped mid-forward, not after 2 s
    assert not any(m._forward_pre_hooks for m in scorer.modules())  # the checks are gone with the scope
    reward.score_batch(clips[:1], batch_size=8)  # and the next call runs to the end
    assert scorer.calls == 2


def test_cancel_stops_dis_between_frame_pairs():
    clip = make_clip(0, frames=60, height=192, width=320)
    t0 = time.monotonic()
    clip_flow_stats(clip)
    full = time.monotonic() - t0
    t0 = time.monotonic()
    with pytest.raises(Cancelled), cancel.scope(stop_after(full / 6)):
        clip_flow_stats(clip)
    assert time.monotonic() - t0 < full * 0.6, (time.monotonic() - t0, full)


def test_a_cancel_seen_by_another_thread_latches_for_every_thread():
    flag = {"pressed": True}

    def comfy_like_check() -> None:  # ComfyUI's check clears its flag when it raises
        if flag["pressed"]:
            flag["pressed"] = False
            raise Cancelled()

    seen: list[BaseException] = []
    with cancel.scope(comfy_like_check):
        def helper() -> None:
            try:
                cancel.check()
            except Cancelled as exc:
                seen.append(exc)

        t = threading.Thread(target=helper)
        t.start()
        t.join()
        assert seen and flag["pressed"] is False
        with pytest.raises(Cancelled):
            cancel.check()  # the main thread still stops
    cancel.check()  # outside the scope: a no-op
