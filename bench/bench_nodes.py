"""Node-layer costs, measured in one run against the library on the same inputs.

- Best-of-N node overhead: the node's wall time inside ComfyUI's real executor (splitting, batched scoring,
  ordering, top-k, contact sheet, UI payload) divided by the library's `score_batch` on the same clips with
  a reward loaded the same way. Target: at most 1.10.
- Overlay and contact sheet: milliseconds per 1080p frame, against a plain copy of the same frames.
Each repeat uses new clips (a new seed), the same on both sides, and no cached optical flow is reused.
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

from .timing import median_seconds

REPO_ROOT = Path(__file__).resolve().parents[1]
for _p in (REPO_ROOT, REPO_ROOT / "tests"):  # appended: ComfyUI's own `nodes` must stay first once loaded
    if str(_p) not in sys.path:
        sys.path.append(str(_p))

N, T, H, W = 4, 25, 240, 416
REPEATS = 5


def bench_best_of_n_overhead() -> dict[str, float]:
    from animereward_testkit import comfy_paths, inprocess
    from animereward_testkit.reward_workflows import best_of_n, loader, synthetic

    from animereward import AnimeReward
    from animereward.synthetic_clips import make_clip

    base = comfy_paths.make_base_dir(Path(tempfile.mkdtemp(prefix="animereward-bench-")))
    comfy = inprocess.start(comfy_paths.comfyui_dir(), base)
    node_s, lib_s = [], []
    for rep in range(REPEATS + 1):  # the first round warms up imports and the DIS object
        seed = 100 + rep
        wf = {"1": synthetic("clean, flicker, jitter, freeze", frames=T, seed=seed, width=W, height=H),
              "10": loader(), "11": best_of_n(["1", 0], ["1", 1], sheet_frames=4)}
        comfy.run(wf)
        t_node = comfy.node_seconds("11")
        # the very clips the node scored (the synthetic node calls make_clip the same way), with no cached
        # flow statistics: DIS time depends on the content, so both sides must see the same frames
        clips = [make_clip(seed, frames=T, height=H, width=W, defects=d)
                 for d in ((), ("flicker",), ("jitter",), ("freeze",))]
        reward = AnimeReward.from_folder(None, ["flow_smoothness", "flow_motion"])
        t0 = time.perf_counter()
        reward.score_batch(clips)
        t_lib = time.perf_counter() - t0
        if rep:
            node_s.append(t_node)
            lib_s.append(t_lib)
    node, lib = statistics.median(node_s), statistics.median(lib_s)
    return {"best_of_n_node_s": node, "score_batch_s": lib, "node_overhead_ratio": node / lib}


def bench_drawing_per_1080p_frame() -> dict[str, float]:
    from animereward.contact_sheet import contact_sheet
    from animereward.overlay import draw_scores

    frames = torch.rand(16, 1080, 1920, 3)
    scores = {"visual_smoothness": 0.8, "visual_motion": 0.4, "visual_appeal": 0.7, "text_video_consistency": 0.6,
              "image_video_consistency": 0.9, "flow_smoothness": 0.75, "flow_motion": 0.3}

    def timed(fn) -> float:
        return median_seconds(fn, 5, warmup=True)

    copy = timed(lambda: frames.clone())
    overlay = timed(lambda: draw_scores(frames, scores, 0.66, "top-left", 0.85))
    clips = frames.reshape(4, 4, 1080, 1920, 3)
    sheet = timed(lambda: contact_sheet(clips, [2, 0, 3, 1], [scores] * 4, [0.6] * 4, frames_per_row=4))
    n = frames.shape[0]
    return {"copy_ms_per_frame": 1e3 * copy / n, "overlay_ms_per_frame": 1e3 * overlay / n,
            "overlay_vs_copy_ratio": overlay / copy, "contact_sheet_ms_per_frame": 1e3 * sheet / n}


def run() -> list[tuple[str, str]]:
    rows = []
    r = bench_best_of_n_overhead()
    rows.append((f"Best-of-N node / score_batch ({N} clips x {T} frames {W}x{H}, flow metrics)",
                 f"{r['node_overhead_ratio']:.3f}  ({r['best_of_n_node_s']:.2f}s vs {r['score_batch_s']:.2f}s;"
                 " target <= 1.10)"))
    d = bench_drawing_per_1080p_frame()
    rows.append(("Overlay per 1080p frame", f"{d['overlay_ms_per_frame']:.1f} ms  ({d['overlay_vs_copy_ratio']:.2f}x a "
                 f"plain copy at {d['copy_ms_per_frame']:.1f} ms)"))
    rows.append(("Contact sheet per 1080p input frame", f"{d['contact_sheet_ms_per_frame']:.1f} ms"))
    return rows


if __name__ == "__main__":
    for name, value in run():
        print(f"{name:<70} {value}")
