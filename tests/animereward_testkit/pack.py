"""The pack's own modules as ComfyUI loaded them (for tests that call nodes/ code directly).

ComfyUI imports a custom-node folder under a module name made from its path, and the pack's `nodes`
package cannot be imported as a top-level `nodes` (ComfyUI's own module has that name), so tests reach the
pack's modules through the package ComfyUI registered.
"""

from __future__ import annotations

import importlib
import sys
from types import ModuleType

from .comfy_paths import REPO_ROOT


def pack_module(name: str) -> ModuleType:
    """e.g. pack_module("nodes.comfy_lora"); ComfyUI must have loaded the pack (the `comfy` fixture)."""
    init = (REPO_ROOT / "__init__.py").resolve()
    for mod_name, mod in list(sys.modules.items()):
        f = getattr(mod, "__file__", None)
        if f and "." not in mod_name.rsplit("/", 1)[-1] and mod_name.endswith("ComfyUI-AnimeReward"):
            from pathlib import Path

            if Path(f).resolve() == init:
                return importlib.import_module(f"{mod_name}.{name}")
    raise RuntimeError("the pack is not loaded: use the `comfy` fixture first")
