"""A dataset's commit index and ranking hints: fixed-size records so pages are found by arithmetic.

`index.txt` holds one 64-byte record per committed group (the id padded with spaces, then a newline), appended
with one `write` under the dataset lock and fsynced; the record is the group's commit. Because records have
a fixed size, record k starts at byte 64·k: a listing cursor is a record number and a page reads only its own
records. `status.bin` holds one byte per record ('r' ranked, 's' skipped, 'u' or missing: neither), so
listing unranked groups skips ranked ones without opening their folders. The byte is a hint; the group's
`ranking.json` is the truth (see `PreferenceStore.set_ranking` for the write order that keeps it safe).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from .atomic_io import link_refused, open_no_follow

RECORD_SIZE = 64
INDEX_FILE, STATUS_FILE = "index.txt", "status.bin"
UNRANKED, RANKED, SKIPPED = b"u", b"r", b"s"


def _record(group_id: str) -> bytes:
    return group_id.ljust(RECORD_SIZE - 1).encode("ascii") + b"\n"


def append_record(ds_path: Path, group_id: str) -> None:
    """Append one record and fsync (the caller holds the dataset lock). A torn tail (a power loss mid-write)
    is cut first so records stay aligned; it belonged to a group that was never committed."""
    fd = open_no_follow(ds_path / INDEX_FILE, os.O_RDWR | os.O_CREAT | os.O_APPEND)
    try:
        size = os.fstat(fd).st_size
        if size % RECORD_SIZE:
            os.ftruncate(fd, size - size % RECORD_SIZE)
        if os.write(fd, _record(group_id)) != RECORD_SIZE:
            raise OSError("short write to the index")
        os.fsync(fd)
    finally:
        os.close(fd)


def record_count(ds_path: Path) -> int:
    try:
        fd = open_no_follow(ds_path / INDEX_FILE, os.O_RDONLY)
    except FileNotFoundError:
        return 0
    try:
        return os.fstat(fd).st_size // RECORD_SIZE
    finally:
        os.close(fd)


def index_bytes(ds_path: Path, start: int = 0, count: int | None = None) -> bytes:
    """Whole records from record `start` on (at most `count`; a torn tail is left out)."""
    try:
        fd = open_no_follow(ds_path / INDEX_FILE, os.O_RDONLY)
    except FileNotFoundError:
        return b""
    with os.fdopen(fd, "rb") as f:
        f.seek(start * RECORD_SIZE)
        data = f.read() if count is None else f.read(count * RECORD_SIZE)
    return data[: len(data) - len(data) % RECORD_SIZE]


def record_id(data: bytes, k: int, pattern: re.Pattern[str]) -> str | None:
    """The group id in record k of `data`, or None for a damaged record."""
    rec = data[k * RECORD_SIZE:(k + 1) * RECORD_SIZE]
    gid = rec[:-1].rstrip(b" ").decode("ascii", "replace")
    return gid if rec.endswith(b"\n") and pattern.fullmatch(gid) else None


def record_number(ds_path: Path, group_id: str) -> int | None:
    """Where the group's record is (a memory search of the index, no parsing), or None."""
    data = index_bytes(ds_path)
    needle = _record(group_id)
    pos = data.find(needle)
    while pos >= 0 and pos % RECORD_SIZE:
        pos = data.find(needle, pos + 1)
    return None if pos < 0 else pos // RECORD_SIZE


def read_status(ds_path: Path, n: int) -> bytes:
    """The hint byte of each of the first n records ('u' where the file is shorter)."""
    try:
        fd = open_no_follow(ds_path / STATUS_FILE, os.O_RDONLY)
    except FileNotFoundError:
        return UNRANKED * n
    try:
        data = os.pread(fd, n, 0)
    finally:
        os.close(fd)
    return data + UNRANKED * (n - len(data))


def refuse_links(ds_path: Path) -> None:
    """Before a change that writes the ranking and then these files: none of them may be a link, so a refused
    link leaves nothing half-changed."""
    for name in (INDEX_FILE, STATUS_FILE):
        if (ds_path / name).is_symlink():
            raise link_refused(ds_path / name)


def write_status(ds_path: Path, number: int, status: bytes) -> None:
    fd = open_no_follow(ds_path / STATUS_FILE, os.O_RDWR | os.O_CREAT)
    try:
        os.pwrite(fd, status, number)
        os.fsync(fd)
    finally:
        os.close(fd)
