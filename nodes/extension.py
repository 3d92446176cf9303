"""The pack's ComfyExtension: the list of nodes ComfyUI registers, and the ranking panel's routes."""

from __future__ import annotations

import logging
import sys

from comfy_api.latest import ComfyExtension, io


def register_routes() -> None:
    """Add the /animereward/ routes, and the on-prompt handler of graph_checks (validation-time checks that
    need the whole graph), when ComfyUI's server runs in this process (it is created before custom
    nodes load, and adds its route table after). Without a server (in-process tests, a bare import) there is
    nothing to do, and nothing is imported; a failure is logged and the nodes still load."""
    if getattr(getattr(sys.modules.get("server"), "PromptServer", None), "instance", None) is None:
        return
    try:
        from . import graph_checks

        graph_checks.install(sys.modules["server"].PromptServer.instance)
    except Exception:
        logging.getLogger("AnimeReward").exception("AnimeReward: prompts are checked when they run only")
    try:
        from .routes import register

        register()
    except Exception:
        logging.getLogger("AnimeReward").exception("AnimeReward: the ranking panel's routes are unavailable")


class AnimeRewardExtension(ComfyExtension):
    async def get_node_list(self) -> list[type[io.ComfyNode]]:
        from . import quiet_logs
        from .node_list import NODES

        quiet_logs.install()
        register_routes()
        return list(NODES)
