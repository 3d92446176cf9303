"""One stage of character_consistency in a fresh process, for bench_character's per-stage memory figures.

`python -m bench.character_stages <stage>` (from the repo root) builds what the stage needs (small configs of
the real classes, tests/animereward_testkit/characters.py; one 8-frame 96×160 clip), then runs the stage and
prints one JSON line. Stages: `detect` (Grounding-DINO on frame 0), `track` (SAM2 propagation of 2 first-frame boxes through the 8 frames),
`recognise` (the recogniser on one object's 8 crops and the gallery score, gallery embeddings already loaded).

Memory is the kernel's resident-set high-water mark (`VmHWM` in /proc/self/status), reset after the set-up by
writing 5 to /proc/self/clear_refs (after giving free heap pages back to the OS), so `stage_peak` is the peak resident set while the stage ran, every
allocator included (torch's CPU allocator, numpy, Python), not a sampled value. `tracemalloc_peak` is the
part of it that Python's allocator tracing sees (Python objects and numpy buffers; not torch tensors), from
one more run under tracemalloc (recognise only). The first run in the process is timed and measured (`cold`, lazy
initialisation included); then `warm` is the median of two more runs. One intra-op thread: on this shared
2-core machine two threads made the SAM2 propagation 5 to 50 times slower (oversubscription), one gives
stable figures.
"""

from __future__ import annotations

import gc
import json
import re
import statistics
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

STAGES = ("detect", "track", "recognise")
FRAMES, HEIGHT, WIDTH = 8, 96, 160
RECOGNISER = {"width": 256, "depth": 4, "heads": 4, "embed_dim": 64}  # bigger than the tests', far below ViT-L
WARM_RUNS = {"detect": 2, "track": 2, "recognise": 2}
TRACED = ("recognise",)  # one more run each costs time; the crops (numpy) are where Python-side memory goes


def _status_kib(field: str) -> int:
    with open("/proc/self/status") as f:
        return int(re.search(rf"^{field}:\s+(\d+) kB", f.read(), re.M).group(1))  # type: ignore[union-attr]


def _trim_heap() -> None:
    """Give free heap pages back to the OS (glibc), so the stage's rise counts memory it needs even where it
    would reuse pages the set-up freed (without this the rise swung 13-34 MiB between runs)."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def _reset_peak() -> bool:
    """Reset VmHWM to the current resident set (Linux ≥ 4.0); False where it cannot be reset."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def clip() -> tuple[Any, Any]:
    """uint8 frames [8,96,160,3] of the drawn character moving, and its masks (uint16 label map)."""
    import numpy as np
    from animereward_testkit.characters import draw_character

    drawn = [draw_character("Akane", size=HEIGHT, jitter=i - 4) for i in range(FRAMES)]
    pad = (WIDTH - HEIGHT) // 2
    frames = np.stack([np.pad(f, ((0, 0), (pad, pad), (0, 0)), constant_values=128) for f, _ in drawn])
    labels = np.stack([np.pad(m, ((0, 0), (pad, pad))) for _, m in drawn]).astype(np.uint16)
    return np.ascontiguousarray(frames), labels


def build(stage: str, tmp: Path) -> Callable[[], Any]:
    """Everything the stage needs, built; returns the stage as a call."""
    import torch
    from animereward_testkit.characters import make_gallery, small_detector, small_tracker

    from animereward import character_gallery as cg
    from animereward.character_consistency import score_tracks
    from animereward.character_recognizer import CharacterRecognizer, state_fingerprint
    from animereward.character_tracking import Tracks, detect_characters, track_characters

    torch.manual_seed(0)
    frames, labels = clip()
    if stage == "detect":
        det, proc = small_detector()
        return lambda: detect_characters(det, proc, frames[0])
    if stage == "track":
        trk, proc = small_tracker()
        boxes = [(52, 20, 108, 76), (40, 10, 120, 90)]  # around the character, as a detector would give
        return lambda: track_characters(trk, proc, frames, boxes)
    if stage == "recognise":
        rec = CharacterRecognizer(**RECOGNISER).eval()
        rec.weights_hash = state_fingerprint(rec)
        gallery = cg.load_gallery(cg.GalleryIndex.from_folders(make_gallery(tmp / "characters", per_identity=3)), rec)
        tracks = Tracks([(0, 0, 1, 1)], labels)
        return lambda: score_tracks(frames, tracks, rec, gallery)
    raise SystemExit(f"unknown stage {stage!r}; one of {STAGES}")


def _import_all(stage: str) -> None:
    """The modules the stage uses (its process's baseline): transformers' model classes for detect/track."""
    import numpy  # noqa: F401
    import torch  # noqa: F401
    from animereward_testkit import characters

    from animereward import character_consistency, character_gallery, character_tracking  # noqa: F401

    if stage in ("detect", "track"):
        characters.transformers_classes()  # the lazy transformers classes of the detector and the tracker


def measure(stage: str) -> dict[str, Any]:
    if stage not in STAGES:
        raise SystemExit(f"unknown stage {stage!r}; one of {STAGES}")
    _import_all(stage)
    import torch

    torch.set_num_threads(1)  # stable on a shared machine; the figures are per-stage costs, not throughput
    gc.collect()
    imports_rss = _status_kib("VmRSS")  # the baseline: a process with the imports, nothing built
    with tempfile.TemporaryDirectory() as tmp, torch.inference_mode():
        run = build(stage, Path(tmp))
        gc.collect()
        _trim_heap()
        setup_rss = _status_kib("VmRSS")
        setup_peak = _status_kib("VmHWM")
        resettable = _reset_peak()
        t0 = time.perf_counter()
        run()
        cold = time.perf_counter() - t0
        stage_peak = _status_kib("VmHWM")
        warm = []
        for _ in range(WARM_RUNS.get(stage, 0)):
            t0 = time.perf_counter()
            run()
            warm.append(time.perf_counter() - t0)
        traced = None
        if stage in TRACED:
            tracemalloc.start()
            run()
            traced = tracemalloc.get_traced_memory()[1]
            tracemalloc.stop()
    return {"stage": stage, "imports_rss_kib": imports_rss, "setup_rss_kib": setup_rss, "setup_peak_kib": setup_peak,
            "stage_peak_kib": stage_peak, "peak_resettable": resettable, "cold_s": cold,
            "warm_s": statistics.median(warm) if warm else None, "tracemalloc_peak_bytes": traced}


if __name__ == "__main__":
    root = Path(__file__).resolve().parents[1]
    for p in (root, root / "tests"):
        if str(p) not in sys.path:
            sys.path.append(str(p))
    print(json.dumps(measure(sys.argv[1])), flush=True)
