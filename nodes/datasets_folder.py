"""Where preference datasets live: a folder registered with folder_paths, so extra_model_paths.yaml can move it.

Default: `<ComfyUI user directory>/animereward_datasets` (beside, not inside, `user/default`, so ComfyUI's
/userdata routes never serve it). An `animereward_datasets:` entry in extra_model_paths.yaml, read before
custom nodes load, takes the place of the default: the first registered path is the one root every node
and route uses.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

import folder_paths

if TYPE_CHECKING:
    from ..gapo_trainer.store import PreferenceStore

FOLDER_NAME = "animereward_datasets"


def register() -> None:
    if FOLDER_NAME not in folder_paths.folder_names_and_paths:
        default = os.path.join(folder_paths.get_user_directory(), FOLDER_NAME)
        folder_paths.add_model_folder_path(FOLDER_NAME, default, is_default=True)


def datasets_root() -> Path:
    """The one datasets root (created on first use)."""
    register()
    root = Path(folder_paths.get_folder_paths(FOLDER_NAME)[0]).expanduser()
    root.mkdir(parents=True, exist_ok=True)
    return root.resolve()


_STORES: dict[Path, PreferenceStore] = {}


def open_store() -> PreferenceStore:
    """The store on the current root (one instance per root, shared by the nodes and the routes)."""
    from ..gapo_trainer.store import PreferenceStore

    root = datasets_root()
    store = _STORES.get(root)
    if store is None:
        store = _STORES[root] = PreferenceStore(root)
    return store


register()
