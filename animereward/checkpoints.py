"""Safe checkpoint I/O shared by every AnimeReward dimension.

The official weights are `.pth` pickles. Unpickling runs arbitrary code, so they are read only with
`torch.load(..., weights_only=True)`, never retried unsafely. They are training checkpoints, though, and their
metadata (mmengine `meta`/`message_hub`, BLIP `config`) may hold a few objects torch's default allowlist
refuses. Then the globals the file needs are listed statically; if every one is on the allowlist of inert
training metadata (checkpoint_allowlist.py: our own do-nothing stand-ins, also for numpy values) the file is
loaded again, still weights_only, with just those names bound to the stand-ins. Any other global
(`os.system`, `eval`, a `__reduce__` to anything) leaves the file refused, with the file and globals named.
After the first successful read, and only once the caller's key check has passed (a broken file must not
leave a copy behind), the chosen sub-dict is written once as `.safetensors` beside the `.pth` (same stem);
later loads read that instead (faster, and no pickle at all). The copy records its source's size, time and
SHA-256, so a `.pth` replaced later (a fixed download) is converted again instead of shadowed by the old copy.

Key mapping is strict: every checkpoint key is either renamed onto a parameter/buffer of our module or
dropped on purpose by the caller's `rename` (returning None); anything missing or left over raises with
the keys listed, so a wrong or truncated checkpoint can never load half-way.
"""

from __future__ import annotations

import hashlib
import logging
import os
import pickle
import struct
import tempfile
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

import torch
from torch import nn

from . import checkpoint_allowlist, file_kinds
from .cancel import check

log = logging.getLogger(__name__)

# Keys listed in full in error messages before they are summarised.
_MAX_LISTED = 40

# torch's safe-globals registry is process-wide: one allowlisted load of ours at a time.
_ALLOWLIST_LOCK = threading.Lock()


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be read safely, or whose keys do not fit the module."""


# Pickled checkpoints that get a converted copy: BLIP/mmengine `.pth`, SAM2's official `.pt`.
SOURCE_SUFFIXES = (".pth", ".pt")


def safetensors_path(path: Path) -> Path:
    """Where the converted copy of a `.pth` (or `.pt`) lives: same folder, same stem."""
    return Path(path).with_suffix(".safetensors")


def _source_beside(copy: Path) -> Path | None:
    """The pickled checkpoint a `.safetensors` path stands for: the `.pth` or `.pt` of the same stem beside it
    (the one the copy records as its source when both exist), or None when neither is there.

    Passing the copy directly must still notice a replaced source (`_copy_is_stale`), whichever suffix it has:
    SAM2's official file is a `.pt`."""
    sources = [copy.with_suffix(s) for s in SOURCE_SUFFIXES if copy.with_suffix(s).is_file()]
    if len(sources) > 1 and copy.is_file():
        from safetensors import safe_open

        try:
            with safe_open(str(copy), framework="pt") as f:
                recorded = (f.metadata() or {}).get("converted_from")
        except Exception:  # unreadable header: reading the copy later reports it
            recorded = None
        sources.sort(key=lambda p: p.name != recorded)  # stable: else .pth first
    return sources[0] if sources else None


KeyCheck = Callable[[dict[str, torch.Tensor]], None]


