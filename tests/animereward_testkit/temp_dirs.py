"""Temporary folders that live as long as the test process: weights written once and reused by every test."""

from __future__ import annotations

import atexit
import functools
import shutil
import tempfile
from pathlib import Path


@functools.cache
def process_temp_dir(prefix: str) -> Path:
    """One folder per prefix for this process, removed when it exits."""
    d = Path(tempfile.mkdtemp(prefix=prefix))
    atexit.register(shutil.rmtree, d, ignore_errors=True)
    return d
