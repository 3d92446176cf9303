"""API-format prompts built node by node, with outputs addressed by name instead of by position.

    g = Graph()
    clips = g.add("AnimeRewardSyntheticClips", defects="clean", frames=9, width=160, height=96, seed=0)
    reward = g.add(**loader())                       # the dict builders of reward_workflows work too
    best = g.add("AnimeRewardBestOfN", reward=reward["reward"], images=clips["images"],
                 frames_per_clip=clips["frames_per_clip"], top_k=2)
    comfy.run(g.prompt())  ...  best.id

Ids are given out in order ("1", "2", ...), so nothing depends on hard-wired ids. `node["name"]` is the link
`[id, index]` to the output whose name (what the page shows), V3 id or type is `name`; an unknown name is
an error listing the node's outputs. Output names come from ComfyUI's registered node classes, so a Graph
needs ComfyUI imported in this process (the `comfy` fixture does it).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


def output_names(class_type: str) -> list[tuple[str, ...]]:
    """For each output of a registered node class, the names it answers to: shown name, V3 id, type."""
    import nodes

    cls = nodes.NODE_CLASS_MAPPINGS[class_type]
    types = list(cls.RETURN_TYPES)
    shown = list(getattr(cls, "RETURN_NAMES", None) or types)
    ids: Sequence[str | None] = [None] * len(types)
    schema = getattr(cls, "GET_SCHEMA", None)
    if schema is not None:
        ids = [getattr(o, "id", None) for o in schema().outputs]
    return [tuple(dict.fromkeys(n for n in (s, i, t) if n)) for s, i, t in zip(shown, ids, types, strict=False)]


def output_index(class_type: str, name: str) -> int:
    outputs = output_names(class_type)
    for exact in (True, False):
        hits = [i for i, names in enumerate(outputs)
                if any(n == name if exact else n.lower() == name.lower() for n in names)]
        if len(hits) == 1:
            return hits[0]
    raise KeyError(f"{class_type} has no single output named {name!r}; its outputs: "
                   f"{[names[0] for names in outputs]}")


def link(prompt: dict[str, Any], node_id: str, name: str) -> list[Any]:
    """The link to output `name` of node `node_id` of a dict-built prompt (for graphs written as dicts)."""
    return [node_id, output_index(prompt[node_id]["class_type"], name)]


class Node:
    def __init__(self, graph: Graph, node_id: str, class_type: str, inputs: dict[str, Any]) -> None:
        self.graph, self.id, self.class_type, self.inputs = graph, node_id, class_type, inputs

    def __getitem__(self, name: str) -> list[Any]:
        return [self.id, output_index(self.class_type, name)]

    def set(self, **inputs: Any) -> Node:
        self.inputs.update(inputs)
        return self


class Graph:
    def __init__(self) -> None:
        self.nodes: dict[str, Node] = {}

    def add(self, class_type: str, inputs: dict[str, Any] | None = None, **more: Any) -> Node:
        """A node of `class_type` with `inputs` (links from `node["output"]`, or widget values)."""
        node = Node(self, str(len(self.nodes) + 1), class_type, {**(inputs or {}), **more})
        self.nodes[node.id] = node
        return node

    def remove(self, node: Node) -> None:
        del self.nodes[node.id]

    def prompt(self) -> dict[str, Any]:
        return {n.id: {"class_type": n.class_type, "inputs": dict(n.inputs)} for n in self.nodes.values()}
