"""character_consistency on CPU with the small configs of the real classes (tests/animereward_testkit/characters.py).

- gallery: loading a 20-image gallery from its cached embeddings vs recomputing them (images read, resized,
  through the recogniser), same run; the issue's bar is a cache at least 20× cheaper;
- per stage on one 8-frame 96×160 clip (detect on frame 0, SAM2 propagation of 2 boxes, recogniser crops +
  gallery score), each stage in its own fresh process (bench/character_stages.py): wall time of the first run
  (cold) and the median of the next ones (warm), the resident set after the stage's set-up, and the peak
  resident set while the stage ran (the kernel's high-water mark, reset after the set-up: every allocator
  counted, nothing sampled); beside them, the same process right after its imports, before anything is built
  (the baseline of an empty process).
The small models say nothing about the official sizes (ViT-L, Grounding-DINO-base, SAM2.1 base+), only about
the pipeline's own overheads and their ratios.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from animereward_testkit.characters import make_gallery

from animereward import character_gallery as cg
from animereward.character_recognizer import CharacterRecognizer, state_fingerprint

from .character_stages import RECOGNISER, STAGES
from .timing import median_seconds

REPO = Path(__file__).resolve().parents[1]
MIB = 1024.0  # KiB per MiB


def stage_in_fresh_process(stage: str) -> dict:
    """Run bench/character_stages.py for one stage in a new interpreter; its JSON result."""
    env = dict(os.environ, TQDM_DISABLE="1", PYTHONWARNINGS="ignore")
    out = subprocess.run([sys.executable, "-m", "bench.character_stages", stage], cwd=REPO, env=env,
                         capture_output=True, text=True, timeout=300)
    if out.returncode != 0:
        raise RuntimeError(f"stage {stage} failed:\n{out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def gallery_ratio() -> tuple[float, float, int]:
    """(recompute seconds, cached seconds, images) for a 20-image gallery with the stage bench's recogniser."""
    import torch

    torch.manual_seed(0)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as the stage processes (bench/character_stages.py says why)
    recognizer = CharacterRecognizer(**RECOGNISER).eval()
    recognizer.weights_hash = state_fingerprint(recognizer)
    with tempfile.TemporaryDirectory() as tmp:
        root = make_gallery(Path(tmp) / "characters", per_identity=10)
        cache = cg.cache_path(root, recognizer.weights_hash)

        def recompute() -> None:
            cache.unlink(missing_ok=True)
            cg.load_gallery(cg.GalleryIndex.from_folders(root), recognizer)

        def cached() -> None:
            cg.load_gallery(cg.GalleryIndex.from_folders(root), recognizer)

        t_re = median_seconds(recompute, 2, warmup=True)
        cached()
        t_hit = median_seconds(cached, 7)
        torch.set_num_threads(threads)
        return t_re, t_hit, len(cg.GalleryIndex.from_folders(root).entries)


def run() -> list[tuple[str, str]]:
    results: list[tuple[str, str]] = []
    t_re, t_hit, n = gallery_ratio()
    print(f"gallery of {n} images: recompute {t_re * 1e3:.1f} ms, cached {t_hit * 1e3:.2f} ms, {t_re / t_hit:.0f}x")
    results.append((f"character gallery: cached vs recompute ({n} images)", f"{t_re / t_hit:.0f}x cheaper"))

    rows = {s: stage_in_fresh_process(s) for s in STAGES}
    print(f"{'stage':>9}  {'cold ms':>8}  {'warm ms':>8}  {'imports only':>12}  {'after set-up':>12}  "
          f"{'peak in stage':>13}  {'rise':>8}  {'traced (py/numpy)':>17}")
    for s in STAGES:
        r = rows[s]
        base = r["imports_rss_kib"]
        rise = (r["stage_peak_kib"] - r["setup_rss_kib"]) / MIB
        warm = f"{r['warm_s'] * 1e3:8.0f}" if r["warm_s"] is not None else f"{'-':>8}"
        traced = (f"{r['tracemalloc_peak_bytes'] / 2**20:14.1f} MiB" if r["tracemalloc_peak_bytes"] is not None
                  else f"{'-':>17}")
        print(f"{s:>9}  {r['cold_s'] * 1e3:8.0f}  {warm}  {base / MIB:8.0f} MiB  {r['setup_rss_kib'] / MIB:8.0f} MiB  "
              f"{r['stage_peak_kib'] / MIB:9.0f} MiB  {rise:+6.1f} MiB  {traced}")
        if not r["peak_resettable"]:
            print(f"  ({s}: /proc/self/clear_refs not writable: the peak includes the set-up)")
        results.append((f"character {s} (8-frame 96x160 clip, small configs, fresh process)",
                        f"{r['cold_s'] * 1e3:.0f} ms cold, peak {r['stage_peak_kib'] / MIB:.0f} MiB "
                        f"(+{rise:.0f} over set-up; {base / MIB:.0f} after imports)"))
    return results
