"""Flow metrics throughput at 480x832 (Wan 480p) and the share of their time spent in OpenCV's DIS `calc`.

Two paths on the same clip, side by side:
- core: `flow_metrics.clip_flow_stats` (resize to the working size, DIS both ways per pair, warping, checks);
- facade: `AnimeReward` with both flow dimensions, `score` on the clip (validation, frame selection, the
  flow scorers' stats cache, both dimensions).
`calc` is timed by handing the flow code a DIS object that forwards to the real one and adds up the time of
its `calc` calls. Target: calc > 80 % of the time (the rest is overhead around the flow itself).
"""

from __future__ import annotations

import contextlib
import statistics
import time
from collections.abc import Iterator
from typing import Any

import torch

FRAMES = 25  # 24 consecutive pairs
HEIGHT, WIDTH = 480, 832
REPEATS = 3


class TimedDIS:
    """A DIS optical-flow object that adds up the wall time of its `calc` calls."""

    def __init__(self) -> None:
        import cv2

        self.inner = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)
        self.seconds = 0.0
        self.calls = 0

    def calc(self, a: Any, b: Any, flow: Any) -> Any:
        t0 = time.perf_counter()
        out = self.inner.calc(a, b, flow)
        self.seconds += time.perf_counter() - t0
        self.calls += 1
        return out


@contextlib.contextmanager
def _timed_dis(flow_metrics: Any) -> Iterator[list[TimedDIS]]:
    """Make flow_metrics create TimedDIS objects (its `_dis` factory), collecting them."""
    made: list[TimedDIS] = []
    original = flow_metrics._dis

    def factory() -> TimedDIS:
        made.append(TimedDIS())
        return made[-1]

    flow_metrics._dis = factory
    try:
        yield made
    finally:
        flow_metrics._dis = original


def _clear_cache(flow_metrics: Any) -> None:
    items = getattr(getattr(flow_metrics, "_CACHE", None), "items", None)
    if isinstance(items, dict):
        items.clear()


def run(repeats: int = REPEATS) -> list[tuple[str, str]]:
    from animereward import flow_metrics
    from animereward.reward import AnimeReward
    from animereward.synthetic_clips import make_clip

    clip = make_clip(7, frames=FRAMES, height=HEIGHT, width=WIDTH)
    reward = AnimeReward.from_folder(None)

    core_total, core_calc, fac_total, fac_calc, resize, key = [], [], [], [], [], []
    for i in range(repeats + 1):  # the first round is the warm-up
        dis = TimedDIS()
        t0 = time.perf_counter()
        flow_metrics.clip_flow_stats(clip, dis)
        t_core = time.perf_counter() - t0

        _clear_cache(flow_metrics)
        with _timed_dis(flow_metrics) as made:
            t0 = time.perf_counter()
            reward.score(clip)
            t_fac = time.perf_counter() - t0

        t0 = time.perf_counter()
        flow_metrics.working_frames(clip)
        t_resize = time.perf_counter() - t0
        cache = getattr(flow_metrics, "_CACHE", None)
        t_key = 0.0
        if hasattr(cache, "key"):
            t0 = time.perf_counter()
            cache.key(clip)
            t_key = time.perf_counter() - t0
        if i == 0:
            continue
        core_total.append(t_core)
        core_calc.append(dis.seconds)
        fac_total.append(t_fac)
        fac_calc.append(sum(d.seconds for d in made))
        resize.append(t_resize)
        key.append(t_key)

    med = statistics.median
    ct, cc, ft, fc = med(core_total), med(core_calc), med(fac_total), med(fac_calc)
    rs, ky = med(resize), med(key)
    lines = [
        f"(c) flow metrics: {FRAMES} frames {WIDTH}x{HEIGHT} (working size "
        f"{'x'.join(map(str, flow_metrics.working_size(HEIGHT, WIDTH)[::-1]))}), CPU "
        f"({torch.get_num_threads()} torch threads), median of {repeats}",
        f"{'path':<44}{'s':>8}{'frames/s':>10}{'calc s':>9}{'calc share':>12}",
        f"{'core: clip_flow_stats':<44}{ct:>8.3f}{FRAMES / ct:>10.1f}{cc:>9.3f}{cc / ct:>12.1%}",
        f"{'facade: score (flow_smoothness + flow_motion)':<44}{ft:>8.3f}{FRAMES / ft:>10.1f}{fc:>9.3f}"
        f"{fc / ft:>12.1%}",
        f"  of the core time: resize to the working size {rs:.3f} s ({rs / ct:.1%}); other per-pair work "
        f"(remap, checks) {ct - cc - rs:.3f} s ({(ct - cc - rs) / ct:.1%})",
        f"  facade - core: {ft - ct:+.3f} s; one stats-cache key of this clip (hash of the frames) takes {ky:.3f} s",
    ]
    print("\n".join(lines), flush=True)
    return [
        (f"Flow: frames/s at {WIDTH}x{HEIGHT} (core / through the facade)", f"{FRAMES / ct:.1f} / {FRAMES / ft:.1f}"),
        ("Flow: share of time in DIS calc (core / through the facade)",
         f"{cc / ct:.1%} / {fc / ft:.1%}  (target > 80%)"),
    ]


if __name__ == "__main__":
    run()