def file_sha256(path: Path) -> str:
    """SHA-256 of a file, read in 4 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()


def _source_metadata(source: Path) -> dict[str, str]:
    """What ties a converted copy to the `.pth` it came from (stored in the safetensors header)."""
    st = source.stat()
    return {"converted_from": source.name, "source_size": str(st.st_size),
            "source_mtime_ns": str(st.st_mtime_ns), "source_sha256": file_sha256(source)}


def _copy_is_stale(copy: Path, source: Path) -> bool:
    """True when `copy` was converted from a `.pth` other than `source` as it is now.

    A safetensors without our `converted_from` mark was made by hand (our refusal message suggests it) and is
    used as it is. A copy from before sources were recorded is converted again once. Same size and time: fresh;
    same size, other time (a copy without -p): the hash decides.
    """
    from safetensors import safe_open

    try:
        with safe_open(str(copy), framework="pt") as f:
            meta = f.metadata() or {}
    except Exception:  # unreadable header: _read_safetensors reports it with the fix
        return False
    if "converted_from" not in meta:
        return False
    st = source.stat()
    if "source_size" not in meta or meta["source_size"] != str(st.st_size):
        return True
    if meta.get("source_mtime_ns") == str(st.st_mtime_ns):
        return False
    return meta.get("source_sha256") != file_sha256(source)


def source_sha256(source: Path) -> str:
    """SHA-256 of a pickled checkpoint: the one its converted copy recorded when the copy is of the source as it
    is now (same size and time), so a multi-GB `.pth` is not read again on every load; else hashed."""
    from safetensors import safe_open

    copy = safetensors_path(source)
    if copy.is_file():
        try:
            with safe_open(str(copy), framework="pt") as f:
                meta = f.metadata() or {}
        except Exception:  # unreadable header: hash the source
            meta = {}
        st = source.stat()
        if (meta.get("source_sha256") and meta.get("source_size") == str(st.st_size)
                and meta.get("source_mtime_ns") == str(st.st_mtime_ns)):
            return meta["source_sha256"]
    return file_sha256(source)


def _read_safetensors(path: Path) -> dict[str, torch.Tensor]:
    """Every tensor of the file, read one by one so a Cancel (cancel.check) stops a multi-GB read."""
    from safetensors import safe_open

    try:
        out: dict[str, torch.Tensor] = {}
        with safe_open(str(path), framework="pt", device="cpu") as f:
            for key in f.keys():  # noqa: SIM118 (safe_open is not a mapping)
                check()
                out[key] = f.get_tensor(key)
        return out
    except Exception as exc:  # corrupt or truncated file (Cancel is not an Exception on current ComfyUI)
        if exc.__class__.__name__ == "InterruptProcessingException":
            raise  # ComfyUI 0.3.75's Cancel derives from Exception
        reason = file_kinds.not_a_checkpoint(path, "safetensors")
        if reason is not None:  # an LFS pointer, an HTML page, ...: say what it is
            raise CheckpointError(reason) from exc
        raise CheckpointError(
            f"could not read {path} as safetensors ({type(exc).__name__}: {exc}); delete it to have it "
            f"re-created from the .pth, or fetch the file again"
        ) from exc


def _unpickler_reason(exc: BaseException) -> str:
    """The one useful line of torch's weights_only error (not its advice to retry unsafely)."""
    lines = [line.strip() for line in str(exc).splitlines()]
    for i, line in enumerate(lines):
        if "WeightsUnpickler error:" in line:
            # The reason follows on the same line, or (for BUILD/NEWOBJ refusals) on the next non-empty one.
            rest = [line.split("WeightsUnpickler error:", 1)[1].strip(), *lines[i + 1 :]]
            reason = next((r for r in rest if r), "")
            return reason.split(". Please", 1)[0] or type(exc).__name__
    for line in lines:  # e.g. "Trying to load unsupported GLOBAL posix.system whose module posix is blocked."
        if "GLOBAL" in line:
            return line.rstrip(".")
    return type(exc).__name__


def _refusal(path: Path, key: str | None, exc: BaseException, refused: list[str]) -> CheckpointError:
    """The error for a file weights_only cannot read: names the file and the offending globals (or, when
    none were listed, torch's reason, which names only the first global it met, possibly an allowed one)."""
    why = (
        f"it needs globals that are not on the allowlist of inert training metadata: {', '.join(refused)}"
        if refused
        else _unpickler_reason(exc)
    )
    return CheckpointError(
        f"refusing to load {path}: it cannot be read with torch.load(weights_only=True) "
        f"({why}). It holds Python objects beyond tensors, and unpickling them "
        f"could run code, so it is not loaded. Use the published checkpoint file unchanged, or, only if "
        f"you trust this file, save its {'tensors' if key is None else repr(key) + ' entry'} as "
        f"safetensors (tensors only) beside it as {safetensors_path(path).name}: that file is then "
        f"used instead."
    )


