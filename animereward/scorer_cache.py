"""The scorers of one AnimeReward: built on first use (weights read then), kept, released on request.

Building is lazy so a loader node costs nothing until it runs, and `release()` (or the facade's
`keep_loaded=False`) keeps one model resident at a time on a small GPU. Which module builds a dimension, and
which quantisations it takes, is the registry's (dimensions.py); `builders` replaces it per dimension (tests,
benchmarks).
"""

from __future__ import annotations

import importlib
import logging
import threading
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .dimensions import DIMENSIONS
from .weights_layout import DimensionNotAvailableError, not_available_message

log = logging.getLogger(__name__)

Builder = Callable[..., nn.Module]


def builder_of(name: str) -> Builder:
    """The registry's scorer builder of a dimension (its module is imported now, on first use)."""
    scorer = DIMENSIONS[name].scorer
    if scorer is None:
        raise DimensionNotAvailableError(not_available_message(name))
    if callable(scorer):
        return scorer
    module = importlib.import_module(scorer, __package__ if scorer.startswith(".") else None)
    return module.build_scorer


class ScorerCache:
    """One scorer per dimension of `dimensions`, built by `get` on first use; thread-safe."""

    def __init__(
        self,
        dimensions: Sequence[str],
        *,
        paths: Mapping[str, Path],
        builders: Mapping[str, Builder],
        dtype: torch.dtype,
        device: torch.device,
        quantization: str | None,
    ) -> None:
        self.dimensions = tuple(dimensions)
        self.paths = dict(paths)
        self.builders = dict(builders)
        self.dtype, self.device, self.quantization = dtype, device, quantization
        self._loaded: dict[str, nn.Module] = {}
        self._lock = threading.RLock()

    def get(self, name: str) -> nn.Module:
        with self._lock:
            module = self._loaded.get(name)
            if module is None:
                module = self._build(name)
                self._loaded[name] = module
            return module

    def _build(self, name: str) -> nn.Module:
        builder = self.builders.get(name) or builder_of(name)
        kwargs: dict[str, Any] = {"dtype": self.dtype, "device": self.device}
        if self.quantization is not None and self.quantization in DIMENSIONS[name].quantizations:
            kwargs["quantization"] = self.quantization
        log.info("loading %s from %s", name, self.paths.get(name, "(no weights)"))
        module = builder(name, self.paths.get(name), **kwargs)
        if getattr(module, "name", name) != name:
            raise RuntimeError(f"the builder for {name} returned a scorer named {module.name!r}")
        return module

    def loaded(self) -> dict[str, nn.Module]:
        """The scorers currently built (a copy: changing it changes nothing)."""
        with self._lock:
            return dict(self._loaded)

    def release(self, name: str | None = None) -> None:
        """Drop a scorer's weights (all when name is None); the next `get` builds it again."""
        with self._lock:
            names = list(self._loaded) if name is None else [name]
            for n in names:
                self._loaded.pop(n, None)
        if names and torch.cuda.is_available():
            torch.cuda.empty_cache()
