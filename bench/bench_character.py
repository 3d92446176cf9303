"""character_consistency on CPU with the small configs of the real classes (tests/animereward_testkit/characters.py).

- gallery: loading a 40-image gallery from its cached embeddings vs recomputing them (images read, resized,
  through the recogniser), same run; the issue's bar is a cache at least 20× cheaper;
- per stage on one 8-frame 96×160 clip (detect on frame 0, SAM2 propagation, recogniser crops + gallery score):
  median wall time and the peak resident-memory rise above the stage's start (sampled every 2 ms).
The small models say nothing about the official sizes (ViT-L, Grounding-DINO-base, SAM2.1 base+), only about
the pipeline's own overheads and their ratios.
"""

from __future__ import annotations

import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import psutil
from animereward_testkit.characters import draw_character, make_gallery, small_detector, small_tracker

from animereward import character_gallery as cg
from animereward.character_consistency import score_tracks
from animereward.character_recognizer import CharacterRecognizer, state_fingerprint
from animereward.character_tracking import Tracks, detect_characters, track_characters

from .timing import median_seconds


def _peak_rss_rise(fn: Callable[[], Any]) -> tuple[Any, float, int]:
    """(result, seconds, peak RSS rise in bytes) of one call."""
    proc = psutil.Process()
    base = proc.memory_info().rss
    peak = [base]
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], proc.memory_info().rss)
            time.sleep(0.002)

    th = threading.Thread(target=sample, daemon=True)
    th.start()
    t0 = time.perf_counter()
    try:
        out = fn()
    finally:
        secs = time.perf_counter() - t0
        done.set()
        th.join()
    return out, secs, max(0, peak[0] - base)


def run() -> list[tuple[str, str]]:
    import torch

    torch.manual_seed(0)
    recognizer = CharacterRecognizer(width=256, depth=4, heads=4, embed_dim=64).eval()
    recognizer.weights_hash = state_fingerprint(recognizer)
    results: list[tuple[str, str]] = []
    with tempfile.TemporaryDirectory() as tmp:
        root = make_gallery(Path(tmp) / "characters", per_identity=20)
        index = cg.GalleryIndex.from_folders(root)
        cache = cg.cache_path(root, recognizer.weights_hash)

        def recompute() -> None:
            cache.unlink(missing_ok=True)
            cg.load_gallery(cg.GalleryIndex.from_folders(root), recognizer)

        def cached() -> None:
            cg.load_gallery(cg.GalleryIndex.from_folders(root), recognizer)

        t_re = median_seconds(recompute, 3, warmup=True)
        cached()
        t_hit = median_seconds(cached, 7)
        print(f"gallery of {len(index.entries)} images: recompute {t_re * 1e3:.1f} ms, cached {t_hit * 1e3:.2f} ms, "
              f"{t_re / t_hit:.0f}x")
        results.append(("character gallery: cached vs recompute (40 images)", f"{t_re / t_hit:.0f}x cheaper"))

        gallery = cg.load_gallery(index, recognizer)
        det, det_proc = small_detector()
        trk, trk_proc = small_tracker()
        frames = np.stack([draw_character("Akane", size=96, jitter=i - 4)[0] for i in range(8)])
        frames = np.ascontiguousarray(np.pad(frames, ((0, 0), (0, 0), (32, 32), (0, 0)), constant_values=128))
        boxes = detect_characters(det, det_proc, frames[0], box_threshold=0.0, text_threshold=0.0)[:2]
        _peak_rss_rise(lambda: track_characters(trk, trk_proc, frames[:2], boxes))  # warm-up
        stages = {}
        _, stages["detect"], mem_d = _peak_rss_rise(lambda: detect_characters(det, det_proc, frames[0]))
        labels, stages["track"], mem_t = _peak_rss_rise(lambda: track_characters(trk, trk_proc, frames, boxes))
        # Recognise on the drawn character's own masks, so the crops are the same whatever the random tracker does.
        masks = np.stack([draw_character("Akane", size=96, jitter=i - 4)[1] for i in range(8)])
        masks = np.pad(masks, ((0, 0), (0, 0), (32, 32))).astype(np.uint16)
        _, stages["recognise"], mem_r = _peak_rss_rise(
            lambda: score_tracks(frames, Tracks([(0, 0, 1, 1)], masks), recognizer, gallery))
        for name, mem in (("detect", mem_d), ("track", mem_t), ("recognise", mem_r)):
            print(f"{name:>9}: {stages[name] * 1e3:8.1f} ms, peak RSS +{mem / 2**20:.1f} MiB")
            results.append((f"character {name} (8-frame 96x160 clip, small configs)",
                            f"{stages[name] * 1e3:.0f} ms, +{mem / 2**20:.0f} MiB"))
        print(f"tracked objects: {len(boxes)}; labels {labels.shape}")
    return results
