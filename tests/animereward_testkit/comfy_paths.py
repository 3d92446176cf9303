"""Where ComfyUI lives, and a self-contained ComfyUI base directory for one test run or demo.

The base directory (`--base-directory`) holds models/, custom_nodes/, input/, output/ and user/, so a run
never writes into the user's ComfyUI and a second run reuses nothing it did not create itself.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
PACK_LINK_NAME = "ComfyUI-AnimeReward"
TEST_NODES_DIR = Path(__file__).resolve().parent / "test_nodes"


def comfyui_dir() -> Path:
    """$COMFYUI_DIR if set, else the copy dev/setup.sh extracted into .comfyui/ComfyUI."""
    env = os.environ.get("COMFYUI_DIR")
    path = Path(env).expanduser().resolve() if env else REPO_ROOT / ".comfyui" / "ComfyUI"
    if not (path / "main.py").is_file():
        raise RuntimeError(
            f"no ComfyUI at {path} (main.py missing). Run `bash dev/setup.sh` first, "
            "or set COMFYUI_DIR to your ComfyUI folder."
        )
    return path


def make_base_dir(base: Path, with_test_nodes: bool = True) -> Path:
    """Lay out a ComfyUI base directory with this pack (and the test-only nodes) in custom_nodes/."""
    base = base.resolve()
    for sub in ("models/diffusion_models", "models/vae", "models/loras", "models/animereward",
                "input", "output", "temp", "custom_nodes", "user/default"):
        (base / sub).mkdir(parents=True, exist_ok=True)
    _link(base / "custom_nodes" / PACK_LINK_NAME, REPO_ROOT)
    if with_test_nodes:
        _link(base / "custom_nodes" / "animereward_test_nodes", TEST_NODES_DIR)
    settings = base / "user" / "default" / "comfy.settings.json"
    if not settings.exists():
        # Without this the page opens a templates dialog over the canvas on first load.
        settings.write_text(json.dumps({"Comfy.TutorialCompleted": True}))
    return base


def _link(link: Path, target: Path) -> None:
    if link.is_symlink() or link.exists():
        if link.resolve() == target.resolve():
            return
        link.unlink()
    link.symlink_to(target, target_is_directory=True)


def import_comfy(comfy_dir: Path, base_dir: Path) -> None:
    """Make ComfyUI importable in this process, on the CPU, with `base_dir` as its base directory."""
    if str(comfy_dir) not in sys.path:
        sys.path.insert(0, str(comfy_dir))
    from comfy.cli_args import args  # parses no command line (args parsing is off by default)

    args.cpu = True  # before anything imports comfy.model_management
    args.base_directory = str(base_dir)  # before anything imports folder_paths
    args.disable_auto_launch = True
    # Before the rest of ComfyUI: once comfy.utils is imported, `utils` can resolve to the wrong module.
    import folder_paths
    import utils.extra_config  # noqa: F401

    if Path(folder_paths.base_path) != base_dir.resolve():
        raise RuntimeError(f"folder_paths was imported before the base dir was set ({folder_paths.base_path})")
