"""Where each dimension's weights live under a weights root, in the official layout or flat.

The official hub repo (`IndexTeam/Index-anisora`, folder `reward/`) keeps every checkpoint under
`reward/weights/`. Users copy that folder in many shapes, so a root is accepted when it is any of:

- the folder that holds `weights/` (the hub's `reward/` folder: `<root>/weights/<official path>`);
- the folder above `reward/` (the hub repo itself: `<root>/reward/weights/<official path>`);
- the `weights/` folder itself, or any folder holding the same files flat: `<root>/<official path>`,
  `<root>/<file name>` for the `.pth` files (e.g. `<root>/checkpoint_06.pth`), and `<root>/<folder name>/`
  holding the Idefics2 files directly instead of in `checkpoint-final/`.

Which files each dimension has is declared in the registry (`dimensions.py`, `Dimension.files`); this module
only knows how to find them. A `.pth` may be replaced by its converted `.safetensors` sibling (same stem; `checkpoints.py` writes it on the
first load). An Idefics2 folder is complete when it has config.json, the safetensors weights (a single file,
or an index and every shard it names), and the processor and tokenizer configs.

User folders are untrusted input read while ComfyUI draws its menus and validates prompts, so nothing here
may raise on a file's contents: the one file read (the shard index) is checked for shape, and every shard
path it names must stay inside its folder. A file that fails is reported as `UnreadableWeightsError`
("unreadable: <file>: <reason>") for the dimension it serves, never as a crash of the caller.

`character_consistency` reads several files (kind "parts" in the registry): a recogniser `.pth`, a
Grounding-DINO HF folder, a SAM2.1 checkpoint (`.pt` or HF folder) and, optionally, the official gallery, all
under the official `reward/character/` folder (`character/IP_checkpoints/...`, `character/videos/`). That
folder is found as `<root>/character`, `<root>/reward/character`, or the root itself (or `<root>/reward`) when
it holds `IP_checkpoints/` directly, as the hub's `reward/` folder does. `locate` gives that folder;
`locate_parts` the file or folder of each part in it. A dimension without an implementation is never reported
available, and asking for its files is an error that says so. The weight-free flow metrics need no files and
are not listed here.

Nothing here imports more than the standard library, so ComfyUI can call it when drawing its menus.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Sequence
from pathlib import Path

from . import dimensions as registry
from .dimensions import DIMENSIONS, WEIGHTS_SOURCE, WeightsEntry, WeightsPart, check_dimension_names

# The dimensions with a name but no implementation yet, and the official files of the others: both read off
# the registry (dimensions.py), which is where they are declared.
NOT_IMPLEMENTED = tuple(n for n, d in DIMENSIONS.items() if not d.available)
# The single-checkpoint entries (one file or folder under the official weights/ folder); dimensions that read
# several files (kind "parts": character_consistency) are in PARTS_FILES.
OFFICIAL_FILES: dict[str, WeightsEntry] = {d: e for d, e in registry.official_files().items() if e.kind != "parts"}
PARTS_FILES: dict[str, WeightsEntry] = {d: e for d, e in registry.official_files().items() if e.kind == "parts"}

# Files of a Hugging Face model folder read by the character models (Grounding-DINO: tokenizer and image
# processor too; SAM2: the config and weights only, its processor is built from the config).
HF_CONFIG = "config.json"
DETECTOR_FILES: tuple[str, ...] = ("config.json", "preprocessor_config.json", "tokenizer_config.json")
DETECTOR_TOKENIZER_FILES: tuple[str, ...] = ("tokenizer.json", "vocab.txt")  # one of them
# Where the official gallery's list (`gallerys.json`: image path -> identity) may lie, relative to the
# character folder: the official code's place, or beside the images.
GALLERY_LISTS: tuple[str, ...] = ("BLIP/data/gallerys.json", "videos/gallerys.json", "gallerys.json")

# Files an Idefics2 `checkpoint-final/` needs besides its weights (what AutoConfig/AutoProcessor read).
IDEFICS2_CONFIG_FILES: tuple[str, ...] = ("config.json", "preprocessor_config.json", "tokenizer_config.json")
IDEFICS2_TOKENIZER_FILES: tuple[str, ...] = ("tokenizer.json", "tokenizer.model")  # one of them


class MissingWeightsError(FileNotFoundError):
    """Files of enabled dimensions are missing; `missing` maps each dimension to every missing path."""

    def __init__(self, message: str, missing: dict[str, list[Path]]) -> None:
        super().__init__(message)
        self.missing = missing


class UnreadableWeightsError(ValueError):
    """A file of a weights folder exists but cannot be used: message "unreadable: <file>: <reason>"."""

    def __init__(self, path: Path, reason: str) -> None:
        super().__init__(f"unreadable: {path}: {reason}")
        self.path, self.reason = Path(path), reason


# An index names shards by relative path; one that big is not a safetensors index.
MAX_INDEX_BYTES = 64 * 1024**2


def inside(folder: Path, name: object, source: Path) -> Path:
    """`folder/name` for a relative path `name` read from `source`, refused when it leaves `folder`.

    The check is on the path as written (normalised, no symlinks followed): a shard that is a symlink the
    user placed (e.g. an HF cache snapshot, whose files link to ../../blobs) stays usable, while `..`,
    absolute paths and drive letters in a file's contents never reach outside the folder.
    """
    if not isinstance(name, str) or not name.strip():
        raise UnreadableWeightsError(source, f"names {name!r} as a file, which is not a file name")
    if "\0" in name or os.path.isabs(name) or Path(name).is_absolute() or Path(name).drive:
        raise UnreadableWeightsError(source, f"names {name!r}, an absolute path; shard paths must be relative "
                                             f"to {folder}")
    target = os.path.normpath(os.path.join(str(folder), name))
    if os.path.commonpath([target, os.path.normpath(str(folder))]) != os.path.normpath(str(folder)):
        raise UnreadableWeightsError(source, f"names {name!r}, which is outside its folder {folder}; "
                                             "fetch the original index file")
    return Path(target)


def index_shards(folder: Path) -> list[Path]:
    """The shard files `model.safetensors.index.json` names (sorted, unique), each inside `folder`.

    Raises UnreadableWeightsError naming the index for anything but a JSON object whose `weight_map` maps
    tensor names to relative file names inside the folder.
    """
    index = folder / "model.safetensors.index.json"
    try:
        if index.stat().st_size > MAX_INDEX_BYTES:
            raise UnreadableWeightsError(index, f"{index.stat().st_size} bytes is too large for a shard index")
        data = json.loads(index.read_bytes().decode("utf-8"))
    except UnreadableWeightsError:
        raise
    except (OSError, UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise UnreadableWeightsError(index, f"not a JSON file ({type(exc).__name__}: {exc}); fetch it again") from None
    if not isinstance(data, dict):
        raise UnreadableWeightsError(index, f"holds a JSON {type(data).__name__}, not an object; fetch it again")
    weight_map = data.get("weight_map")
    if not isinstance(weight_map, dict) or not weight_map:
        what = "is missing" if weight_map is None else f"is a {type(weight_map).__name__}"
        if isinstance(weight_map, dict):
            what = "is empty"
        raise UnreadableWeightsError(index, f"its 'weight_map' {what}, not an object of tensor name -> shard "
                                            "file; fetch the index again")
    return sorted({inside(folder, v, index) for v in weight_map.values()})


class DimensionNotAvailableError(ValueError):
    """A dimension that has a name but no implementation in this version (none of the built-in ones now)."""


def not_available_message(dimension: str) -> str:
    return (
        f"{dimension} is not available yet: it has no implementation in this version. Remove it from the "
        f"enabled dimensions."
    )


def _check_weighted(dimensions: Iterable[str]) -> list[str]:
    dims = list(dimensions)
    check_dimension_names(dims)
    for d in dims:
        if not DIMENSIONS[d].available:
            raise DimensionNotAvailableError(not_available_message(d))
    return [d for d in dims if DIMENSIONS[d].needs_weights]


def _bases(root: Path) -> list[Path]:
    """Folders that may play the role of the official `weights/`, most specific first."""
    return [root / "weights", root / "reward" / "weights", root]


def _file_candidates(base: Path, entry: WeightsEntry) -> list[Path]:
    rel = Path(entry.relpath)
    out: list[Path] = []
    for p in (base / rel, base / rel.name):  # official path under the base, or the bare file name
        out += [p.with_suffix(".safetensors"), p]  # the converted copy is preferred (no pickle)
    return out


def _folder_candidates(base: Path, entry: WeightsEntry) -> list[Path]:
    rel = Path(entry.relpath)  # <name>/checkpoint-final
    return [base / rel, base / rel.parent]


def _idefics2_missing(folder: Path) -> list[Path]:
    """Every file the folder lacks (empty when complete); a folder that does not exist lacks config.json.
    A broken shard index raises UnreadableWeightsError."""
    missing = [folder / n for n in IDEFICS2_CONFIG_FILES if not (folder / n).is_file()]
    if not any((folder / n).is_file() for n in IDEFICS2_TOKENIZER_FILES):
        missing.append(folder / IDEFICS2_TOKENIZER_FILES[0])
    index = folder / "model.safetensors.index.json"
    if index.is_file():
        missing += [s for s in index_shards(folder) if not s.is_file()]
    elif not (folder / "model.safetensors").is_file():
        missing.append(folder / "model.safetensors")
    return missing


def _hf_missing(folder: Path, part: str) -> list[Path]:
    """Every file an HF model folder of a character part lacks (the detector also needs its tokenizer and
    image processor files; the tracker only config and weights). A broken shard index raises."""
    names = DETECTOR_FILES if part == "detector" else (HF_CONFIG,)
    missing = [folder / n for n in names if not (folder / n).is_file()]
    if part == "detector" and not any((folder / n).is_file() for n in DETECTOR_TOKENIZER_FILES):
        missing.append(folder / DETECTOR_TOKENIZER_FILES[0])
    if (folder / "model.safetensors.index.json").is_file():
        missing += [s for s in index_shards(folder) if not s.is_file()]
    elif not (folder / "model.safetensors").is_file():
        missing.append(folder / "model.safetensors")
    return missing


def gallery_list(folder: Path) -> Path | None:
    """The official gallery's list (`gallerys.json`) for a character folder, or None."""
    for rel in GALLERY_LISTS:
        if (folder / rel).is_file():
            return folder / rel
    return None


