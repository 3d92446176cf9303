"""Flow metrics throughput at 480x832 (Wan 480p) and the share of their time spent in OpenCV's DIS `calc`.

Three measurements on the same clip, side by side in each repeat:
- core: `flow_metrics.clip_flow_stats` (resize to the working size, DIS both ways per pair, warping, checks;
  the resize and per-pair statistics run on a helper thread beside the DIS calls);
- facade: `AnimeReward.score` with both flow dimensions (validation, frame selection, the per-call memo that
  lets the second dimension reuse the first one's flow);
- DIS alone: the same 2 x 24 `calc` calls on the same working-size frames, back to back, nothing else.
`calc` is timed by handing the flow code a DIS object that forwards to the real one and adds up the time of
its `calc` calls. Target: calc > 80 % of the time. Because the helper thread competes with DIS for the CPU,
a `calc` call inside the pipeline can take longer than alone, which would flatter that share; "DIS alone /
total" divides by the uncontended cost instead, and is the stricter figure.
"""

from __future__ import annotations

import contextlib
import itertools
import statistics
import time
from collections.abc import Iterator
from typing import Any

import torch

FRAMES = 25  # 24 consecutive pairs
HEIGHT, WIDTH = 480, 832
REPEATS = 5


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


def _dis_alone(gray: list[Any]) -> float:
    dis = TimedDIS()
    t0 = time.perf_counter()
    for a, b in itertools.pairwise(gray):
        dis.calc(a, b, None)
        dis.calc(b, a, None)
    return time.perf_counter() - t0


def run(repeats: int = REPEATS) -> list[tuple[str, str]]:
    from animereward import flow_metrics
    from animereward.reward import AnimeReward
    from animereward.synthetic_clips import make_clip

    clip = make_clip(7, frames=FRAMES, height=HEIGHT, width=WIDTH)
    reward = AnimeReward.from_folder(None)
    arr = clip.numpy()
    size = flow_metrics.working_size(HEIGHT, WIDTH)
    gray = [flow_metrics._small_frame(arr, k, size)[1] for k in range(FRAMES)]

    core_total, core_calc, fac_total, fac_calc, alone, resize = [], [], [], [], [], []
    for i in range(repeats + 1):  # the first round is the warm-up
        dis = TimedDIS()
        t0 = time.perf_counter()
        flow_metrics.clip_flow_stats(clip, dis)
        t_core = time.perf_counter() - t0

        with _timed_dis(flow_metrics) as made:
            t0 = time.perf_counter()
            reward.score(clip)
            t_fac = time.perf_counter() - t0

        t_alone = _dis_alone(gray)
        t0 = time.perf_counter()
        flow_metrics.working_frames(clip)
        t_resize = time.perf_counter() - t0
        if i == 0:
            continue
        core_total.append(t_core)
        core_calc.append(dis.seconds)
        fac_total.append(t_fac)
        fac_calc.append(sum(d.seconds for d in made))
        alone.append(t_alone)
        resize.append(t_resize)

    med = statistics.median
    rng = range(repeats)
    share_core = med(core_calc[r] / core_total[r] for r in rng)
    share_fac = med(fac_calc[r] / fac_total[r] for r in rng)
    alone_core = med(alone[r] / core_total[r] for r in rng)
    alone_fac = med(alone[r] / fac_total[r] for r in rng)
    ct, ft, al, rs = med(core_total), med(fac_total), med(alone), med(resize)
    lines = [
        f"(c) flow metrics: {FRAMES} frames {WIDTH}x{HEIGHT} (working size {size[1]}x{size[0]}), CPU "
        f"({torch.get_num_threads()} torch threads), median of {repeats}",
        f"{'path':<46}{'s':>8}{'frames/s':>10}{'calc s':>9}{'calc share':>12}{'alone/total':>13}",
        f"{'core: clip_flow_stats':<46}{ct:>8.3f}{FRAMES / ct:>10.1f}{med(core_calc):>9.3f}{share_core:>12.1%}"
        f"{alone_core:>13.1%}",
        f"{'facade: score (flow_smoothness + flow_motion)':<46}{ft:>8.3f}{FRAMES / ft:>10.1f}{med(fac_calc):>9.3f}"
        f"{share_fac:>12.1%}{alone_fac:>13.1%}",
        f"{'DIS alone: the 48 calc calls back to back':<46}{al:>8.3f}{FRAMES / al:>10.1f}",
        f"  the resize to the working size alone (now overlapped with DIS) takes {rs:.3f} s",
        f"  one DIS calc call at the working size: {1000 * al / (2 * (FRAMES - 1)):.1f} ms (alone); an 81-frame "
        f"clip (Wan's default length) through the facade: {81 / (FRAMES / ft):.2f} s",
    ]
    print("\n".join(lines), flush=True)
    return [
        (f"Flow: frames/s at {WIDTH}x{HEIGHT} (core / through the facade)", f"{FRAMES / ct:.1f} / {FRAMES / ft:.1f}"),
        ("Flow: share of time in DIS calc (core / through the facade)",
         f"{share_core:.1%} / {share_fac:.1%}  (target > 80%)"),
        ("Flow: DIS alone / total (core / through the facade)", f"{alone_core:.1%} / {alone_fac:.1%}"),
        (f"Flow: one DIS calc call at {size[1]}x{size[0]} / an 81-frame clip through the facade",
         f"{1000 * al / (2 * (FRAMES - 1)):.1f} ms / {81 / (FRAMES / ft):.2f} s"),
    ]


if __name__ == "__main__":
    run()