def _unsafe_globals(path: Path) -> list[str]:
    """Globals the pickle names beyond torch's allowlist (static scan, nothing built); [] if unlistable."""
    try:
        return sorted(torch.serialization.get_unsafe_globals_in_checkpoint(str(path)))
    except (pickle.UnpicklingError, RuntimeError, EOFError, OSError, ValueError, IndexError, KeyError,
            TypeError, AttributeError, struct.error):
        return []  # legacy format, unsupported opcode, bad zip: keep the plain refusal


def _registered_name(entry: object) -> str:
    """The dotted name a safe-globals entry answers to (torch's rule: the tuple's string, else
    `__module__.__qualname__`)."""
    if isinstance(entry, tuple):
        return str(entry[1])
    return f"{getattr(entry, '__module__', '')}.{getattr(entry, '__qualname__', '')}"


@contextmanager
def _bound(entries: list[checkpoint_allowlist.SafeGlobal]) -> Iterator[None]:
    """For one load, our names resolve to our stand-ins; afterwards the registry is exactly as before.

    Others may have registered some of our names (ComfyUI registers the real `numpy.dtype`, `Float64DType`
    and a `numpy.core.multiarray.scalar` wrapper). torch resolves a name registered twice to either entry,
    and the real numpy ones cannot rebuild e.g. an int64 dtype under weights_only, so while we load, their
    entries for OUR names are set aside (restored after). A concurrent foreign load in that window sees our
    stand-ins under those names: inert, and only while this one-time read lasts.
    """
    ours = {name for _, name in entries}
    with _ALLOWLIST_LOCK:
        set_aside = [e for e in torch.serialization.get_safe_globals() if _registered_name(e) in ours]
        kept = [e for e in torch.serialization.get_safe_globals() if e not in set_aside]
        torch.serialization.clear_safe_globals()
        torch.serialization.add_safe_globals([*kept, *entries])
        try:
            yield
        finally:
            # Ours out, theirs back; anything registered meanwhile by someone else stays.
            now = [e for e in torch.serialization.get_safe_globals() if e not in entries]
            torch.serialization.clear_safe_globals()
            torch.serialization.add_safe_globals([*now, *set_aside])


