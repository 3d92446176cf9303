"""Durable, atomic file writes and an inter-process lock for the preference store.

Every file the store commits goes through `atomic_write_bytes` (temp file in the same folder, fsync,
rename, fsync of the folder), so a reader, or a process that survives a `kill -9` of the writer, sees either
the old file or the new one, never a torn one. `DatasetLock` serialises the few short critical sections
(index append, ranking updates) between processes with `fcntl.flock`, which the kernel releases when the
holder dies, so a killed writer never leaves a stale lock behind.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import secrets
import threading
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from .store_errors import StoreError

_pool: ThreadPoolExecutor | None = None
_pool_pid = 0  # a forked child inherits the pool object but not its threads: it makes its own
_pool_lock = threading.Lock()


def open_no_follow(path: Path, flags: int, mode: int = 0o644) -> int:
    """`os.open` that refuses a link at `path`: a link planted in a dataset folder (say, by an extracted
    archive) must not make the store write or read outside it."""
    try:
        return os.open(path, flags | os.O_NOFOLLOW, mode)
    except OSError as e:
        if e.errno != errno.ELOOP:
            raise
        raise link_refused(path) from None


def link_refused(path: Path) -> StoreError:
    return StoreError(f"{path} is a link; the store never follows links inside a dataset folder. Remove the "
                      "link (and put the real file back if it was moved).")


def fsync_dir(path: Path) -> None:
    """Make a rename or a new entry inside `path` durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_durable(path: Path, data: bytes | memoryview, fsync: bool = True) -> None:
    """Write a new file and fsync it (or leave that to `fsync_all` for several files at once)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        view = memoryview(data)
        while view:
            n = os.write(fd, view)
            view = view[n:]
        if fsync:
            os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_path(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | (os.O_DIRECTORY if path.is_dir() else 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_all(paths: Iterable[Path]) -> None:
    """fsync files and folders concurrently: the filesystem's journal then commits them together, which costs
    about one fsync instead of one per file (a group has a preview per candidate)."""
    global _pool, _pool_pid
    paths = list(paths)
    if len(paths) <= 1:
        for p in paths:
            _fsync_path(p)
        return
    with _pool_lock:
        if _pool is None or _pool_pid != os.getpid():
            _pool = ThreadPoolExecutor(max_workers=8, thread_name_prefix="store-fsync")
            _pool_pid = os.getpid()
    for f in [_pool.submit(_fsync_path, p) for p in paths]:
        f.result()


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Replace `path` with `data` atomically and durably (temp file, fsync, rename, fsync folder)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    try:
        write_durable(tmp, data)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    fsync_dir(path.parent)


@contextlib.contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """Exclusive advisory lock on `path` (created if missing; never through a link), held for the `with` block."""
    fd = open_no_follow(path, os.O_RDWR | os.O_CREAT)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the flock
