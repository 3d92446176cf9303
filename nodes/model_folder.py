"""The `models/animereward` folder, registered with folder_paths so extra_model_paths.yaml works too.

A weights root is a folder holding the official layout (weights/..., character/...) or the same files flat.
The loader offers every sub-folder of every registered animereward path that holds at least one file of an
accepted layout, and the path itself when it holds weights directly. This runs when ComfyUI builds its node
list and validates prompts, so it reads no file contents and never raises on what a user put in the folder
(DESIGN §3): a broken file shows up when the Loader runs, as "unreadable: <file>: <reason>".
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import folder_paths

FOLDER_NAME = "animereward"
NO_WEIGHTS = "none (flow metrics only)"

log = logging.getLogger("AnimeReward")


def register() -> None:
    if FOLDER_NAME not in folder_paths.folder_names_and_paths:
        folder_paths.add_model_folder_path(FOLDER_NAME, os.path.join(folder_paths.models_dir, FOLDER_NAME), is_default=True)


def _subfolders(base: Path) -> list[Path]:
    try:
        return sorted(p for p in base.iterdir() if not p.name.startswith("."))
    except OSError as exc:  # unreadable models folder: nothing to offer from it
        log.warning("AnimeReward: cannot list %s (%s)", base, exc)
        return []


def weight_roots() -> dict[str, Path]:
    """Option label → folder, for the loader's combo (never raises; see the module docstring)."""
    from ..animereward.weights_layout import looks_like_weights_root

    roots: dict[str, Path] = {}
    for base in map(Path, folder_paths.get_folder_paths(FOLDER_NAME)):
        if looks_like_weights_root(base):
            roots.setdefault(base.name, base)
        for sub in _subfolders(base):
            if looks_like_weights_root(sub):
                roots.setdefault(sub.name, sub)
    return roots


register()
