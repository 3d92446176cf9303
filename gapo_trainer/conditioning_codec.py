"""ComfyUI CONDITIONING to (JSON structure, flat tensor dict) and back, exactly.

A CONDITIONING is a list of `[tensor, dict]` pairs. The dicts hold tensors (`pooled_output`,
`concat_latent_image`, `concat_mask`, ...), scalars, strings, None, nested lists/tuples/dicts, and, for Wan
image-to-video, a clip-vision output object that `nodes/` turns into an `ObjectRecord` (a type name and its
fields) because this library never imports ComfyUI. Anything else (a ControlNet, hooks, a numpy scalar) is
refused with the key path that holds it, before the store writes a byte.

Structure encoding (JSON): None/bool/int/float/str as themselves; every container is a one-key tagged object,
so a raw JSON object is always a tag and user keys can never collide with one:
`{"$list": [...]}`, `{"$tuple": [...]}`, `{"$dict": {key: ...}}`, `{"$tensor": "<name in the tensor file>"}`,
`{"$object": "<type name>", "fields": {key: ...}}`. The same tensor object met twice (Wan puts one
`concat_latent_image` into both positive and negative) is stored once and comes back as one object.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import torch

from .safetensors_io import dtype_code
from .store_errors import StoreError

Conditioning = list  # list of [tensor, dict] pairs, exactly ComfyUI's CONDITIONING


@dataclass
class ObjectRecord:
    """A non-tensor object inside conditioning, kept as its type name and its (storable) fields."""

    type_name: str
    fields: dict[str, Any] = field(default_factory=dict)


class TensorTable:
    """Collects the tensors met while encoding, one entry per distinct tensor object."""

    def __init__(self, prefix: str = "cond/") -> None:
        self.prefix = prefix
        self.tensors: dict[str, torch.Tensor] = {}
        self._by_id: dict[int, str] = {}

    def add(self, t: torch.Tensor) -> str:
        key = self._by_id.get(id(t))
        if key is not None:
            return key
        key = f"{self.prefix}{len(self.tensors)}"
        self._by_id[id(t)] = key
        self.tensors[key] = t
        return key


def _describe(v: Any) -> str:
    return f"{type(v).__module__}.{type(v).__qualname__}"


def _check_tensor(t: torch.Tensor, path: str) -> None:
    if t.layout != torch.strided:
        raise StoreError(f"{path}: a {t.layout} tensor cannot be stored (dense tensors only)")
    if t.device.type == "meta":
        raise StoreError(f"{path}: a tensor on the meta device holds no data to store")
    if dtype_code(t.dtype) is None:
        raise StoreError(f"{path}: tensor dtype {t.dtype} cannot be stored")


def _encode(v: Any, path: str, table: TensorTable | None) -> Any:
    # exact types: a numpy scalar or an IntEnum would not come back as itself
    if v is None or type(v) in (bool, int, str):
        return v
    if type(v) is float:
        return v if math.isfinite(v) else {"$float": repr(v)}
    if isinstance(v, torch.Tensor):
        _check_tensor(v, path)
        return {"$tensor": table.add(v) if table is not None else ""}
    if type(v) is list:
        return {"$list": [_encode(x, f"{path}[{i}]", table) for i, x in enumerate(v)]}
    if type(v) is tuple:
        return {"$tuple": [_encode(x, f"{path}[{i}]", table) for i, x in enumerate(v)]}
    if type(v) is dict:
        return {"$dict": _encode_items(v, path, table)}
    if isinstance(v, ObjectRecord):
        if type(v.type_name) is not str or type(v.fields) is not dict:
            raise StoreError(f"{path}: ObjectRecord needs a str type_name and a dict of fields")
        return {"$object": v.type_name, "fields": _encode_items(v.fields, path, table, attr=True)}
    raise StoreError(f"{path}: type {_describe(v)} cannot be stored (tensors, numbers, str, None, "
                     "lists, tuples, dicts and ObjectRecord only)")


def _encode_items(d: dict, path: str, table: TensorTable | None, attr: bool = False) -> dict[str, Any]:
    out = {}
    for k, x in d.items():
        if type(k) is not str:
            raise StoreError(f"{path}: key {k!r} of type {_describe(k)} cannot be stored (str keys only)")
        out[k] = _encode(x, f"{path}.{k}" if attr else f"{path}[{k!r}]", table)
    return out


def encode_conditioning(cond: Any, name: str, table: TensorTable | None) -> list[Any]:
    """The JSON structure of `cond`, adding its tensors to `table` (None: validate only)."""
    if type(cond) is not list:
        raise StoreError(f"{name}: CONDITIONING must be a list of [tensor, dict] pairs, got {_describe(cond)}")
    out = []
    for i, item in enumerate(cond):
        path = f"{name}[{i}]"
        if type(item) not in (list, tuple) or len(item) != 2:
            raise StoreError(f"{path}: each CONDITIONING entry must be a [tensor, dict] pair")
        t, d = item
        if not isinstance(t, torch.Tensor):
            raise StoreError(f"{path}: the first element must be a tensor, got {_describe(t)}")
        if type(d) is not dict:
            raise StoreError(f"{path}: the second element must be a dict, got {_describe(d)}")
        _check_tensor(t, f"{path} tensor")
        out.append({"pair": "list" if type(item) is list else "tuple",
                    "tensor": table.add(t) if table is not None else "",
                    "dict": _encode_items(d, path, table)})
    return out


def check_conditioning(cond: Any, name: str) -> None:
    """Raise StoreError naming the key path of the first value the store cannot hold; writes nothing."""
    encode_conditioning(cond, name, None)


def _decode(v: Any, tensors: dict[str, torch.Tensor], path: str) -> Any:
    if v is None or type(v) in (bool, int, float, str):
        return v
    if type(v) is dict and len(v) in (1, 2):
        if "$tensor" in v:
            try:
                return tensors[v["$tensor"]]
            except KeyError:
                raise StoreError(f"{path}: tensor '{v['$tensor']}' is missing from the tensor file") from None
        if "$float" in v:
            return float(v["$float"])
        if "$list" in v:
            return [_decode(x, tensors, f"{path}[{i}]") for i, x in enumerate(v["$list"])]
        if "$tuple" in v:
            return tuple(_decode(x, tensors, f"{path}[{i}]") for i, x in enumerate(v["$tuple"]))
        if "$dict" in v:
            return {k: _decode(x, tensors, f"{path}[{k!r}]") for k, x in v["$dict"].items()}
        if "$object" in v:
            fields = {k: _decode(x, tensors, f"{path}.{k}") for k, x in v["fields"].items()}
            return ObjectRecord(v["$object"], fields)
    raise StoreError(f"{path}: unreadable conditioning entry {str(v)[:80]}")


def decode_conditioning(structure: Any, tensors: dict[str, torch.Tensor], name: str) -> list:
    """Rebuild the CONDITIONING that `encode_conditioning` described."""
    if type(structure) is not list:
        raise StoreError(f"{name}: unreadable conditioning structure")
    out: list = []
    for i, entry in enumerate(structure):
        path = f"{name}[{i}]"
        try:
            t = tensors[entry["tensor"]]
            d = {k: _decode(x, tensors, f"{path}[{k!r}]") for k, x in entry["dict"].items()}
            pair_kind = entry["pair"]
        except (KeyError, TypeError, AttributeError):
            raise StoreError(f"{path}: unreadable conditioning entry") from None
        out.append([t, d] if pair_kind == "list" else (t, d))
    return out
