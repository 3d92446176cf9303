"""Messages to the page that queued the prompt: how score tables, collect results and training progress
reach the web front.

Not UI outputs: ComfyUI's page (frontend 1.32) lists every item of every UI-output list of a job as a file in
its queue sidebar, so results sent that way showed up as blank file entries. A websocket message of its own
reaches the page without entering the job's history.
"""

from __future__ import annotations

import sys
from typing import Any


def send_to_page(event: str, data: dict[str, Any]) -> None:
    """Send `data` (plus the prompt id) to the client that queued the prompt; a no-op when no server runs."""
    server = sys.modules.get("server")
    instance = getattr(getattr(server, "PromptServer", None), "instance", None)
    if instance is None:
        return
    message = {**data, "prompt_id": getattr(instance, "last_prompt_id", None)}
    instance.send_sync(event, message, getattr(instance, "client_id", None))
