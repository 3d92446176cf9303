"""Test set-up shared by every test.

pytest runs in importlib mode, so it does not put the repo root on sys.path. The root is appended (not
prepended) so `import animereward` works while ComfyUI's own top-level `nodes` module, which the in-process
harness puts first on sys.path, is never shadowed by this pack's `nodes/` package. tests/ is appended too,
for the harness package `animereward_testkit` (a name nothing else uses).
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
for _p in (REPO_ROOT, REPO_ROOT / "tests"):
    if str(_p) not in sys.path:
        sys.path.append(str(_p))

from animereward_testkit import comfy_paths, inprocess  # noqa: E402
from animereward_testkit.example_inputs import write_example_inputs  # noqa: E402
from animereward_testkit.server import ComfyServer  # noqa: E402
from animereward_testkit.tiny_models import write_tiny_wan  # noqa: E402


@pytest.fixture(scope="session")
def comfy_dir() -> Path:
    return comfy_paths.comfyui_dir()


@pytest.fixture(scope="session")
def comfy_base_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh ComfyUI base directory (models, custom_nodes with this pack, input, output, user) per run."""
    base = comfy_paths.make_base_dir(tmp_path_factory.mktemp("comfy_base"))
    write_example_inputs(base / "input")
    return base


@pytest.fixture(scope="session")
def comfy(comfy_dir: Path, comfy_base_dir: Path) -> inprocess.ComfyInProcess:
    """ComfyUI loaded in this process (CPU), with its built-in nodes, this pack and the test-only nodes."""
    return inprocess.start(comfy_dir, comfy_base_dir)


@pytest.fixture(scope="session")
def tiny_models(comfy: inprocess.ComfyInProcess, comfy_base_dir: Path) -> dict[str, Path]:
    return write_tiny_wan(comfy_base_dir / "models")


@pytest.fixture(scope="session")
def comfy_server(comfy_dir: Path, comfy_base_dir: Path, tiny_models: dict[str, Path]) -> Iterator[ComfyServer]:
    """The real ComfyUI HTTP server on a free loopback port, stopped at the end of the run whatever happens."""
    server = ComfyServer(comfy_dir, comfy_base_dir, comfy_base_dir / "server.log")
    try:
        yield server.start()
    finally:
        server.stop()
