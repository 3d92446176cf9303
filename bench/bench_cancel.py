"""Cancel latency of every long-running node of the pack, and the process RSS over 20 repeated runs.

Each node runs inside ComfyUI's real executor (in this process, on the CPU). A watcher thread waits until the
executor reports the node as executing, waits a set offset, then presses Cancel the way the button does
(`interrupt_current_processing(True)`); the latency is the time from that press until the executor has
stopped and returned. The worst latency over the offsets is printed per node; the target is 2 s.

Workloads (the cases of issue 14 where Cancel used to wait for a whole batch):
- Synthetic Clips: 6 clips x 1,024 frames (320x192).
- Best-of-N: 16 candidates x 17 frames (320x192), text_video_consistency at full size (BLIP ViT-B/16 +
  BERT, seeded random weights) on the CPU, plus both flow metrics.
- Score: one clip of 600 frames (640x360), the same dimensions.
- Overlay: 600 frames (640x360).
RSS: Synthetic Clips -> Best-of-N (4 clips, flow metrics) -> Score -> Overlay, 20 runs in a fresh process
before the Cancel runs; RSS after each run (after gc). Run 1 includes first-use imports and caches, so the
ratio printed is run 20 / run 2.
"""

from __future__ import annotations

import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
for _p in (REPO_ROOT, REPO_ROOT / "tests"):  # appended: ComfyUI's own `nodes` must stay first once loaded
    if str(_p) not in sys.path:
        sys.path.append(str(_p))

TEXT = ("text_video_consistency", "flow_smoothness", "flow_motion")
TARGET_S = 2.0


def _comfy() -> Any:
    from animereward_testkit import comfy_paths, inprocess

    base = comfy_paths.make_base_dir(Path(tempfile.mkdtemp(prefix="animereward-bench-cancel-")))
    comfy = inprocess.start(comfy_paths.comfyui_dir(), base)
    return comfy


def cancel_latency(comfy: Any, wf: dict[str, Any], node: str, offset: float) -> float | None:
    """Seconds from Cancel (pressed `offset` s after `node` starts) until the executor returns; None when
    the node finished before the press."""
    import comfy.model_management as mm
    from animereward_testkit.inprocess import WorkflowError

    pressed: list[float] = []
    done = threading.Event()

    def watch() -> None:
        while not done.is_set():
            if any(e == "executing" and isinstance(d, dict) and d.get("node") == node
                   for e, d in list(comfy.server.messages)):
                break
            time.sleep(0.005)
        if done.wait(offset):
            return
        pressed.append(time.perf_counter())
        mm.interrupt_current_processing(True)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        comfy.run(wf)
        stopped = None
    except WorkflowError as err:
        if not (err.details or {}).get("interrupted"):
            raise
        stopped = time.perf_counter()
    finally:
        done.set()
        watcher.join()
        mm.interrupt_current_processing(False)
    if stopped is None or not pressed:
        return None
    return stopped - pressed[0]


def _workloads(weights: str) -> list[tuple[str, str, dict[str, Any], list[float]]]:
    from animereward_testkit.reward_workflows import best_of_n, capture, loader, score, synthetic

    prompt = "a girl with blue hair waves at the camera"
    text_loader = loader(weights, enabled=TEXT, skip_missing=False)
    return [
        ("AnimeReward Synthetic Clips", "1",
         {"1": synthetic(", ".join(["clean", "flicker", "jitter", "freeze", "distortion", "static"]), frames=1024,
                         width=320, height=192), "c": capture(image=["1", 0])}, [0.5, 3.0]),
        ("AnimeReward Best-of-N", "11",
         {"1": synthetic(", ".join(["clean", "flicker", "jitter", "freeze"] * 4), frames=17, width=320, height=192),
          "10": text_loader, "11": best_of_n(["1", 0], ["1", 1], prompt=prompt), "c": capture(int=["11", 1])},
         [0.5, 3.0, 8.0]),
        ("AnimeReward Score", "2",
         {"1": synthetic("jitter", frames=600, width=640, height=360), "10": text_loader,
          "2": score(frames=["1", 0], prompt=prompt), "c": capture(float=["2", 0])}, [0.5, 3.0]),
        ("AnimeReward Overlay", "3",
         {"1": synthetic("clean", frames=600, width=640, height=360),
          "j": {"class_type": "PrimitiveString", "inputs": {"value": '{"scores": {"flow_motion": 0.4}, "total": 0.4}'}},
          "3": {"class_type": "AnimeRewardOverlay", "inputs": {"frames": ["1", 0], "scores_json": ["j", 0],
                                                               "position": "top-left", "opacity": 0.9,
                                                               "clip_index": 0}},
          "c": capture(image=["3", 0])}, [0.05, 0.2]),
    ]


def bench_cancel(comfy: Any) -> dict[str, tuple[float | None, list[str]]]:
    from animereward_testkit import official_weights as ow

    root = comfy.base_dir / "models" / "animereward" / "bench_text"
    if not root.exists():
        ow.make_root(root, ("text_video_consistency",))
    out: dict[str, tuple[float | None, list[str]]] = {}
    for name, node, wf, offsets in _workloads("bench_text"):
        worst, notes = None, []
        for offset in offsets:
            lat = cancel_latency(comfy, wf, node, offset)
            notes.append(f"+{offset:g}s: " + ("finished first" if lat is None else f"{lat:.2f}s"))
            print(f"  {name:<28} cancel at +{offset:g}s -> {notes[-1]}", flush=True)
            if lat is not None:
                worst = lat if worst is None else max(worst, lat)
        out[name] = (worst, notes)
    return out


def bench_rss(comfy: Any, runs: int = 20) -> list[float]:
    """RSS (MiB) after each of `runs` runs of a graph using every node."""
    import psutil
    from animereward_testkit.reward_workflows import best_of_n, capture, loader, score, synthetic

    wf = {"1": synthetic("clean, flicker, jitter, freeze", frames=17, width=320, height=192), "10": loader(),
          "11": best_of_n(["1", 0], ["1", 1]), "2": score(frames=["11", 0]),
          "3": {"class_type": "AnimeRewardOverlay", "inputs": {"frames": ["11", 0], "scores_json": ["2", 8],
                                                               "position": "top-left", "opacity": 0.9,
                                                               "clip_index": 0}},
          "c": capture(image=["3", 0], int=["11", 1])}
    import gc

    proc = psutil.Process()
    rss = []
    for _ in range(runs):
        comfy.run(wf)
        gc.collect()
        rss.append(proc.memory_info().rss / 2**20)
    return rss


def run() -> list[tuple[str, str]]:
    comfy = _comfy()
    rss = bench_rss(comfy)  # first, in a process that has run nothing else
    rows = [("RSS over 20 repeated runs (all nodes, flow metrics)",
             f"run 1 {rss[0]:.0f} MiB, run 2 {rss[1]:.0f}, run 10 {rss[9]:.0f}, run 20 {rss[-1]:.0f}, max "
             f"{max(rss):.0f}; run 20 / run 2 = {rss[-1] / rss[1]:.3f}x")]
    for name, (worst, notes) in bench_cancel(comfy).items():
        verdict = "n/a" if worst is None else f"{worst:.2f} s ({worst / TARGET_S:.2f}x the 2 s target)"
        rows.append((f"Cancel latency, worst: {name}", f"{verdict}  [{'; '.join(notes)}]"))
    return rows


if __name__ == "__main__":
    for n, v in run():
        print(f"{n:<60} {v}")
