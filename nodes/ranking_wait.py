"""Wake a Collect node that waits for its group's human ranking as soon as the panel saves one.

The routes run on the server's event loop and the node on the executor thread of the same process, so a
condition variable is enough; the node also re-reads the group from disk on a short period, which covers a
ranking written by another process (a second ComfyUI on the same datasets folder).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")

_CONDITION = threading.Condition()
_VERSION = 0


def notify_ranking_saved(dataset: str, group_id: str) -> None:
    """Called by the ranking route after a ranking or a skip is on disk."""
    global _VERSION
    with _CONDITION:
        _VERSION += 1
        _CONDITION.notify_all()


def wait_for(check: Callable[[], T | None], timeout: float, interrupted: Callable[[], None],
             poll: float = 0.5, tick: float = 0.1) -> T | None:
    """`check()` until it returns something, `timeout` seconds pass (→ None), or `interrupted()` raises.

    `check` runs after every notification and at least every `poll` seconds; `interrupted` (ComfyUI's Cancel
    check) runs every `tick` seconds, so Cancel takes effect within a tenth of a second.
    """
    deadline = time.monotonic() + timeout
    last_check = 0.0
    with _CONDITION:
        seen = _VERSION
    while True:
        now = time.monotonic()
        if now - last_check >= poll or seen != _VERSION:
            seen = _VERSION
            last_check = now
            found = check()
            if found is not None:
                return found
        interrupted()
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return None
        with _CONDITION:
            if seen == _VERSION:
                _CONDITION.wait(min(tick, remaining))