def is_checkpoint_file(rel: str) -> bool:
    """A part path naming a checkpoint file (else an HF folder; `sam2.1-hiera-base-plus` has a dot but is one)."""
    return rel.endswith((".pth", ".pt"))


def find_part(folder: Path, part: WeightsPart) -> tuple[Path | None, list[Path]]:
    """(the part's file or folder in the character folder, []) or (None, what is missing).

    Paths are tried in the registry's order: a checkpoint file (its `.safetensors` copy preferred), or an HF
    folder that is complete; for a folder that is there but incomplete, what it lacks is reported. A gallery is
    its image folder with a list (`gallery_list`). A broken shard index raises UnreadableWeightsError."""
    if part.kind == "gallery":
        images = folder / part.paths[0]
        listed = gallery_list(folder)
        if images.is_dir() and listed is not None:
            return images, []
        return None, ([] if images.is_dir() else [images]) + ([] if listed else [folder / GALLERY_LISTS[0]])
    started: list[Path] = []
    for rel in part.paths:
        path = folder / rel
        if is_checkpoint_file(rel):
            for cand in (path.with_suffix(".safetensors"), path):
                if cand.is_file():
                    return cand, []
        elif path.is_dir():
            missing = _hf_missing(path, part.name)
            if not missing:
                return path, []
            started = started or missing
    return None, started or [folder / part.paths[0]]


