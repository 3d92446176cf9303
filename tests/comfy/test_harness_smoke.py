"""The harness itself: tiny Wan models run through ComfyUI's executor in-process and over HTTP, and the pack loads."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from animereward_testkit.comfy_paths import PACK_LINK_NAME, REPO_ROOT
from animereward_testkit.workflows import smoke_workflow
from PIL import Image

pytestmark = pytest.mark.comfy

HEAVY_MODULES = ("cv2", "peft", "diffusers", "transformers.models.idefics2", "transformers.models.bert")


def _saved_webp(outputs: dict, base: Path) -> Path:
    images = outputs["7"]["images"]
    assert len(images) == 1 and images[0]["filename"].endswith(".webp")
    path = base / "output" / images[0]["subfolder"] / images[0]["filename"]
    assert path.is_file()
    return path


def test_smoke_workflow_in_process(comfy, tiny_models, comfy_base_dir):
    outputs = comfy.run(smoke_workflow(prefix="smoke_inprocess", frames=5))
    webp = _saved_webp(outputs, comfy_base_dir)
    with Image.open(webp) as im:
        assert im.n_frames == 5  # 5 frames = 2 latent frames decoded by the tiny Wan VAE
        assert im.size == (64, 64)


def test_smoke_workflow_over_http(comfy_server, comfy_base_dir):
    entry = comfy_server.run(smoke_workflow(prefix="smoke_http", frames=9, seed=3))
    webp = _saved_webp(entry["outputs"], comfy_base_dir)
    with Image.open(webp) as im:
        assert im.n_frames == 9


def test_invalid_workflow_is_rejected_and_server_keeps_serving(comfy_server):
    bad = smoke_workflow()
    bad["1"]["inputs"]["unet_name"] = "no_such_model.safetensors"
    status, body = comfy_server.queue(bad)
    assert status == 400
    assert "1" in body["node_errors"] and "unet_name" in json.dumps(body["node_errors"]["1"])
    assert comfy_server.get("/system_stats")["system"]["comfyui_version"]


def test_pack_nodes_are_registered(comfy_server, comfy):
    info = comfy_server.get("/object_info")
    import nodes as comfy_nodes  # ComfyUI's own module (the harness put ComfyUI first on sys.path)

    pack_nodes = [k for k, v in comfy_nodes.NODE_CLASS_MAPPINGS.items()
                  if getattr(v, "RELATIVE_PYTHON_MODULE", "") == f"custom_nodes.{PACK_LINK_NAME}"]
    assert pack_nodes, "the pack registered no nodes"
    for node_id in pack_nodes:
        assert node_id in info, f"{node_id} missing from /object_info"
    assert "AnimeRewardTestRandomConditioning" in info
    log = comfy_server.log_tail(200_000)
    assert f"IMPORT FAILED): {REPO_ROOT}" not in log and "ComfyUI-AnimeReward module for custom nodes" not in log


def test_pack_import_is_cheap(comfy_dir, comfy_base_dir):
    """Load the pack the way ComfyUI does in a fresh interpreter; it must be fast and import nothing heavy."""
    script = f"""
import asyncio, sys, time
sys.path.insert(0, {str(comfy_dir)!r})
from comfy.cli_args import args
args.cpu = True; args.base_directory = {str(comfy_base_dir)!r}
import utils.extra_config
import nodes, comfy_api.latest
import comfy_config.config_parser  # ComfyUI's own pyproject reader, imported by its first load_custom_node
before = set(sys.modules)
t0 = time.perf_counter()
ok = asyncio.run(nodes.load_custom_node({str(comfy_base_dir / "custom_nodes" / PACK_LINK_NAME)!r}))
dt = time.perf_counter() - t0
new = sorted(set(sys.modules) - before)
heavy = [m for m in new if m.startswith({HEAVY_MODULES!r})]
print("RESULT", ok, dt, heavy)
"""
    times = []
    for _ in range(3):  # the best of three fresh interpreters: one slow start on a busy machine is no regression
        out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
        line = next((ln for ln in out.stdout.splitlines() if ln.startswith("RESULT")), None)
        assert line, out.stdout[-3000:] + out.stderr[-3000:]
        _, ok, dt, heavy = line.split(" ", 3)
        assert ok == "True"
        assert heavy == "[]", f"pack import pulled in heavy modules: {heavy}"
        times.append(float(dt))
        if times[-1] < 0.3:
            break
    assert min(times) < 0.3, f"pack import took {min(times):.3f}s at best ({times})"