def _load_weights_only(path: Path, key: str | None) -> object:
    """torch.load(weights_only=True); on refusal, once more with the inert training-metadata globals the
    file needs bound to our stand-ins, provided it needs nothing else. Never anything but weights_only."""
    try:
        return torch.load(str(path), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        first = exc
    needed = _unsafe_globals(path)
    if not needed:  # refused for another reason (e.g. a disallowed BUILD), or the globals cannot be listed
        raise _refusal(path, key, first, []) from first
    _, refused = checkpoint_allowlist.resolve(needed)
    if refused:
        raise _refusal(path, key, first, refused) from first
    # Names on our list that others registered are absent from `needed` but must be ours too (see _bound).
    others = {_registered_name(e) for e in torch.serialization.get_safe_globals()}
    entries, _ = checkpoint_allowlist.resolve(
        [*needed, *(n for n in checkpoint_allowlist.allowlist() if n in others)]
    )
    log.warning(
        "checkpoint %s is a training checkpoint: its metadata needs %s; allowed for this weights_only load "
        "as inert stand-ins (the real classes are not imported, nothing from the file runs); only the "
        "tensors of %s are used",
        path, ", ".join(needed), "the file" if key is None else repr(key),
    )
    with _bound(entries):
        try:
            return torch.load(str(path), map_location="cpu", weights_only=True)
        except pickle.UnpicklingError as exc:
            raise _refusal(path, key, exc, []) from exc


def _read_pth(path: Path, key: str | None) -> dict[str, torch.Tensor]:
    """weights_only torch.load, then pick `key` and keep only tensors (no unsafe fallback ever).

    Files that are certainly not checkpoints (LFS pointers, HTML pages, text, archives) are named as what
    they are before torch sees them: the pickle warning is for pickles only."""
    reason = file_kinds.not_a_checkpoint(path, "pth")
    if reason is not None:
        raise CheckpointError(reason)
    try:
        obj = _load_weights_only(path, key)
    except CheckpointError:
        raise
    except (RuntimeError, EOFError, OSError, ValueError, IndexError, KeyError, TypeError, AttributeError,
            struct.error) as exc:
        raise CheckpointError(
            f"could not read checkpoint {path} ({type(exc).__name__}: {exc}); the file may be truncated or "
            f"not a PyTorch checkpoint; fetch it again"
        ) from exc
    if key is not None:
        if not isinstance(obj, Mapping) or key not in obj:
            found = list(obj.keys())[:20] if isinstance(obj, Mapping) else type(obj).__name__
            raise CheckpointError(f"checkpoint {path} has no entry {key!r} (top level: {found})")
        obj = obj[key]
    if not isinstance(obj, Mapping):
        raise CheckpointError(f"checkpoint {path}: expected a dict of tensors, got {type(obj).__name__}")
    state: dict[str, torch.Tensor] = {}
    skipped: list[str] = []
    for name, value in obj.items():
        if isinstance(value, torch.Tensor):
            state[str(name)] = value
        else:
            skipped.append(str(name))
    if skipped:
        # Not weights (e.g. a stored config string); they have no place in a safetensors file.
        log.info("checkpoint %s: ignoring %d non-tensor entries: %s", path, len(skipped), skipped[:10])
    return state


def _prepare_for_safetensors(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """safetensors refuses shared storage and non-contiguous views: give each key its own contiguous copy."""
    out: dict[str, torch.Tensor] = {}
    seen: set[tuple[int, int]] = set()
    for name, t in state.items():
        t = t.detach()
        ident = (t.untyped_storage().data_ptr(), t.untyped_storage().nbytes())
        if ident in seen or not t.is_contiguous() or t.storage_offset() != 0 or (
            t.numel() * t.element_size() != t.untyped_storage().nbytes()
        ):
            t = t.contiguous().clone()
        else:
            seen.add(ident)
        out[name] = t
    return out


def _write_safetensors(state: Mapping[str, torch.Tensor], target: Path, source: Path) -> bool:
    """Atomic write (temp file + rename) so a crash never leaves a half-written file that is preferred later."""
    from safetensors.torch import save_file

    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{target.stem}.", suffix=".tmp", dir=str(target.parent))
    except OSError as exc:
        log.warning(
            "cannot write %s beside %s (%s); the .pth will be read (weights_only) on every load",
            target.name, source, exc,
        )
        return False
    os.close(fd)
    try:
        save_file(_prepare_for_safetensors(state), tmp, metadata=_source_metadata(source))
        os.replace(tmp, target)
    except OSError as exc:
        log.warning(
            "cannot write %s (%s); the .pth will be read (weights_only) on every load", target, exc
        )
        return False
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    log.info("converted %s to %s", source, target)
    return True


def load_checkpoint_dict(path: Path, key: str | None, check: KeyCheck | None = None) -> dict[str, torch.Tensor]:
    """Tensors of a checkpoint, read safely; `.pth` files are converted once to `.safetensors` beside them.

    `path` may name the `.pth` (or `.pt`) or the `.safetensors`. `key` picks the sub-dict of a `.pth` (`"model"` for
    BLIP, `"state_dict"` for mmengine files, None for a flat dict); a `.safetensors` already holds it.
    `check(state)` (the caller's strict key check, typically its strict load) runs on whatever was read; it
    runs before the converted copy is written, so a `.pth` whose keys do not fit leaves no copy behind.
    A copy whose `.pth` has changed since (see `_copy_is_stale`) is converted again.
    """
    path = Path(path)
    if path.suffix == ".safetensors":
        source = _source_beside(path)
        if source is None:
            if path.is_file():
                return _checked(_read_safetensors(path), check, path)
            names = " or ".join(path.with_suffix(s).name for s in SOURCE_SUFFIXES)
            raise FileNotFoundError(f"checkpoint not found: {path} (nor {names} beside it)")
        path = source
    st = safetensors_path(path)
    if st.is_file():
        if not path.is_file() or not _copy_is_stale(st, path):
            return _checked(_read_safetensors(st), check, st)
        log.info("%s changed since it was converted to %s; converting it again", path, st.name)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    state = _checked(_read_pth(path, key), check, path)
    _write_safetensors(state, st, path)
    return state


def _checked(state: dict[str, torch.Tensor], check: KeyCheck | None, source: Path) -> dict[str, torch.Tensor]:
    """Run the caller's key check; its error names the file the tensors came from."""
    if check is not None:
        try:
            check(state)
        except CheckpointError as exc:
            if str(source) in str(exc):
                raise
            raise CheckpointError(f"{exc}\n(tensors read from {source})") from exc
    return state


def _listing(keys: list[str]) -> str:
    keys = sorted(keys)
    shown = "\n  ".join(keys[:_MAX_LISTED])
    more = f"\n  ... and {len(keys) - _MAX_LISTED} more" if len(keys) > _MAX_LISTED else ""
    return f"  {shown}{more}"


def load_state_dict_strict(
    module: nn.Module,
    state: Mapping[str, torch.Tensor],
    rename: Callable[[str], str | None],
    what: str,
) -> None:
    """Load `state` into `module` with every key accounted for.

    `rename(official_key)` returns our parameter/buffer name, or None to drop the key deliberately (the
    caller documents why). Missing keys, unexpected keys, two official keys landing on one name, and shape
    mismatches all raise `CheckpointError` naming `what` and listing the keys. A module built on the meta
    device gets the checkpoint tensors assigned (their dtype; move/cast the module afterwards).
    """
    mapped: dict[str, torch.Tensor] = {}
    sources: dict[str, str] = {}
    collisions: list[str] = []
    for official, tensor in state.items():
        ours = rename(official)
        if ours is None:
            continue
        if ours in mapped:
            collisions.append(f"{sources[ours]} and {official} -> {ours}")
            continue
        mapped[ours] = tensor
        sources[ours] = official
    if collisions:
        raise CheckpointError(f"{what}: several checkpoint keys map to one parameter:\n{_listing(collisions)}")

    expected = module.state_dict()
    missing = [k for k in expected if k not in mapped]
    unexpected = [sources[k] for k in mapped if k not in expected]
    problems: list[str] = []
    if missing:
        problems.append(f"missing keys (in the module, not in the checkpoint):\n{_listing(missing)}")
    if unexpected:
        problems.append(f"unexpected keys (in the checkpoint, not in the module):\n{_listing(unexpected)}")
    shapes = [
        f"{sources[k]}: checkpoint {tuple(v.shape)} vs module {tuple(expected[k].shape)}"
        for k, v in mapped.items()
        if k in expected and tuple(v.shape) != tuple(expected[k].shape)
    ]
    if shapes:
        problems.append(f"shape mismatches:\n{_listing(shapes)}")
    dtypes = [
        f"{sources[k]}: {str(v.dtype).replace('torch.', '')}"
        for k, v in mapped.items()
        if k in expected and expected[k].is_floating_point() and not v.is_floating_point()
    ]
    if dtypes:  # e.g. int32 weights: torch would fail once per key with "only floating point tensors ..."
        problems.append("integer tensors where the model has floating-point weights (not a checkpoint of this "
                        f"model, or saved wrongly; fetch the original file):\n{_listing(dtypes)}")
    if problems:
        raise CheckpointError(f"{what}: checkpoint does not fit the model.\n" + "\n".join(problems))
    # A module built on the meta device (no memory, no random init) takes the checkpoint tensors as they are.
    on_meta = any(t.is_meta for t in expected.values())
    module.load_state_dict(mapped, strict=True, assign=on_meta)
