"""The main job, headless: start ComfyUI with the pack, run the example workflow over HTTP, print the outputs.

Run through `make demo` (which does the set-up first). Each run gets a fresh ComfyUI base directory under
out/demo-<timestamp>/ (models, output, server log), so nothing from an earlier run is reused.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.append(str(REPO_ROOT / "tests"))

from animereward_testkit import comfy_paths  # noqa: E402
from animereward_testkit.server import ComfyServer  # noqa: E402
from animereward_testkit.tiny_models import write_tiny_wan  # noqa: E402
from animereward_testkit.workflows import smoke_workflow  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=None, help="base directory (default: out/demo-<time>)")
    ns = parser.parse_args()
    base = ns.out or REPO_ROOT / "out" / time.strftime("demo-%Y%m%d-%H%M%S")
    comfy_dir = comfy_paths.comfyui_dir()
    comfy_paths.make_base_dir(base)
    comfy_paths.import_comfy(comfy_dir, base)
    write_tiny_wan(base / "models")

    with ComfyServer(comfy_dir, base, base / "server.log") as server:
        print(f"[demo] ComfyUI {server.get('/system_stats')['system']['comfyui_version']} at {server.url}")
        t0 = time.perf_counter()
        entry = server.run(smoke_workflow(prefix="animereward_demo/smoke", frames=9, batch=2))
        print(f"[demo] smoke workflow (tiny Wan 2.1, 2 clips x 9 frames) ran in {time.perf_counter() - t0:.1f}s")
    files = [base / "output" / img["subfolder"] / img["filename"]
             for out in entry["outputs"].values() for img in out.get("images", [])]
    for f in files:
        print(f"[demo] wrote {f}")
    print(f"[demo] outputs are in {base / 'output'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
