"""The real ComfyUI HTTP server in a subprocess on a free loopback port, and a small client for it."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path
from typing import Any


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ComfyServer:
    """Start with `start()`, always `stop()` (it is a context manager too)."""

    def __init__(self, comfy_dir: Path, base_dir: Path, log_path: Path, python: str = sys.executable) -> None:
        self.comfy_dir, self.base_dir, self.log_path, self.python = comfy_dir, base_dir, log_path, python
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 180.0) -> ComfyServer:
        cmd = [self.python, "main.py", "--cpu", "--listen", "127.0.0.1", "--port", str(self.port),
               "--base-directory", str(self.base_dir), "--disable-auto-launch", "--log-stdout",
               "--database-url", "sqlite:///:memory:"]
        self._log = open(self.log_path, "wb")  # noqa: SIM115 - closed in stop()
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        self.proc = subprocess.Popen(cmd, cwd=self.comfy_dir, stdout=self._log, stderr=subprocess.STDOUT,
                                     env=env, start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"ComfyUI exited with {self.proc.returncode} during start-up:\n{self.log_tail()}")
            try:
                self.get("/system_stats", timeout=2)
                return self
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                time.sleep(0.3)
        self.stop()
        raise TimeoutError(f"ComfyUI did not answer within {timeout}s:\n{self.log_tail()}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=15)
        if getattr(self, "_log", None) is not None:
            self._log.close()

    def __enter__(self) -> ComfyServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def log_tail(self, chars: int = 4000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    # HTTP client
    def request(self, method: str, path: str, body: Any = None, timeout: float = 30) -> tuple[int, Any]:
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.url + path, data=data, method=method,
                                     headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=timeout) as resp:
                return resp.status, _decode(resp.read())
        except urllib.error.HTTPError as e:
            return e.code, _decode(e.read())

    def get(self, path: str, timeout: float = 30) -> Any:
        status, body = self.request("GET", path, timeout=timeout)
        if status != 200:
            raise RuntimeError(f"GET {path} -> {status}: {body}")
        return body

    def queue(self, prompt: dict[str, Any]) -> tuple[int, Any]:
        """POST /prompt; returns (status, body): 200 with prompt_id, or 400 with the validation error."""
        return self.request("POST", "/prompt", {"prompt": prompt, "client_id": str(uuid.uuid4())})

    def wait(self, prompt_id: str, timeout: float = 300) -> dict[str, Any]:
        """Poll /history until the prompt is done; returns its history entry."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            hist = self.get(f"/history/{prompt_id}")
            if prompt_id in hist and hist[prompt_id].get("status", {}).get("completed") is not None:
                entry = hist[prompt_id]
                if entry["status"].get("status_str") in ("success", "error"):
                    return entry
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"ComfyUI died while running {prompt_id}:\n{self.log_tail()}")
            time.sleep(0.2)
        raise TimeoutError(f"prompt {prompt_id} not finished after {timeout}s")

    def run(self, prompt: dict[str, Any], timeout: float = 300) -> dict[str, Any]:
        """Queue and wait; raise with ComfyUI's message when validation or execution fails."""
        status, body = self.queue(prompt)
        if status != 200:
            raise RuntimeError(f"POST /prompt -> {status}: {body}")
        entry = self.wait(body["prompt_id"], timeout)
        if entry["status"]["status_str"] != "success":
            err = next((d for e, d in entry["status"].get("messages", []) if e == "execution_error"), {})
            raise RuntimeError(f"prompt failed in {err.get('node_type')} ({err.get('node_id')}): "
                               f"{err.get('exception_type')}: {err.get('exception_message')}\n"
                               f"{''.join(err.get('traceback', [])[-3:])}")
        return entry


    def run_with_messages(self, prompt: dict[str, Any], event: str,
                          timeout: float = 300) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        """Queue over a websocket client and collect the pack's `event` messages (e.g. animereward.scores,
        which reach the page only, not the job's history); returns the history entry and the messages."""
        import asyncio

        return asyncio.run(self._run_with_messages(prompt, event, timeout))

    async def _run_with_messages(self, prompt: dict[str, Any], event: str,
                                 timeout: float) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        import aiohttp

        client_id = str(uuid.uuid4())
        messages: list[dict[str, Any]] = []
        ws_url = f"{self.url.replace('http', 'ws', 1)}/ws?clientId={client_id}"
        deadline = time.monotonic() + timeout
        async with aiohttp.ClientSession() as session, session.ws_connect(ws_url) as ws:
            async with session.post(f"{self.url}/prompt", json={"prompt": prompt, "client_id": client_id}) as r:
                body = await r.json()
                if r.status != 200:
                    raise RuntimeError(f"POST /prompt -> {r.status}: {body}")
            prompt_id = body["prompt_id"]
            while time.monotonic() < deadline:
                msg = await ws.receive(timeout=max(1.0, deadline - time.monotonic()))
                if msg.type != aiohttp.WSMsgType.TEXT:
                    continue
                data = json.loads(msg.data)
                if data.get("type") == event:
                    messages.append(data.get("data", {}))
                if data.get("type") in ("execution_success", "execution_error", "execution_interrupted") \
                        and data.get("data", {}).get("prompt_id") == prompt_id:
                    break
        return self.wait(prompt_id, max(1.0, deadline - time.monotonic())), messages


def _decode(raw: bytes) -> Any:
    try:
        return json.loads(raw)
    except ValueError:
        return raw.decode(errors="replace")
