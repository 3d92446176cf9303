"""Checks made when ComfyUI validates a prompt, before anything runs, from the prompt's own graph.

An input a scoring node needs (the prompt for the text dimensions, the first frame for image-video
consistency) depends on which dimensions its AnimeReward Loader will load: those enabled whose files are in
the chosen folder (the flow metrics always). That is known from the Loader's widget values and a listing of
the folder (`weights_layout.scan`, which never raises and reads no checkpoint), so a Best-of-N after a long
Wan generation reports an empty prompt when Run is pressed, not after the generation.

ComfyUI hands a node's validate_inputs its own inputs only, so the graph is taken where ComfyUI offers it to
packs: an on-prompt handler (called by POST /prompt just before validation) keeps it in a context variable,
which the request's validation reads (each request is its own asyncio task: concurrent prompts do not mix).
Anything not known then (no graph, a Loader input wired from another node, a reward from another kind of
node) is left to the run's own checks.
"""

from __future__ import annotations

from contextvars import ContextVar
from typing import Any

from ..animereward.dimensions import DIMENSIONS
from . import model_folder
from .scoring import CONNECT

_PROMPT: ContextVar[dict[str, Any] | None] = ContextVar("animereward_prompt_graph", default=None)


def remember_prompt(json_data: Any) -> Any:
    """On-prompt handler: keep the graph being queued for the validation that follows."""
    prompt = json_data.get("prompt") if isinstance(json_data, dict) else None
    _PROMPT.set(prompt if isinstance(prompt, dict) else None)
    return json_data


def install(server: Any) -> None:
    handlers = getattr(server, "on_prompt_handlers", None)
    if handlers is not None and remember_prompt not in handlers:
        server.add_on_prompt_handler(remember_prompt)


def _is_link(value: Any) -> bool:
    return isinstance(value, list) and len(value) == 2 and isinstance(value[1], int)


def dimensions_loaded(prompt: dict[str, Any], reward: Any) -> list[str] | None:
    """The dimensions the Loader feeding `reward` (a link) will load, or None when that is not known yet."""
    from ..animereward.weights_layout import scan
    from .loader_node import loader_dimensions

    node = prompt.get(str(reward[0])) if _is_link(reward) else None
    if not isinstance(node, dict) or node.get("class_type") != "AnimeRewardLoader":
        return None
    inputs = node.get("inputs", {})
    if any(_is_link(v) for v in inputs.values()):
        return None
    enabled = [d for d in loader_dimensions() if inputs.get(d, False) is True]
    weights = inputs.get("weights")
    if not isinstance(weights, str):
        return None  # an API prompt with odd values: the Loader's own validation names them
    root = None if weights == model_folder.NO_WEIGHTS else model_folder.weight_roots().get(weights)
    if weights != model_folder.NO_WEIGHTS and root is None:
        return None  # the Loader's own validation names the folder
    complete = scan(root)[0] if root is not None else {}
    return [d for d in enabled if not DIMENSIONS[d].needs_weights or complete.get(d, False)]


def missing_input_problem(node_name: str, node_id: Any, skip_unusable: Any) -> str | None:
    """The validation error for a scoring node whose loaded dimensions read an input it lacks, or None."""
    prompt = _PROMPT.get()
    if not prompt or node_id is None or skip_unusable:
        return None
    me = prompt.get(str(node_id), {}).get("inputs", {}) if isinstance(prompt.get(str(node_id)), dict) else {}
    if not isinstance(me, dict):
        return None
    try:
        dims = dimensions_loaded(prompt, me.get("reward"))
    except Exception:  # validation must not break on a graph it cannot read: the run checks again
        return None
    for d in dims or ():
        dim = DIMENSIONS[d]
        text = me.get("prompt", "")
        if dim.needs_prompt and isinstance(text, str) and not text.strip():
            need = "prompt"
        elif dim.needs_first_frame and me.get("first_frame") is None:
            need = "first_frame"
        else:
            continue
        return (f"{node_name}: input '{need}': {d} will be scored (its weights are in the Loader's folder) but "
                f"'{need}' is empty. Fix: {CONNECT[need]}, switch {d} off in the loader, or turn on "
                "skip_unusable.")
    return None
