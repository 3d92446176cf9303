"""The pack's ComfyExtension: the list of nodes ComfyUI registers."""

from __future__ import annotations

from comfy_api.latest import ComfyExtension, io


class AnimeRewardExtension(ComfyExtension):
    async def get_node_list(self) -> list[type[io.ComfyNode]]:
        from .node_list import NODES

        return list(NODES)
