"""The `models/animereward` folder, registered with folder_paths so extra_model_paths.yaml works too.

A weights root is a folder holding the official layout (weights/..., character/...) or the same files flat.
The loader offers every sub-folder of every registered animereward path, and the path itself when it
holds weights directly.
"""

from __future__ import annotations

import os
from pathlib import Path

import folder_paths

FOLDER_NAME = "animereward"
NO_WEIGHTS = "none (flow metrics only)"


def register() -> None:
    if FOLDER_NAME not in folder_paths.folder_names_and_paths:
        folder_paths.add_model_folder_path(FOLDER_NAME, os.path.join(folder_paths.models_dir, FOLDER_NAME), is_default=True)


def weight_roots() -> dict[str, Path]:
    """Option label → folder, for the loader's combo."""
    from ..animereward.weights_layout import available_dimensions

    roots: dict[str, Path] = {}
    for base in map(Path, folder_paths.get_folder_paths(FOLDER_NAME)):
        if not base.is_dir():
            continue
        if any(available_dimensions(base).values()):
            roots.setdefault(base.name, base)
        for sub in sorted(p for p in base.iterdir() if p.is_dir()):
            roots.setdefault(sub.name, sub)
    return roots


register()
