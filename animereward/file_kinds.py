"""What a file that should be a checkpoint really is, from its first bytes.

Downloads fail in familiar ways: a Git LFS pointer instead of the weights (a clone without `git lfs pull`),
an HTML login or error page saved under the checkpoint's name, a JSON answer from an API, an empty or
truncated file, an archive not yet extracted. Such a file is not dangerous, only wrong, so it must not get
the pickle warning meant for checkpoints holding Python objects: the message says what the file is and how
to get the real one. A pickle or a PyTorch zip checkpoint is left to the checkpoint reader.
"""

from __future__ import annotations

import struct
from pathlib import Path

SNIFF_BYTES = 4096
LFS_HEADER = b"version https://git-lfs.github.com/spec/"


def _text(head: bytes) -> str | None:
    """The head as text when it is plain UTF-8 text (a cut multi-byte character at the end is allowed)."""
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError as exc:
        if exc.start < len(head) - 4:
            return None
        text = head[: exc.start].decode("utf-8")
    if any(ord(c) < 32 and c not in "\t\r\n\f" for c in text):
        return None
    return text


def _safetensors_header(head: bytes, size: int) -> bool:
    if len(head) < 10:
        return False
    (n,) = struct.unpack("<Q", head[:8])
    return 0 < n <= size - 8 and head[8:9] == b"{"


def sniff(path: Path) -> str | None:
    """A sentence saying what the file is when it is certainly not a checkpoint, else None.

    Recognised: empty file, Git LFS pointer, HTML page, JSON, other text, gzip/xz/bzip2/7z/rar archives.
    A safetensors file is named as such (the caller decides whether that is wrong for its suffix).
    """
    path = Path(path)
    try:
        size = path.stat().st_size
        with path.open("rb") as f:
            head = f.read(SNIFF_BYTES)
    except OSError as exc:
        return f"cannot be read ({exc.strerror or exc})"
    if size == 0:
        return "is an empty file (0 bytes): the download or copy did not finish; fetch it again"
    if head.startswith(LFS_HEADER):
        return ("is a Git LFS pointer (a small text file standing in for the weights), not the checkpoint: fetch "
                "the real file (`git lfs pull` in the cloned repository, or download it from the hub page)")
    if _safetensors_header(head, size):
        return "is a safetensors file"
    for magic, what in ((b"\x1f\x8b", "a gzip archive"), (b"\xfd7zXZ\x00", "an xz archive"),
                        (b"BZh", "a bzip2 archive"), (b"7z\xbc\xaf\x27\x1c", "a 7-Zip archive"),
                        (b"Rar!", "a RAR archive")):
        if head.startswith(magic):
            return f"is {what}, not a checkpoint: extract it first and use the file inside"
    text = _text(head)
    if text is None:
        if head.startswith((b"PK", b"\x80")):
            return None  # a zip (PyTorch's format) or a binary pickle: the checkpoint reader decides
        return ("is not a checkpoint: its first bytes are neither a PyTorch zip archive nor a pickle (a "
                "different or damaged file); fetch it again")
    start = text.lstrip("\ufeff \t\r\n").lower()
    if start.startswith(("<!doctype html", "<html", "<head", "<body")) or "<html" in start[:512]:
        return ("is an HTML page (a web page saved in place of the file, e.g. a login or error page), not a "
                "checkpoint: download the file itself")
    if start.startswith(("{", "[")):
        return "is a JSON file, not a checkpoint: download the checkpoint file itself"
    return f"is a text file ({size} bytes), not a checkpoint: download the checkpoint file itself"


def not_a_checkpoint(path: Path, suffix: str) -> str | None:
    """The complete reason a file named `*.{suffix}` cannot be a checkpoint of that kind, or None.

    suffix "pth": a safetensors file under a .pth name is named so (rename it); "safetensors": every
    recognised non-checkpoint kind.
    """
    what = sniff(path)
    if what is None:
        return None
    if what == "is a safetensors file":
        if suffix == "safetensors":
            return None
        return (f"{path} is a safetensors file with a .{suffix} name: rename it to "
                f"{Path(path).with_suffix('.safetensors').name}")
    return f"{path} {what}"
