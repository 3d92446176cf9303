"""The main job, headless: start ComfyUI with the pack, rerank synthetic candidate clips with AnimeReward
Best-of-N (the example workflow workflows/api/synthetic_best_of_n.json) over HTTP, and print the outputs.

The candidates come from the library's clip generator: one clean clip and its twins with flicker, jitter
and a freeze. With `--weights DIR` (or $ANIMEREWARD_WEIGHTS) pointing at the official reward files, every
dimension whose files are there is scored too; without, the weight-free flow metrics are.
Each run gets a fresh ComfyUI base directory under out/demo-<time>/ (models, output, server log).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.append(str(REPO_ROOT / "tests"))

from animereward_testkit import comfy_paths  # noqa: E402
from animereward_testkit.server import ComfyServer  # noqa: E402

WORKFLOW = REPO_ROOT / "workflows" / "api" / "synthetic_best_of_n.json"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=None, help="base directory (default: out/demo-<time>)")
    parser.add_argument("--weights", type=Path, default=os.environ.get("ANIMEREWARD_WEIGHTS"),
                        help="folder with the official AnimeReward files (default: flow metrics only)")
    ns = parser.parse_args()
    base = (ns.out or REPO_ROOT / "out" / time.strftime("demo-%Y%m%d-%H%M%S")).resolve()
    comfy_paths.make_base_dir(base, with_test_nodes=False)
    wf = json.loads(WORKFLOW.read_text())
    if ns.weights:
        (base / "models" / "animereward" / "official").symlink_to(Path(ns.weights).resolve())
        wf["10"]["inputs"]["weights"] = "official"

    with ComfyServer(comfy_paths.comfyui_dir(), base, base / "server.log") as server:
        print(f"[demo] ComfyUI {server.get('/system_stats')['system']['comfyui_version']} at {server.url}")
        t0 = time.perf_counter()
        entry, shown = server.run_with_messages(wf, "animereward.scores", timeout=1800)
        if entry["status"]["status_str"] != "success":
            raise SystemExit(f"[demo] the workflow failed; server log: {base / 'server.log'}")
        print(f"[demo] best-of-N over 4 synthetic candidates ran in {time.perf_counter() - t0:.1f}s")
    out = entry["outputs"]
    # Best-of-N (node 11) sends its score table to the page as a message, not as a job output
    ranking = next(m["scores"] for m in shown if m["node"] == "11")
    scores_file = base / "output" / "animereward" / "scores.json"
    scores_file.write_text(json.dumps(ranking, indent=1))
    defects = [s.strip() for s in wf["1"]["inputs"]["defects"].split(",")]
    print("[demo] ranking (best first):")
    for rank, i in enumerate(ranking["order"]):
        clip = ranking["clips"][i]
        dims = ", ".join(f"{k} {v:.3f}" for k, v in clip["scores"].items())
        print(f"[demo]   #{rank + 1} clip {i} ({defects[i]}): total {clip['total']:.3f} ({dims})")
    for node, what in (("21", "contact sheet"), ("20", "best clip"), ("24", "best clip with overlay")):
        for img in out[node]["images"]:
            print(f"[demo] {what}: {base / 'output' / img['subfolder'] / img['filename']}")
    print(f"[demo] scores JSON: {scores_file}")
    print(f"[demo] outputs are in {base / 'output'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
