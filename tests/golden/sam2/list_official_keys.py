"""Recipe of official_keys.json: the state_dict keys, shapes and dtypes of the official SAM2 video predictor.

Run OUTSIDE this repository against a checkout of the official code (nothing of it is committed here):

    git clone https://github.com/facebookresearch/sam2 /work/scratch/sam2/fb     # or Index-anisora's
    python tests/golden/sam2/list_official_keys.py /work/scratch/sam2/fb sam2.1/sam2.1_hiera_b+.yaml out.json

It builds the model as `sam2.build_sam.build_sam2_video_predictor` does (target `SAM2VideoPredictor`, the
post-processing overrides), with hydra's `instantiate` replaced by the few lines below (yaml + `_target_`
recursion; PyYAML reads `1e-6` as a string where OmegaConf reads a float, so such strings become floats).
hydra, iopath and loguru are only imported by the official package for config discovery, file I/O of
pretrained trunks and logging; tiny stand-ins are put on sys.path so they need not be installed.
"""

from __future__ import annotations

import importlib
import json
import sys
import tempfile
from pathlib import Path

import yaml

STUBS = {
    "hydra/__init__.py": "def initialize_config_module(*a, **k):\n    pass\n",
    "hydra/core/__init__.py": "",
    "hydra/core/global_hydra.py": (
        "class GlobalHydra:\n    @staticmethod\n    def instance():\n        class _I:\n"
        "            def is_initialized(self):\n                return True\n        return _I()\n"),
    "iopath/__init__.py": "",
    "iopath/common/__init__.py": "",
    "iopath/common/file_io.py": "g_pathmgr = None\n",
    "loguru/__init__.py": "import logging\nlogger = logging.getLogger('loguru')\n",
}


def instantiate(node):
    if isinstance(node, dict):
        node = {k: instantiate(v) for k, v in node.items()}
        target = node.pop("_target_", None)
        if target is None:
            return node
        module, _, name = target.rpartition(".")
        return getattr(importlib.import_module(module), name)(**node)
    if isinstance(node, list):
        return [instantiate(v) for v in node]
    if isinstance(node, str):
        try:
            return float(node)
        except ValueError:
            return node
    return node


def main(checkout: str, config: str, out: str) -> None:
    stubs = Path(tempfile.mkdtemp())
    for rel, text in STUBS.items():
        (stubs / rel).parent.mkdir(parents=True, exist_ok=True)
        (stubs / rel).write_text(text)
    sys.path[:0] = [str(stubs), checkout]
    cfg = yaml.safe_load(Path(checkout, "sam2", "configs", config).read_text())["model"]
    cfg["_target_"] = "sam2.sam2_video_predictor.SAM2VideoPredictor"
    cfg.setdefault("sam_mask_decoder_extra_args", {}).update(
        dynamic_multimask_via_stability=True, dynamic_multimask_stability_delta=0.05,
        dynamic_multimask_stability_thresh=0.98)
    cfg.update(binarize_mask_from_pts_for_mem_enc=True, fill_hole_area=8)
    state = instantiate(cfg).state_dict()
    rows = [[k, list(v.shape), str(v.dtype).replace("torch.", "")] for k, v in state.items()]
    Path(out).write_text(json.dumps(rows, indent=0))
    print(len(rows), "keys,", sum(v.numel() for v in state.values()), "values")


if __name__ == "__main__":
    main(*sys.argv[1:4])
