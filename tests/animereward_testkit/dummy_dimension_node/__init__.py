"""Test-only ComfyUI custom node folder that registers one extra dimension in the pack's registry.

It proves that a dimension is one registry entry plus its scorer: nothing else in the pack (loader, weights
node, Score outputs, scores JSON, the page's labels) names it. Linked into a server's custom_nodes/ only by
tests/comfy/test_registry_dimension.py, never shipped.

ComfyUI loads custom-node folders in directory-listing order and imports a folder as a package named after
its path. The pack may not be loaded yet when this folder is, so it is loaded here the way ComfyUI loads it
(same module name); ComfyUI's own load then reuses the already imported sub-modules, registry included.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from pathlib import Path

PACK_FOLDER = "ComfyUI-AnimeReward"


def _pack_registry():
    pack = Path(__file__).parent.parent / PACK_FOLDER  # the custom_nodes folder ComfyUI listed, not resolved
    name = str(pack).replace(".", "_x_")  # ComfyUI's module name for a custom-node folder
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, pack / "__init__.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)  # type: ignore[union-attr]
    return importlib.import_module(f"{name}.animereward.dimensions")


def _dummy_module():
    path = Path(__file__).resolve().parent.parent / "dummy_dimension.py"  # the test kit's scorer module
    spec = importlib.util.spec_from_file_location("animereward_dummy_dimension", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module


_registry = _pack_registry()
_dummy = _dummy_module()
if _dummy.DIMENSION not in _registry.DIMENSIONS:
    _registry.register(_dummy.dummy_dimension(_registry.Dimension))

NODE_CLASS_MAPPINGS: dict = {}