def _parts_bases(root: Path, entry: WeightsEntry) -> list[Path]:
    """Folders that may play the role of the official `reward/character/`, most specific first."""
    return [root / entry.base, root / "reward" / entry.base, root, root / "reward"]


def _find_parts(root: Path, entry: WeightsEntry) -> tuple[Path | None, list[Path]]:
    """(the character folder, []) when every required part is in it, else (None, every missing path): of the
    first folder that holds `IP_checkpoints/`, or of `<root>/character` when none does."""
    required = [p for p in entry.parts if p.required]
    first_missing: list[Path] | None = None
    for base in _parts_bases(root, entry):
        if not _is_dir(base / entry.relpath):
            continue
        missing = [m for part in required for m in find_part(base, part)[1]]
        if not missing:
            return base, []
        first_missing = first_missing if first_missing is not None else missing
    if first_missing is not None:
        return None, first_missing
    return None, [m for part in required for m in find_part(root / entry.base, part)[1]]


def locate_parts(folder: str | Path, dimension: str) -> dict[str, Path | None]:
    """Each part of a several-file dimension in its folder (what `locate` gave): name -> path, None for an
    optional part that is absent. A missing required part raises MissingWeightsError naming it."""
    entry = registry.official_files()[dimension]
    folder = Path(folder)
    out: dict[str, Path | None] = {}
    missing: list[Path] = []
    for part in entry.parts:
        found, lacks = find_part(folder, part)
        out[part.name] = found
        if found is None and part.required:
            missing += lacks
    if missing:
        raise MissingWeightsError(missing_message(folder, {dimension: missing}), {dimension: missing})
    return out


