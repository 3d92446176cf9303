"""Where the artist's characters live: `models/animereward/characters/<name>/<images>`, registered with
folder_paths (key `animereward_characters`), so an `animereward_characters:` entry in extra_model_paths.yaml
adds more places.

One folder per character, named after it, holding a few images of it (png, jpg, jpeg, webp, bmp); the
character_consistency dimension recognises the characters of a clip against them (animereward.character_gallery,
whose embeddings cache is written beside the images). Listing reads names only and never raises (it runs while
ComfyUI draws its menus), like the weights folders (model_folder).
"""

from __future__ import annotations

import logging
from pathlib import Path

import folder_paths

FOLDER_NAME = "animereward_characters"
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp")  # animereward.character_gallery.IMAGE_SUFFIXES

log = logging.getLogger("AnimeReward")


def default_root() -> Path:
    return Path(folder_paths.models_dir) / "animereward" / "characters"


def register() -> None:
    if FOLDER_NAME not in folder_paths.folder_names_and_paths:
        folder_paths.add_model_folder_path(FOLDER_NAME, str(default_root()), is_default=True)


def characters_in(root: Path) -> list[str]:
    """Names of the characters in a root: sub-folders holding at least one image (never raises)."""
    names: list[str] = []
    try:
        if not root.is_dir():
            return names
        for sub in sorted(root.iterdir()):
            if sub.name.startswith(".") or not sub.is_dir():
                continue
            if any(f.suffix.lower() in IMAGE_SUFFIXES and not f.name.startswith(".") for f in sub.iterdir()):
                names.append(sub.name)
    except OSError as exc:
        log.warning("AnimeReward: cannot list characters in %s (%s)", root, exc)
    return names


def stamp(root: Path | None) -> str:
    """Changes when a character or an image is added to or removed from the root (names and folder times)."""
    if root is None:
        return ""
    out = []
    for name in characters_in(root):
        try:
            out.append(f"{name}@{(root / name).stat().st_mtime_ns}")
        except OSError:
            out.append(name)
    return ",".join(out)


def character_roots() -> dict[str, Path]:
    """Option label -> characters root, for every registered root that holds at least one character; the
    default root is labelled `characters`, others by their path."""
    register()
    out: dict[str, Path] = {}
    for p in folder_paths.get_folder_paths(FOLDER_NAME):
        root = Path(p).expanduser()
        if characters_in(root):
            out.setdefault("characters" if root == default_root() else str(root), root)
    return out


register()
