"""Run API-format workflows through ComfyUI's real PromptExecutor inside this Python process.

ComfyUI's modules are process-global (argument parsing, folder_paths, model management), so there is one
instance per process, made by `start()`.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from pathlib import Path
from typing import Any

from .comfy_paths import import_comfy

_INSTANCE: ComfyInProcess | None = None


class _ServerStub:
    """The few members PromptExecutor (and nodes, through `PromptServer.instance`) use from PromptServer;
    records the messages it is sent."""

    def __init__(self) -> None:
        from aiohttp import web

        self.client_id: str | None = "animereward-tests"
        self.last_node_id: str | None = None
        self.last_prompt_id: str | None = None
        self.messages: list[tuple[str, Any]] = []
        self.times: list[float] = []  # perf_counter() at each message, for per-node timings
        self.routes = web.RouteTableDef()  # packs add their routes at import; nothing serves them here
        self.on_prompt_handlers: list[Any] = []  # called with the request before validation, as the server does

    def add_on_prompt_handler(self, handler: Any) -> None:
        self.on_prompt_handlers.append(handler)

    def send_sync(self, event: str, data: Any, sid: str | None = None) -> None:
        self.messages.append((event, data))
        self.times.append(time.perf_counter())

    def queue_updated(self) -> None:
        pass


class WorkflowError(RuntimeError):
    """A workflow failed validation or execution; the message carries ComfyUI's own error text."""

    def __init__(self, message: str, details: Any = None) -> None:
        super().__init__(message)
        self.details = details


class ComfyInProcess:
    def __init__(self, comfy_dir: Path, base_dir: Path) -> None:
        self.comfy_dir = comfy_dir
        self.base_dir = base_dir
        self._boot()
        import execution

        self._execution = execution

    def _boot(self) -> None:
        import_comfy(self.comfy_dir, self.base_dir)
        import server

        self.server = _ServerStub()
        if getattr(server.PromptServer, "instance", None) is None:
            server.PromptServer.instance = self.server  # what nodes reach for to message the page
        import nodes

        asyncio.run(nodes.init_extra_nodes(init_custom_nodes=True, init_api_nodes=False))
        self.node_classes = nodes.NODE_CLASS_MAPPINGS

    def run(self, prompt: dict[str, Any], outputs: list[str] | None = None) -> dict[str, Any]:
        """Validate and execute `prompt`; return the UI outputs per output node (history_result["outputs"])."""
        execution = self._execution
        prompt_id = str(uuid.uuid4())
        for handler in self.server.on_prompt_handlers:  # as POST /prompt does (trigger_on_prompt)
            prompt = handler({"prompt": prompt}).get("prompt", prompt)
        valid, error, to_execute, node_errors = asyncio.run(execution.validate_prompt(prompt_id, prompt, outputs))
        if not valid or node_errors:  # ComfyUI runs the valid outputs only; the page marks the others in red
            raise WorkflowError(f"validation failed: {error} {node_errors}", {"error": error, "node_errors": node_errors})
        self.server.messages.clear()
        self.server.times.clear()
        self.server.last_prompt_id = prompt_id
        # "ram_inactive": read unconditionally by current ComfyUI (0.33) in execute_async; 0.3.75 ignores it.
        executor = execution.PromptExecutor(
            self.server, cache_type=execution.CacheType.CLASSIC, cache_args={"lru": 0, "ram": 0, "ram_inactive": 0}
        )
        executor.execute(prompt, prompt_id, {"client_id": self.server.client_id}, to_execute)
        self.server.send_sync("run_done", None)  # closes the last node's time (main.py's final message)
        blocked = [d for e, d in self.server.messages if e == "execution_error" and d.get("exception_type") ==
                   "ExecutionBlocked"]
        if executor.success and blocked:  # a node got an ExecutionBlocker with a message: the page shows an error
            err = blocked[0]
            raise WorkflowError(f"execution blocked: {err.get('node_type')} ({err.get('node_id')}): "
                                f"{err.get('exception_message')}", err)
        if not executor.success:
            if any(e == "execution_interrupted" for e, _ in self.server.messages):
                raise WorkflowError("execution interrupted", {"interrupted": True})
            err = next((d for e, d in self.server.messages if e == "execution_error"), None)
            msg = f"{err.get('node_type')} ({err.get('node_id')}): {err.get('exception_message')}" if err else "unknown"
            raise WorkflowError(f"execution failed: {msg}", err)
        return executor.history_result["outputs"]

    def shown_scores(self, node_id: str) -> dict[str, Any]:
        """The score table the page would draw on a Score or Best-of-N node in the last run."""
        for event, data in reversed(self.server.messages):
            if event == "animereward.scores" and data["node"] == node_id:
                return data["scores"]
        raise KeyError(f"node {node_id} sent no scores in the last run")

    def node_seconds(self, node_id: str) -> float:
        """Wall time of one node in the last run: from its 'executing' message to its 'executed' message
        (output nodes with a UI output), the next node's 'executing', or the end of the run (the last node:
        the scores now reach the page by a message of their own, so Best-of-N sends no 'executed')."""
        events = list(zip(self.server.messages, self.server.times, strict=True))
        for i, ((event, data), t0) in enumerate(events):
            if event == "executing" and isinstance(data, dict) and data.get("node") == node_id:
                for (e, d), t1 in events[i + 1:]:
                    if e in ("executing", "run_done") or (e == "executed" and d.get("node") == node_id):
                        return t1 - t0
        raise KeyError(f"node {node_id} did not run, or no message followed it")


def start(comfy_dir: Path, base_dir: Path) -> ComfyInProcess:
    global _INSTANCE
    if _INSTANCE is None:
        _INSTANCE = ComfyInProcess(comfy_dir, base_dir)
    elif _INSTANCE.base_dir != base_dir:
        raise RuntimeError("ComfyUI is already running in this process with another base directory")
    return _INSTANCE
