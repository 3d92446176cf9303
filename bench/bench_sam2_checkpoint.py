"""Loading the character tracker at its official size (SAM2.1 hiera-base+, 80.8 M values, 324 MB) on CPU.

An official-format `sam2.1_hiera_base_plus.pt` is written from the official key list (tests/golden/sam2/) with
deterministic weights, and an HF folder from the same weights. Each load runs in a fresh Python process (the
imports are done before the clock starts), timed, with the peak resident-memory rise above the process's
state before the load (sampled every 2 ms). Baseline, same run: transformers' own
`Sam2VideoModel.from_pretrained(folder)` (not strict) on the HF folder.

- `.pt`, first load: weights_only read, key conversion, strict check, the `.safetensors` copy written;
- `.pt`, later loads: the copy is read (safetensors, no pickle);
- HF folder through `load_sam2_video_model` (strict).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
KEYS = REPO / "tests" / "golden" / "sam2" / "official_keys.json"


def _worker(case: str, path: str) -> None:
    """In a fresh process: import, then time one load; prints a JSON line."""
    import psutil
    import torch
    from transformers import Sam2VideoModel

    from animereward.sam2_checkpoint import load_sam2_video_model

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
    if case == "baseline":
        model = Sam2VideoModel.from_pretrained(path, dtype=torch.float32).eval()
    else:
        model = load_sam2_video_model(Path(path))
    secs = time.perf_counter() - t0
    done.set()
    th.join()
    n = sum(p.numel() for p in model.parameters())
    print(json.dumps({"seconds": secs, "rise": max(0, peak[0] - base), "params": n}))


def _run(case: str, path: Path) -> dict:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO), str(REPO / "tests")]))
    out = subprocess.run([sys.executable, "-m", "bench.bench_sam2_checkpoint", "--worker", case, str(path)],
                         cwd=REPO, env=env, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def run() -> list[tuple[str, str]]:
    import torch
    from golden.deterministic_weights import deterministic_state_dict

    from animereward.sam2_checkpoint import load_sam2_video_model

    rows = json.loads(KEYS.read_text())
    with tempfile.TemporaryDirectory() as d:
        pt = Path(d) / "sam2_checkpoints" / "sam2.1_hiera_base_plus.pt"
        pt.parent.mkdir()
        torch.save({"model": deterministic_state_dict({k: s for k, s, _ in rows}, 1)}, pt)
        folder = Path(d) / "sam2.1-hiera-base-plus"
        load_sam2_video_model(pt).save_pretrained(folder)  # the HF layout of the same weights
        pt.with_suffix(".safetensors").unlink()  # so that the first timed load converts again
        mb = pt.stat().st_size / 2**20
        results = {
            "pt first load": _run("pt", pt),
            "pt later load": _run("pt", pt),
            "HF folder (ours, strict)": _run("hf", folder),
            "baseline: transformers from_pretrained": _run("baseline", folder),
        }
    base = results["baseline: transformers from_pretrained"]
    print(f"official .pt: {mb:.0f} MB, {results['pt first load']['params']:,} parameters")
    print(f"{'load':<40} {'seconds':>8} {'peak RSS rise':>14} {'time vs baseline':>17}")
    for name, r in results.items():
        print(f"{name:<40} {r['seconds']:>8.2f} {r['rise'] / 2**20:>10.0f} MiB {r['seconds'] / base['seconds']:>16.2f}x")
    out = []
    for name in ("pt first load", "pt later load", "HF folder (ours, strict)"):
        r = results[name]
        out.append((f"sam2 b+ {name}: time / memory vs transformers from_pretrained",
                    f"{r['seconds'] / base['seconds']:.2f}x / {r['rise'] / max(base['rise'], 1):.2f}x "
                    f"({r['seconds']:.1f} s, +{r['rise'] / 2**20:.0f} MiB)"))
    return out


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--worker":
        _worker(sys.argv[2], sys.argv[3])
    else:
        for p in (REPO, REPO / "tests"):
            sys.path.append(str(p))
        for name, value in run():
            print(name, value)
