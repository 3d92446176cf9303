"""The scores drawn on the Score and Best-of-N nodes, sent to the page as an `animereward.scores` message.

Not a UI output: ComfyUI's page (frontend 1.32) lists every item of every UI-output list of a job as a file in
its queue sidebar, so scores sent that way showed up as blank "animereward" file entries that did nothing when
clicked. A message of its own reaches the page the same way (the websocket) without entering the job's
history; the web front (web/js/animereward.js) keeps the table on the node across tab switches and reloads.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from .page_messages import send_to_page

if TYPE_CHECKING:
    from ..animereward.scores import RewardScores

EVENT = "animereward.scores"


def show_scores(node_id: str | None, payload: dict[str, Any]) -> None:
    """Send the table to the page that queued the prompt (no-op when no server runs, e.g. a script)."""
    if node_id is not None:
        send_to_page(EVENT, {"node": str(node_id), "scores": payload})


def scores_payload(skipped: Sequence[str], results: Sequence[RewardScores], warnings: Sequence[str],
                   order: Sequence[int] | None = None) -> dict[str, Any]:
    """What the web front draws: per clip {total, scores}, the ranking (Best-of-N), warnings, the
    dimensions the loader skipped for missing files, and the registry's short label of each dimension (the
    page keeps no list of its own)."""
    from ..animereward.dimensions import labels

    payload: dict[str, Any] = {"clips": [r.to_dict() for r in results], "warnings": list(warnings),
                               "skipped": sorted(skipped), "labels": labels()}
    if order is not None:
        payload["order"] = list(order)
    return payload
