"""Keep ComfyUI's log readable when the artist makes a mistake the error message already explains.

ComfyUI logs every exception raised by a node with its full traceback. For the pack's own input errors (a
NodeInputError, or a library error that `errors.from_library` prefixed with the node's name) the message is
the whole story (node, input, fix), shown in the page and on the line ComfyUI logs before the traceback; the
traceback only buries it. Anything else (a bug) keeps its traceback.
"""

from __future__ import annotations

import logging
import re

_OURS = re.compile(r"(^|\.)NodeInputError: |^ValueError: AnimeReward [A-Za-z -]+: ")


class ExpectedUserErrors(logging.Filter):
    """Drops the traceback record whose exception is one of the pack's explained input errors."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno != logging.ERROR or not isinstance(record.msg, str) \
                or not record.msg.startswith("Traceback (most recent call last)"):
            return True
        last = record.msg.rstrip().rsplit("\n", 1)[-1]
        return _OURS.search(last) is None


def install() -> None:
    """Once per process, on the root logger (ComfyUI logs node exceptions through `logging.error`)."""
    root = logging.getLogger()
    if not any(isinstance(f, ExpectedUserErrors) for f in root.filters):
        root.addFilter(ExpectedUserErrors())