def _preferred_base(root: Path) -> Path:
    """Where missing files are expected: the `weights/` folder found, else the root itself if it already
    holds some of the files flat, else `<root>/weights` (the official layout)."""
    for base in _bases(root)[:2]:
        if base.is_dir():
            return base
    for entry in registry.official_files().values():
        if entry.kind == "parts":
            continue
        cands = _file_candidates(root, entry) if entry.kind == "file" else _folder_candidates(root, entry)
        if any(c.exists() for c in cands):
            return root
    return root / "weights"


def _find(root: Path, dimension: str) -> tuple[Path | None, list[Path]]:
    """(the file or folder found, []) or (None, every path missing at the preferred location).

    Raises UnreadableWeightsError when the only started folder for the dimension has a broken file, and
    OSError when the file system refuses (permissions); `scan` turns both into reasons."""
    entry = registry.official_files()[dimension]
    if entry.kind == "parts":
        return _find_parts(root, entry)
    if entry.kind == "file":
        for base in _bases(root):
            for cand in _file_candidates(base, entry):
                if cand.is_file():
                    return cand, []
        return None, [_preferred_base(root) / entry.relpath]
    incomplete: list[Path] = []
    broken: UnreadableWeightsError | None = None
    for base in _bases(root):
        for cand in _folder_candidates(base, entry):
            if not cand.is_dir():
                continue
            try:
                missing = _idefics2_missing(cand)
            except UnreadableWeightsError as exc:
                broken = broken or exc  # another candidate may still be complete
                continue
            if not missing:
                return cand, []
            if (cand / "config.json").is_file() and not incomplete:
                incomplete = missing  # a started folder: report what it lacks, not a second location
    if broken is not None:
        raise broken
    if incomplete:
        return None, incomplete
    folder = _preferred_base(root) / entry.relpath
    return None, _idefics2_missing(folder)


def _is_dir(path: Path) -> bool:
    try:
        return path.is_dir()
    except OSError:
        return False


def scan(root: str | Path | None) -> tuple[dict[str, bool], dict[str, str]]:
    """(complete? per weighted dimension, "unreadable: <file>: <reason>" per dimension whose files are broken).

    Never raises on a folder's contents or permissions: safe where ComfyUI draws menus and validates.
    """
    out = dict.fromkeys(registry.ANIMEREWARD_DIMENSIONS, False)
    problems: dict[str, str] = {}
    if root is None or not _is_dir(Path(root)):
        return out, problems
    for d in registry.official_files():
        try:
            out[d] = _find(Path(root), d)[0] is not None
        except UnreadableWeightsError as exc:
            problems[d] = str(exc)
        except OSError as exc:
            problems[d] = f"unreadable: {exc.filename or root}: {exc.strerror or exc}"
    return out, problems


