"""Write and check safetensors files without the intermediate copies.

`safetensors.torch.save_file` first copies every tensor into one bytes object; a Wan group is tens of MB, so
the store writes the standard layout itself (8-byte header length, JSON header, raw little-endian data) straight
from each tensor's memory, and fsyncs it. Files stay plain safetensors: `safetensors.torch.load_file` reads
them. `read_header` checks a file's size against its header without touching the data, which is how the store
finds a truncated group cheaply.
"""

from __future__ import annotations

import ctypes
import json
import os
import struct
import sys
from pathlib import Path
from typing import Any

import torch

_DTYPES: dict[torch.dtype, str] = {
    torch.float64: "F64",
    torch.float32: "F32",
    torch.float16: "F16",
    torch.bfloat16: "BF16",
    torch.int64: "I64",
    torch.int32: "I32",
    torch.int16: "I16",
    torch.int8: "I8",
    torch.uint8: "U8",
    torch.bool: "BOOL",
}
for _name, _code in (("float8_e4m3fn", "F8_E4M3"), ("float8_e5m2", "F8_E5M2"), ("uint16", "U16"),
                     ("uint32", "U32"), ("uint64", "U64")):
    if hasattr(torch, _name):
        _DTYPES[getattr(torch, _name)] = _code

MAX_HEADER_BYTES = 64 * 1024 * 1024
CHUNK = 8 * 1024 * 1024
_SYNC_FILE_RANGE_WRITE = 2


def _load_sync_file_range():
    """Linux's sync_file_range (start writeback of a range without waiting), or None elsewhere."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        fn = ctypes.CDLL(None, use_errno=True).sync_file_range
    except (OSError, AttributeError):
        return None
    fn.argtypes = [ctypes.c_int, ctypes.c_longlong, ctypes.c_longlong, ctypes.c_uint]
    fn.restype = ctypes.c_int
    return fn


_sync_file_range = _load_sync_file_range()


def dtype_code(dtype: torch.dtype) -> str | None:
    """The safetensors dtype code, or None when safetensors cannot hold the dtype."""
    return _DTYPES.get(dtype)


def _raw_bytes(t: torch.Tensor) -> memoryview:
    flat = t.detach().to("cpu").contiguous().reshape(-1)
    return memoryview(flat.view(torch.uint8).numpy()) if flat.numel() else memoryview(b"")


def write_safetensors(path: Path, tensors: dict[str, torch.Tensor], metadata: dict[str, str],
                      fsync: bool = True) -> None:
    """Write `tensors` as a safetensors file at `path` and fsync it (unless the caller does that later).
    Tensors may live on any device."""
    header: dict[str, Any] = {"__metadata__": metadata}
    offset = 0
    for name, t in tensors.items():
        code = dtype_code(t.dtype)
        if code is None:
            raise TypeError(f"tensor '{name}': dtype {t.dtype} cannot be stored in safetensors")
        size = t.numel() * t.element_size()
        header[name] = {"dtype": code, "shape": list(t.shape), "data_offsets": [offset, offset + size]}
        offset += size
    head = json.dumps(header, separators=(",", ":")).encode()
    head += b" " * (-len(head) % 8)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        pos = _write_all(fd, struct.pack("<Q", len(head)) + head, 0)
        for t in tensors.values():
            pos = _write_all(fd, _raw_bytes(t), pos)
        if fsync:
            os.fsync(fd)
    finally:
        os.close(fd)


def _write_all(fd: int, data: bytes | memoryview, pos: int) -> int:
    """Write `data` at the end of the file in chunks, starting the disk writeback of each chunk at once so
    that the final fsync has little left to wait for (the fsync stays the durability guarantee)."""
    view = memoryview(data)
    while view:
        n = os.write(fd, view[:CHUNK])
        if _sync_file_range is not None and n >= CHUNK // 2:
            _sync_file_range(fd, pos, n, _SYNC_FILE_RANGE_WRITE)
        pos += n
        view = view[n:]
    return pos


def read_header(path: Path) -> dict[str, Any]:
    """The file's JSON header, after checking that the file holds exactly the bytes it declares.

    Raises ValueError with a short reason (truncated, oversized header, bad JSON, overlapping data).
    """
    size = path.stat().st_size
    with open(path, "rb") as f:
        raw = f.read(8)
        if len(raw) < 8:
            raise ValueError(f"truncated: {size} bytes, no safetensors header")
        (n,) = struct.unpack("<Q", raw)
        if n > MAX_HEADER_BYTES or 8 + n > size:
            raise ValueError(f"truncated or not safetensors: header of {n} bytes in a {size}-byte file")
        try:
            header = json.loads(f.read(n))
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise ValueError(f"unreadable safetensors header ({e})") from None
    if not isinstance(header, dict):
        raise ValueError("safetensors header is not a JSON object")
    end = 0
    for name, info in header.items():
        if name == "__metadata__":
            continue
        try:
            _begin, stop = info["data_offsets"]
        except (KeyError, TypeError, ValueError):
            raise ValueError(f"safetensors header entry '{name}' has no data_offsets") from None
        end = max(end, int(stop))
    if 8 + n + end != size:
        raise ValueError(f"truncated: the header declares {8 + n + end} bytes, the file has {size}")
    return header
