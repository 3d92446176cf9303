"""The character gallery: identities with a few images each, their recogniser embeddings cached on disk.

Layout (the artist's convention, `models/animereward/characters/`): one folder per identity, named after it,
holding a few images (png, jpg, jpeg, webp, bmp). Identity names are compared lower-cased, as the official
`group_gallery_according_to_names` does. The official gallery (`character/videos/` with the list
`gallerys.json` of `{"image": relpath, "caption": identity}`) loads through `GalleryIndex.from_json`.

Embeddings are computed once and kept as `.embeddings-<hash16>.safetensors` in the gallery folder, where
<hash16> starts the recogniser's weights hash, so another recogniser never reads them. The file records each
image's path, identity, size and modification time; on load, images that are unchanged reuse their row,
new or changed ones are embedded, deleted ones are dropped, and the file is rewritten (atomically) only when
something changed. A cache that cannot be read or written is logged and recomputed, never fatal.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from .character_recognizer import CharacterRecognizer, IdentityScore, gallery_image, identity_probabilities

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp")
CACHE_FORMAT = "1"


@dataclass(frozen=True)
class GalleryEntry:
    identity: str  # lower-cased
    relpath: str  # relative to the gallery root, '/'-separated
    size: int
    mtime_ns: int

    @property
    def stamp(self) -> tuple[str, str, int, int]:
        return (self.identity, self.relpath, self.size, self.mtime_ns)


class GalleryError(ValueError):
    """A gallery that cannot be used (no images, unreadable image); the message names the folder and the fix."""


@dataclass
class GalleryIndex:
    root: Path
    entries: list[GalleryEntry]

    @classmethod
    def from_folders(cls, root: Path) -> GalleryIndex:
        """`root/<identity>/<image>` for every image (sorted); hidden files and other suffixes are skipped."""
        root = Path(root)
        if not root.is_dir():
            raise GalleryError(f"character gallery {root} is not a folder; create it with one sub-folder per "
                               "character, each holding a few images of that character")
        entries = []
        for ident in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
            for img in sorted(ident.iterdir()):
                if img.is_file() and img.suffix.lower() in IMAGE_SUFFIXES and not img.name.startswith("."):
                    st = img.stat()
                    entries.append(GalleryEntry(ident.name.lower(), f"{ident.name}/{img.name}", st.st_size,
                                                st.st_mtime_ns))
        return cls(root, entries)

    @classmethod
    def from_json(cls, root: Path, index_file: Path) -> GalleryIndex:
        """The official gallery: `index_file` lists `{"image": relpath under root, "caption": identity}`."""
        root = Path(root)
        items = json.loads(Path(index_file).read_text(encoding="utf-8"))
        entries = []
        for item in items:
            rel = str(item["image"])
            path = (root / rel).resolve()
            if not path.is_relative_to(root.resolve()):
                raise GalleryError(f"gallery index {index_file}: {rel!r} points outside {root}")
            st = path.stat()
            entries.append(GalleryEntry(str(item["caption"]).lower(), rel, st.st_size, st.st_mtime_ns))
        return cls(root, entries)

    def identities(self) -> list[str]:
        return list(dict.fromkeys(e.identity for e in self.entries))


@dataclass
class GalleryEmbeddings:
    """Gallery rows ready for scoring: embeddings [G,D] and the identity index [G] into `identities`."""

    identities: list[str]
    embeddings: torch.Tensor
    identity_index: torch.Tensor
    computed: int = 0  # rows embedded by this load (0 = everything came from the cache)
    reused: int = 0

    def score(self, query: torch.Tensor) -> IdentityScore:
        """Embeddings of one tracked object's crops [F,D] → its top-1 identity and probability."""
        dist = identity_probabilities(query, self.embeddings, self.identity_index, len(self.identities))
        top = int(dist.argmax())
        return IdentityScore(self.identities[top], float(dist[top]), dist)


def cache_path(root: Path, weights_hash: str) -> Path:
    if not weights_hash:
        raise ValueError("the recogniser has no weights hash; build it with build_recognizer or set weights_hash")
    return Path(root) / f".embeddings-{weights_hash[:16]}.safetensors"


def _read_cache(path: Path, weights_hash: str) -> dict[tuple[str, str, int, int], torch.Tensor]:
    if not path.is_file():
        return {}
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            if meta.get("format") != CACHE_FORMAT or meta.get("weights_hash") != weights_hash:
                log.info("gallery cache %s is for other weights or another format; recomputing", path)
                return {}
            emb = f.get_tensor("embeddings")
        stamps = [tuple(s) for s in json.loads(meta["entries"])]
        if len(stamps) != emb.shape[0]:
            raise ValueError(f"{len(stamps)} entries for {emb.shape[0]} rows")
    except Exception as exc:  # a damaged cache is only lost time
        log.warning("gallery cache %s unreadable (%s); recomputing", path, exc)
        return {}
    return {s: emb[i] for i, s in enumerate(stamps)}  # type: ignore[misc]


def _write_cache(path: Path, weights_hash: str, entries: list[GalleryEntry], emb: torch.Tensor) -> None:
    meta = {"format": CACHE_FORMAT, "weights_hash": weights_hash,
            "entries": json.dumps([list(e.stamp) for e in entries])}
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    os.close(fd)
    try:
        save_file({"embeddings": emb.contiguous()}, tmp, metadata=meta)
        os.replace(tmp, path)
    except OSError as exc:
        log.warning("cannot write gallery cache %s (%s); embeddings will be recomputed next time", path, exc)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def load_gallery(index: GalleryIndex, recognizer: CharacterRecognizer, *,
                 read_image: Callable[[Path], torch.Tensor] = gallery_image) -> GalleryEmbeddings:
    """Embeddings of every gallery image, from the cache where the image is unchanged, computed otherwise."""
    if not index.entries:
        raise GalleryError(f"character gallery {index.root} has no images; add a folder per character with a "
                           f"few images ({', '.join(IMAGE_SUFFIXES)})")
    path = cache_path(index.root, recognizer.weights_hash)
    cached = _read_cache(path, recognizer.weights_hash)
    todo = [e for e in index.entries if e.stamp not in cached]
    fresh: dict[tuple[str, str, int, int], torch.Tensor] = {}
    if todo:
        images = []
        for e in todo:
            try:
                images.append(read_image(index.root / e.relpath))
            except Exception as exc:
                raise GalleryError(f"character gallery image {index.root / e.relpath} cannot be read ({exc}); "
                                   "replace or remove it") from exc
        emb = recognizer.embed(torch.stack(images))
        fresh = {e.stamp: emb[i] for i, e in enumerate(todo)}
    rows = torch.stack([fresh[e.stamp] if e.stamp in fresh else cached[e.stamp] for e in index.entries])
    if todo or len(cached) != len(index.entries):
        _write_cache(path, recognizer.weights_hash, index.entries, rows)
    identities = index.identities()
    pos = {n: i for i, n in enumerate(identities)}
    ident = torch.tensor([pos[e.identity] for e in index.entries], dtype=torch.long)
    return GalleryEmbeddings(identities, rows, ident, computed=len(todo), reused=len(index.entries) - len(todo))
