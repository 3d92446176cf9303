"""The inert training-metadata globals a weights_only load may additionally accept (see checkpoints.py).

Official checkpoints are training checkpoints: beside the weights they pickle run metadata (mmengine's
`meta`/`message_hub`/`optimizer`/`param_schedulers`, BLIP's `config`/`optimizer`/`epoch`). A few of those
objects are instances of classes outside torch's weights_only allowlist, and torch then refuses the whole
file although we only keep the tensors of one entry. This module names exactly those globals and what to
build in their place. Nothing here imports mmengine, numpy or any training library, and nothing from the
file is executed: torch's weights_only unpickler stays in charge and still refuses every global not listed.

How torch uses an entry (torch/_weights_only_unpickler.py, torch 2.14): an entry `(obj, "module.name")` makes
the pickle's `GLOBAL module.name` push `obj` (the named module is never imported); `obj` may then be called
(REDUCE: `obj(*args)`), instantiated (NEWOBJ: `obj.__new__(obj, *args)`) and given state (BUILD:
`obj.__setstate__(state)`). Every entry here is OUR stand-in (`InertRecord` subclass) or a function returning
a plain dict: they keep the arguments and state as plain attributes and define nothing else (no `__getattr__`,
`__eq__`, `__del__`, ...). The stand-ins keep our module name; the `(obj, name)` form binds them to the
original name without touching any other module.

numpy values become stand-ins too, on purpose. torch documents allowlisting the real numpy rebuilders
(`numpy.core.multiarray._reconstruct`, `numpy.ndarray`, `numpy.dtype`, `.scalar`), but with `numpy.ndarray`
allowlisted a pickle may also CALL it, e.g. `numpy.ndarray((1,), numpy.dtype("O"), b"AAAAAAAA")`: an object
array whose element pointers are bytes from the file, which crashes (or worse) the moment it is read. We never
need the metadata's numbers, so its arrays, scalars and dtypes are kept as the raw pickled pieces, unparsed.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

# One allowlisted entry as torch.serialization.safe_globals takes it: (object pushed, dotted name in pickles).
SafeGlobal = tuple[Callable[..., Any], str]


class InertRecord:
    """Stand-in for a metadata object: stores what the pickle gives it and has no behaviour at all.

    `args` holds the constructor/call arguments (NEWOBJ/REDUCE), `state` the pickled state (BUILD). Being
    ours, the class runs nothing the original would (its methods, `__setstate__`, imports, C parsing).
    """

    original: str = ""  # what it stands in for (shown by repr)

    def __new__(cls, *args: Any, **kwargs: Any) -> InertRecord:
        self = super().__new__(cls)
        self.args = args
        self.state = None
        return self

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        """Everything was stored by __new__ (REDUCE calls the class, NEWOBJ only __new__)."""

    def __setstate__(self, state: Any) -> None:
        self.state = state

    def __repr__(self) -> str:
        return f"<inert stand-in for {self.original}>"


class HistoryBufferStandIn(InertRecord):
    """mmengine HistoryBuffer: MessageHub's log of one scalar (message_hub['log_scalars'])."""

    original = "mmengine.logging.history_buffer.HistoryBuffer"


class NamespaceStandIn(InertRecord):
    """argparse.Namespace: training-script arguments some BLIP-style scripts save as the config."""

    original = "argparse.Namespace"


class BuiltinTypeStandIn(InertRecord):
    """A builtin type named in a pickle; in practice only a defaultdict's `default_factory` (e.g. list)."""

    original = "a builtin type (defaultdict factory)"


class NumpyTypeStandIn(InertRecord):
    """numpy.ndarray, the class: in practice only the first argument of `_reconstruct`."""

    original = "numpy.ndarray"


class NumpyArrayStandIn(InertRecord):
    """A numpy array (`_reconstruct(ndarray, shape, dtype)`, then its state: shape, dtype, raw bytes)."""

    original = "a numpy array"


class NumpyScalarStandIn(InertRecord):
    """A numpy scalar (`multiarray.scalar(dtype, raw bytes)`), e.g. an np.float64 loss or seed."""

    original = "a numpy scalar"


class NumpyDtypeStandIn(InertRecord):
    """A numpy dtype (`numpy.dtype("f8", False, True)`, then its state: byte order, sizes)."""

    original = "numpy.dtype"


def _defaultdict_as_dict(*args: Any) -> dict[Any, Any]:
    """collections.defaultdict(factory) → a plain dict; its items follow as dict SETITEMS.

    weights_only fills only exact dict/OrderedDict/Counter; the factory is dropped, never called.
    """
    return {}


# name in the pickle -> (what is built instead, why that is inert)
_TABLE: dict[str, tuple[Callable[..., Any], str]] = {
    "mmengine.logging.history_buffer.HistoryBuffer": (
        HistoryBufferStandIn, "mmengine MessageHub log buffer; stand-in keeps its pickled state only"),
    "argparse.Namespace": (
        NamespaceStandIn, "training-script arguments saved as config; stand-in keeps its attributes only"),
    "collections.defaultdict": (
        _defaultdict_as_dict, "rebuilt as a plain dict; the default factory is never called"),
    **{
        f"builtins.{name}": (
            BuiltinTypeStandIn, "builtin type as a defaultdict factory; name-only stand-in, never called")
        for name in ("list", "dict", "int", "float", "str", "tuple", "bool")
    },
    "numpy.ndarray": (NumpyTypeStandIn, "array class; stand-in, numpy is never called"),
    "numpy.dtype": (NumpyDtypeStandIn, "dtype; stand-in keeps the dtype string and state, unparsed"),
    **{
        f"{core}._reconstruct": (NumpyArrayStandIn, "array; stand-in keeps shape/dtype/raw bytes, unparsed")
        for core in ("numpy.core.multiarray", "numpy._core.multiarray")  # numpy < 2 and >= 2 pickles
    },
    **{
        f"{core}.scalar": (NumpyScalarStandIn, "scalar; stand-in keeps dtype and raw bytes, unparsed")
        for core in ("numpy.core.multiarray", "numpy._core.multiarray")
    },
}


def allowlist() -> dict[str, str]:
    """Every global that may be allowed, with why it is inert (for docs, logs and tests)."""
    return {name: why for name, (_, why) in _TABLE.items()}


def resolve(names: Iterable[str]) -> tuple[list[SafeGlobal], list[str]]:
    """Entries to register for the globals a checkpoint needs, and the needed globals that are NOT allowed.

    The caller loads only when the second list is empty; the entries are then exactly the names the file
    uses, nothing more.
    """
    entries: list[SafeGlobal] = []
    refused: list[str] = []
    for name in sorted(set(names)):
        if name in _TABLE:
            entries.append((_TABLE[name][0], name))
        else:
            refused.append(name)
    return entries, refused