def available_dimensions(root: str | Path | None) -> dict[str, bool]:
    """For each of the six weighted dimensions: are its files complete under `root`? (flow metrics: not listed,
    they need no files; character_consistency: always False, not implemented yet). Broken files count as
    absent (see `scan` for why); never raises."""
    return scan(root)[0]


def looks_like_weights_root(folder: Path) -> bool:
    """Does the folder hold any file or folder of the accepted layouts (stat calls only, never raises)?

    The loader lists only such folders, so a link to `/` or `/etc` in models/animereward is not offered.
    """
    if not _is_dir(folder):
        return False
    try:
        for entry in registry.official_files().values():
            if entry.kind == "parts":
                if any(_is_dir(b / entry.relpath) for b in _parts_bases(folder, entry)):
                    return True
                continue
            for base in _bases(folder):
                cands = _file_candidates(base, entry) if entry.kind == "file" else _folder_candidates(base, entry)
                if any(c.exists() for c in cands):
                    return True
    except OSError:
        return False
    return False


def locate(root: str | Path, dimension: str) -> Path:
    """The checkpoint file (`.safetensors` preferred over `.pth`) or HF folder of one dimension; for one that
    reads several files (character_consistency), the folder holding them (see `locate_parts`)."""
    if not _check_weighted([dimension]):
        raise ValueError(f"{dimension} needs no weights (it is a weight-free metric)")
    found, missing = _find(Path(root), dimension)
    if found is None:
        raise MissingWeightsError(missing_message(Path(root), {dimension: missing}), {dimension: missing})
    return found


def missing_files(
    root: str | Path, dimensions: Sequence[str], *, raise_error: bool = False
) -> dict[str, list[Path]]:
    """Every missing path per requested dimension ([] when complete; weight-free dimensions always []).

    raise_error: raise one `MissingWeightsError` listing everything missing, for every dimension, if any.
    A broken file raises UnreadableWeightsError naming it (see `scan` for a form that never raises).
    """
    root = Path(root)
    weighted = set(_check_weighted(dimensions))
    out: dict[str, list[Path]] = {}
    for d in dimensions:
        out[d] = _find(root, d)[1] if d in weighted else []
    if raise_error and any(out.values()):
        raise MissingWeightsError(missing_message(root, out), {d: p for d, p in out.items() if p})
    return out


def missing_message(root: Path | None, missing: dict[str, list[Path]]) -> str:
    """One message listing every missing path, where the files come from and the exact layout expected."""
    missing = {d: p for d, p in missing.items() if p}
    where = "no weights folder was given" if root is None else f"under {root}"
    lines = [f"AnimeReward weights missing for {', '.join(missing)} ({where}):"]
    for d, paths in missing.items():
        for p in paths:
            lines.append(f"  {d}: {p}")
    lines.append(f"Get them from {WEIGHTS_SOURCE}; the files go in this layout (relative to reward/):")
    for d in missing:
        entry = registry.official_files()[d]
        if entry.kind == "parts":
            for part in entry.parts:
                where = " or ".join(f"{entry.base}/{p}" + ("" if is_checkpoint_file(p) else "/") for p in part.paths)
                what = (" (optional: the official gallery, with its list gallerys.json from the official code's "
                        "character/BLIP/data/)" if not part.required
                        else "" if is_checkpoint_file(part.paths[0]) else " (config.json, model.safetensors)")
                lines.append(f"  {d} {part.name}: {where}{what}")
            continue
        extra = ("/ (config.json, model*.safetensors, processor and tokenizer files)" if entry.kind == "folder"
                 else " (or its converted .safetensors)")
        lines.append(f"  {d}: {entry.official}{extra}")
    lines.append(
        "The root may be the reward/ folder, the folder above it, or the weights/ folder; files may also "
        "lie flat in the root (e.g. checkpoint_06.pth or <checkpoint folder name>/...). The character files may "
        "also lie in <root>/IP_checkpoints/ (the hub's reward/ folder as the root)."
    )
    return "\n".join(lines)
