"""Safe checkpoint I/O and strict key mapping (animereward.checkpoints), on small state dicts."""

from __future__ import annotations

import argparse
import builtins
import contextlib
import logging
import os
import pickle
import subprocess
import sys
import types
from collections import OrderedDict, defaultdict
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from animereward import checkpoint_allowlist, checkpoints
from animereward.checkpoints import CheckpointError, load_checkpoint_dict, load_state_dict_strict

_UNPICKLED: list[str] = []


def _mark_unpickled() -> None:
    """What a malicious pickle would run; weights_only must refuse before calling it."""
    _UNPICKLED.append("ran")


class _Evil:
    def __reduce__(self):
        return (_mark_unpickled, ())


def _state() -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return {"a.weight": torch.randn(4, 3, generator=g), "a.bias": torch.randn(4, generator=g)}


def _fail_torch_load(*args, **kwargs):
    raise AssertionError("torch.load must not be called once the .safetensors exists")


def test_pth_sub_dict_converted_once_then_safetensors_used(tmp_path: Path, monkeypatch) -> None:
    sd = _state()
    pth = tmp_path / "checkpoint_05.pth"
    torch.save({"model": sd, "epoch": 5, "config": {"vit": "base", "lr": [1e-6]}}, pth)
    got = load_checkpoint_dict(pth, "model")
    assert got.keys() == sd.keys() and all(torch.equal(got[k], sd[k]) for k in sd)
    st = tmp_path / "checkpoint_05.safetensors"
    assert st.is_file()
    mtime = st.stat().st_mtime_ns
    monkeypatch.setattr(checkpoints.torch, "load", _fail_torch_load)
    again = load_checkpoint_dict(pth, "model")
    assert all(torch.equal(again[k], sd[k]) for k in sd)
    assert st.stat().st_mtime_ns == mtime  # not rewritten
    # Naming the .safetensors directly works too.
    assert load_checkpoint_dict(st, "model").keys() == sd.keys()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temp file left


def test_safetensors_name_given_but_only_pth_present(tmp_path: Path) -> None:
    torch.save({"state_dict": _state(), "meta": {"epoch": 1}}, tmp_path / "m.pth")
    got = load_checkpoint_dict(tmp_path / "m.safetensors", "state_dict")
    assert set(got) == {"a.weight", "a.bias"}
    assert (tmp_path / "m.safetensors").is_file()


def test_flat_dict_and_non_tensor_entries(tmp_path: Path, caplog) -> None:
    flat = {**_state(), "note": "hello", "step": 3}
    torch.save(flat, tmp_path / "flat.pth")
    with caplog.at_level(logging.INFO, logger="animereward.checkpoints"):
        got = load_checkpoint_dict(tmp_path / "flat.pth", None)
    assert set(got) == {"a.weight", "a.bias"}
    assert "non-tensor" in caplog.text and "note" in caplog.text


def test_missing_sub_dict_key_names_file_and_key(tmp_path: Path) -> None:
    torch.save({"model": _state()}, tmp_path / "x.pth")
    with pytest.raises(CheckpointError, match=r"x\.pth.*'state_dict'"):
        load_checkpoint_dict(tmp_path / "x.pth", "state_dict")


def test_shared_and_non_contiguous_tensors_convert(tmp_path: Path) -> None:
    base = torch.arange(24, dtype=torch.float32).reshape(4, 6)
    sd = {"tied_a": base, "tied_b": base, "transposed": base.t(), "slice": base[1:3], "col": base[:, 2]}
    torch.save({"model": sd}, tmp_path / "shared.pth")
    load_checkpoint_dict(tmp_path / "shared.pth", "model")
    from safetensors.torch import load_file

    got = load_file(str(tmp_path / "shared.safetensors"))
    assert set(got) == set(sd)
    assert all(torch.equal(got[k], sd[k]) for k in sd)


def test_weights_only_refusal_names_file_and_runs_nothing(tmp_path: Path) -> None:
    bad = tmp_path / "evil.pth"
    torch.save({"model": {"w": torch.zeros(2), "x": _Evil()}}, bad)
    with pytest.raises(CheckpointError) as err:
        load_checkpoint_dict(bad, "model")
    msg = str(err.value)
    assert str(bad) in msg and "weights_only=True" in msg and "safetensors" in msg
    assert "weights_only` set to `False" not in msg  # torch's advice to retry unsafely is not passed on
    assert _UNPICKLED == []
    assert not (tmp_path / "evil.safetensors").exists()


def test_truncated_pth_and_corrupt_safetensors(tmp_path: Path) -> None:
    torch.save({"model": _state()}, tmp_path / "t.pth")
    data = (tmp_path / "t.pth").read_bytes()
    (tmp_path / "t.pth").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match=r"t\.pth"):
        load_checkpoint_dict(tmp_path / "t.pth", "model")
    (tmp_path / "c.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(CheckpointError, match=r"c\.safetensors"):
        load_checkpoint_dict(tmp_path / "c.safetensors", None)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"nope\.pth"):
        load_checkpoint_dict(tmp_path / "nope.pth", "model")


def test_read_only_folder_falls_back_to_pth_each_time(tmp_path: Path, monkeypatch, caplog) -> None:
    """Root ignores chmod, so the read-only folder is simulated where the temp file is created."""
    torch.save({"model": _state()}, tmp_path / "ro.pth")

    def read_only(*args, **kwargs):
        raise PermissionError(30, "Read-only file system")

    monkeypatch.setattr(checkpoints.tempfile, "mkstemp", read_only)
    for _ in range(2):
        with caplog.at_level(logging.WARNING, logger="animereward.checkpoints"):
            got = load_checkpoint_dict(tmp_path / "ro.pth", "model")
        assert set(got) == {"a.weight", "a.bias"}
        assert "weights_only" in caplog.text and "every load" in caplog.text
        caplog.clear()
    assert not (tmp_path / "ro.safetensors").exists()


# --- training checkpoints: inert metadata allowed, anything else refused -----------------------------------

_MMENGINE_MODULES = ("mmengine", "mmengine.logging", "mmengine.logging.history_buffer")


@contextlib.contextmanager
def _fake_mmengine() -> Iterator[type]:
    """mmengine's HistoryBuffer importable under its real name only while a checkpoint is written.

    Same layout as mmengine's (max_length and two numpy arrays, pickled through its __dict__), so the file
    holds exactly the pickle opcodes a real mmengine checkpoint has; mmengine itself is not needed.
    """
    if any(name in sys.modules for name in _MMENGINE_MODULES):
        pytest.skip("a real mmengine is imported in this process")

    class HistoryBuffer:
        def __init__(self, log_history: list[float], count_history: list[int], max_length: int = 1000000):
            self.max_length = max_length
            self._log_history = np.array(log_history)
            self._count_history = np.array(count_history)

    HistoryBuffer.__module__ = "mmengine.logging.history_buffer"
    HistoryBuffer.__qualname__ = "HistoryBuffer"
    modules = {name: types.ModuleType(name) for name in _MMENGINE_MODULES}
    modules["mmengine.logging.history_buffer"].HistoryBuffer = HistoryBuffer  # type: ignore[attr-defined]
    sys.modules.update(modules)
    try:
        yield HistoryBuffer
    finally:
        for name in _MMENGINE_MODULES:
            sys.modules.pop(name, None)


def _tiny_training_state() -> tuple[nn.Module, dict[str, object], dict[str, object]]:
    """A tiny model, and AdamW / CosineAnnealingLR state dicts as torch writes them after one step.

    Written out by hand (same containers and tensors as `opt.state_dict()`): constructing a torch optimizer
    imports torch._dynamo, seconds for nothing here.
    """
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.LayerNorm(4))
    params = list(model.parameters())
    opt_state: dict[str, object] = {
        "state": {
            i: {"step": torch.tensor(1.0), "exp_avg": torch.randn_like(p), "exp_avg_sq": torch.rand_like(p)}
            for i, p in enumerate(params)
        },
        "param_groups": [
            {"lr": 9.755e-4, "betas": (0.9, 0.999), "eps": 1e-8, "weight_decay": 0.01, "amsgrad": False,
             "maximize": False, "foreach": None, "capturable": False, "differentiable": False, "fused": None,
             "initial_lr": 1e-3, "params": list(range(len(params)))}
        ],
    }
    sched_state: dict[str, object] = {
        "T_max": 10, "eta_min": 0.0, "base_lrs": [1e-3], "last_epoch": 1, "_step_count": 2,
        "_get_lr_called_within_step": False, "_last_lr": [9.755e-4],
    }
    return model, opt_state, sched_state


_MMENGINE_CFG = "model = dict(type='ActionClip', clip_arch='ViT-B/16', num_adapter_layers=6)\nseed = 1234\n"


def _save_mmengine_checkpoint(path: Path) -> dict[str, torch.Tensor]:
    """What mmengine's Runner.save_checkpoint writes (meta, state_dict, message_hub, optimizer,
    param_schedulers) with numpy scalars/dtypes/arrays and HistoryBuffers; returns the expected tensors."""
    model, opt, sched = _tiny_training_state()
    state_dict = model.state_dict()  # OrderedDict with `_metadata`, as weights_to_cpu keeps it
    expected = {k: v.clone() for k, v in state_dict.items()}
    with _fake_mmengine() as history_buffer:
        checkpoint = {
            "meta": {
                "epoch": 12,
                "iter": 3400,
                "cfg": _MMENGINE_CFG,
                "seed": np.int64(1234),
                "experiment_name": "actionclip_vit-b16_anime",
                "time": "20240301_101500",
                "mmengine_version": "0.10.3",
                "dataset_meta": {"classes": ("move", "still")},
                "best_score": np.float64(0.69),
                "feature_dtype": np.dtype("float16"),
            },
            "state_dict": state_dict,
            "message_hub": {
                "log_scalars": OrderedDict(
                    [
                        ("train/loss", history_buffer([0.71, 0.52, 0.44], [1, 1, 1])),
                        ("train/lr", history_buffer([1e-5, 2e-5], [1, 1])),
                    ]
                ),
                "runtime_info": OrderedDict(
                    [("epoch", 12), ("max_epochs", 50), ("best_score", np.float32(0.69)),
                     ("val_acc", np.array([0.5, 0.69], dtype=np.float32))]
                ),
                "resumed_keys": OrderedDict([("train/loss", True), ("epoch", True)]),
            },
            "optimizer": opt,
            "param_schedulers": [{**sched, "eta_min": np.float64(0.0)}],
        }
        torch.save(checkpoint, path)
    assert not any(name in sys.modules for name in _MMENGINE_MODULES)
    return expected


@contextlib.contextmanager
def _safe_globals_unchanged() -> Iterator[None]:
    """torch's safe-globals registry is process-wide: the loader must leave it as it found it."""
    before = torch.serialization.get_safe_globals()
    try:
        yield
        assert sorted(map(repr, torch.serialization.get_safe_globals())) == sorted(map(repr, before))
    finally:
        torch.serialization.clear_safe_globals()
        torch.serialization.add_safe_globals(before)


def test_mmengine_training_checkpoint_loads_only_state_dict(tmp_path: Path, monkeypatch, caplog) -> None:
    pth = tmp_path / "testvl-pre76-top187-rec69.pth"
    expected = _save_mmengine_checkpoint(pth)
    # The file really is one weights_only refuses by default, for the metadata's globals.
    with pytest.raises(pickle.UnpicklingError):
        torch.load(pth, weights_only=True)
    needed = set(torch.serialization.get_unsafe_globals_in_checkpoint(str(pth)))
    assert "mmengine.logging.history_buffer.HistoryBuffer" in needed
    assert {"numpy.dtype", "numpy.ndarray"} <= needed and any(n.endswith("multiarray.scalar") for n in needed)
    assert needed <= set(checkpoint_allowlist.allowlist())

    with _safe_globals_unchanged(), caplog.at_level(logging.WARNING, logger="animereward.checkpoints"):
        got = load_checkpoint_dict(pth, "state_dict")
    assert got.keys() == expected.keys()
    assert all(torch.equal(got[k], expected[k]) and got[k].dtype == expected[k].dtype for k in expected)
    assert "HistoryBuffer" in caplog.text and "numpy.dtype" in caplog.text
    assert "only the tensors of 'state_dict'" in caplog.text
    assert not any(name in sys.modules for name in _MMENGINE_MODULES)  # nothing imported mmengine

    from safetensors.torch import load_file

    st = tmp_path / "testvl-pre76-top187-rec69.safetensors"
    assert set(load_file(str(st))) == set(expected)  # weights only: no meta, optimizer or message hub
    monkeypatch.setattr(checkpoints.torch, "load", _fail_torch_load)
    again = load_checkpoint_dict(pth, "state_dict")
    assert all(torch.equal(again[k], expected[k]) for k in expected)


def test_mmengine_metadata_becomes_inert_stand_ins(tmp_path: Path) -> None:
    """What the allowlisted load builds: our stand-ins holding the pickled pieces; numpy is never called."""
    pth = tmp_path / "mm.pth"
    _save_mmengine_checkpoint(pth)
    with _safe_globals_unchanged():
        obj = checkpoints._load_weights_only(pth, "state_dict")
    assert isinstance(obj, dict)
    assert isinstance(obj["meta"]["seed"], checkpoint_allowlist.NumpyScalarStandIn)
    assert isinstance(obj["meta"]["feature_dtype"], checkpoint_allowlist.NumpyDtypeStandIn)
    buffer = obj["message_hub"]["log_scalars"]["train/loss"]
    assert isinstance(buffer, checkpoint_allowlist.HistoryBufferStandIn)
    assert set(buffer.state) == {"max_length", "_log_history", "_count_history"}
    assert isinstance(buffer.state["_log_history"], checkpoint_allowlist.NumpyArrayStandIn)
    assert obj["meta"]["cfg"] == _MMENGINE_CFG and obj["meta"]["epoch"] == 12
    assert isinstance(obj["optimizer"]["state"][0]["exp_avg"], torch.Tensor)
    repr(obj)  # plain data all the way down


def _as_numpy1_file(src: Path, dst: Path) -> Path:
    """`src` as numpy < 2 would have written it: its pickle names `numpy.core.multiarray.*`."""
    import zipfile

    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w", zipfile.ZIP_STORED) as zout:
        for info in zin.infolist():
            data = zin.read(info.filename)
            if info.filename.endswith("/data.pkl"):
                data = data.replace(b"numpy._core.multiarray", b"numpy.core.multiarray")
            zout.writestr(info.filename, data)
    return dst


def test_numpy1_names_load(tmp_path: Path) -> None:
    """Files written under numpy < 2 name `numpy.core.multiarray.*` (numpy 2 writes `numpy._core`)."""
    new = tmp_path / "np2.pth"
    torch.save({"state_dict": _state(), "meta": {"seed": np.int64(7), "hist": np.array([0.5, 0.25])}}, new)
    old = _as_numpy1_file(new, tmp_path / "np1.pth")
    needed = torch.serialization.get_unsafe_globals_in_checkpoint(str(old))
    assert "numpy.core.multiarray._reconstruct" in needed and "numpy.core.multiarray.scalar" in needed
    with _safe_globals_unchanged():
        got = load_checkpoint_dict(old, "state_dict")
    assert all(torch.equal(got[k], v) for k, v in _state().items())


def test_existing_safe_globals_entries_survive(tmp_path: Path) -> None:
    """An entry registered by someone else (e.g. ComfyUI's own allowlist) is not removed by our load."""
    pth = tmp_path / "mm.pth"
    _save_mmengine_checkpoint(pth)
    theirs = (checkpoint_allowlist.HistoryBufferStandIn, "mmengine.logging.history_buffer.HistoryBuffer")
    before = torch.serialization.get_safe_globals()
    torch.serialization.add_safe_globals([theirs])
    try:
        assert set(load_checkpoint_dict(pth, "state_dict")) == {"0.weight", "0.bias", "1.weight", "1.bias"}
        assert theirs in torch.serialization.get_safe_globals()
    finally:
        torch.serialization.clear_safe_globals()
        torch.serialization.add_safe_globals(before)


def _comfyui_safe_globals() -> list[object]:
    """What ComfyUI's comfy/utils.py registers process-wide at import (for Lightning .ckpt files)."""
    import _codecs

    class ModelCheckpoint:
        pass

    ModelCheckpoint.__module__ = "pytorch_lightning.callbacks.model_checkpoint"
    ModelCheckpoint.__qualname__ = "ModelCheckpoint"  # module-level there

    def scalar(*args, **kwargs):
        return np._core.multiarray.scalar(*args, **kwargs)

    scalar.__module__, scalar.__qualname__ = "numpy.core.multiarray", "scalar"
    return [ModelCheckpoint, scalar, np.dtype, np.dtypes.Float64DType, _codecs.encode]


@pytest.mark.parametrize("numpy1_names", [False, True], ids=["numpy2-file", "numpy1-file"])
def test_loads_under_comfyui_registrations(tmp_path: Path, numpy1_names: bool) -> None:
    """ComfyUI has the real numpy.dtype (and a scalar wrapper) registered; those cannot rebuild the int64
    arrays/scalars of the metadata, so our stand-ins take those names for our load, and theirs come back."""
    pth = tmp_path / "mm.pth"
    expected = _save_mmengine_checkpoint(pth)
    if numpy1_names:
        pth = _as_numpy1_file(pth, tmp_path / "mm_np1.pth")
    before = torch.serialization.get_safe_globals()
    comfy = _comfyui_safe_globals()
    torch.serialization.add_safe_globals(comfy)
    try:
        got = load_checkpoint_dict(pth, "state_dict")
        assert all(torch.equal(got[k], expected[k]) for k in expected) and got.keys() == expected.keys()
        registered = torch.serialization.get_safe_globals()
        assert all(entry in registered for entry in comfy) and len(registered) == len(before) + len(comfy)
    finally:
        torch.serialization.clear_safe_globals()
        torch.serialization.add_safe_globals(before)


@pytest.mark.parametrize(
    "config",
    [
        argparse.Namespace(config="configs/pretrain.yaml", output_dir="output/Pretrain", lr=1e-5, gpu=0),
        {"image_size": 224, "init_lr": np.float64(1e-5), "layers": defaultdict(list, {"vit": [12]})},
    ],
    ids=["namespace", "dict-numpy-defaultdict"],
)
def test_blip_training_checkpoint_loads_model(tmp_path: Path, config: object) -> None:
    model, opt, _ = _tiny_training_state()
    expected = {k: v.clone() for k, v in model.state_dict().items()}
    pth = tmp_path / "blip.pth"
    torch.save({"model": model.state_dict(), "optimizer": opt, "config": config, "epoch": 4}, pth)
    with pytest.raises(pickle.UnpicklingError):
        torch.load(pth, weights_only=True)
    with _safe_globals_unchanged():
        got = load_checkpoint_dict(pth, "model")
    assert got.keys() == expected.keys() and all(torch.equal(got[k], expected[k]) for k in expected)
    assert (tmp_path / "blip.safetensors").is_file()


class _Payload:
    """Pickles as a call of `func(*args)`: what a malicious checkpoint does."""

    def __init__(self, func: Callable[..., object], *args: object) -> None:
        self.func, self.args = func, args

    def __reduce__(self):
        return (self.func, self.args)


def _payloads(marker: Path) -> dict[str, tuple[_Payload, str]]:
    """Side-effecting calls (each would create `marker`, or print it) and the global each is named by."""
    touch = f"open({str(marker)!r}, 'w').close()"
    return {
        "os.system": (_Payload(os.system, f"touch {marker}"), f"{os.system.__module__}.system"),
        "builtins.exec": (_Payload(builtins.exec, touch), "builtins.exec"),
        "builtins.eval": (_Payload(builtins.eval, touch.replace("open", "__import__('builtins').open")),
                          "builtins.eval"),
        "builtins.print": (_Payload(builtins.print, f"UNPICKLED {marker}"), "builtins.print"),
        "subprocess.Popen": (_Payload(subprocess.Popen, ["touch", str(marker)]), "Popen"),
        "defaultdict(eval)": (defaultdict(builtins.eval, {"x": 1}), "builtins.eval"),
    }


@pytest.mark.parametrize(
    "case", ["os.system", "builtins.exec", "builtins.eval", "builtins.print", "subprocess.Popen",
             "defaultdict(eval)"]
)
def test_malicious_globals_refused_beside_allowed_metadata(tmp_path: Path, capfd, case: str) -> None:
    """Allowed metadata (numpy, Namespace) in the same file does not let a code-running global through."""
    marker = tmp_path / "PWNED"
    payload, named = _payloads(marker)[case]
    bad = tmp_path / "evil.pth"
    torch.save(
        {"model": _state(), "config": argparse.Namespace(lr=1e-5), "epoch": np.int64(3), "x": payload}, bad
    )
    with _safe_globals_unchanged(), pytest.raises(CheckpointError) as err:
        load_checkpoint_dict(bad, "model")
    msg = str(err.value)
    assert str(bad) in msg and named in msg and "not on the allowlist" in msg
    assert "argparse.Namespace" not in msg and "numpy" not in msg  # only the offending globals are named
    assert "weights_only` set to `False" not in msg
    assert not marker.exists()
    assert "UNPICKLED" not in capfd.readouterr().out
    assert not (tmp_path / "evil.safetensors").exists()


def test_forged_numpy_object_array_stays_raw_bytes(tmp_path: Path) -> None:
    """With the real numpy.ndarray allowlisted (torch's documented numpy recipe) a pickle could build an
    object array over file bytes (forged object pointers; reading it crashes). Here it is a stand-in."""
    forged = _Payload(np.ndarray, (1,), np.dtype("O"), b"A" * 8)
    pth = tmp_path / "forged.pth"
    torch.save({"state_dict": _state(), "meta": {"forged": forged}}, pth)
    with _safe_globals_unchanged():
        obj = checkpoints._load_weights_only(pth, "state_dict")
        assert set(load_checkpoint_dict(pth, "state_dict")) == {"a.weight", "a.bias"}
    assert isinstance(obj, dict)
    stand_in = obj["meta"]["forged"]
    assert isinstance(stand_in, checkpoint_allowlist.NumpyTypeStandIn)
    assert stand_in.args[2] == b"A" * 8 and isinstance(stand_in.args[1], checkpoint_allowlist.NumpyDtypeStandIn)
    repr(obj)


def test_allowed_name_used_otherwise_is_still_refused(tmp_path: Path, monkeypatch) -> None:
    """An allowed name does not widen what weights_only builds: a dict subclass posing as argparse.Namespace
    becomes our stand-in, which weights_only will not fill with dict items, so the file is refused."""

    class Namespace(dict):
        pass

    Namespace.__module__, Namespace.__qualname__ = "argparse", "Namespace"
    bad = tmp_path / "posing.pth"
    with monkeypatch.context() as m:
        m.setattr(argparse, "Namespace", Namespace)
        torch.save({"model": _state(), "config": Namespace(lr=1.0)}, bad)
    refused = r"(?s)posing\.pth.*SETITEM.*NamespaceStandIn"
    with _safe_globals_unchanged(), pytest.raises(CheckpointError, match=refused):
        load_checkpoint_dict(bad, "model")
    assert not (tmp_path / "posing.safetensors").exists()


def test_refused_for_other_reason_keeps_plain_refusal(tmp_path: Path) -> None:
    """A file whose refusal is not about a listed global (here: legacy non-zip format) is not retried."""
    bad = tmp_path / "legacy.pth"
    torch.save({"model": {"w": torch.zeros(2), "x": _Evil()}}, bad, _use_new_zipfile_serialization=False)
    with pytest.raises(CheckpointError, match=r"legacy\.pth.*weights_only=True"):
        load_checkpoint_dict(bad, "model")
    assert _UNPICKLED == []


class _Tiny(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.proj = nn.Linear(3, 4)
        self.norm = nn.LayerNorm(4)


def _official_tiny() -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    return {
        "net.fc.weight": torch.randn(4, 3, generator=g),
        "net.fc.bias": torch.randn(4, generator=g),
        "net.ln.weight": torch.randn(4, generator=g),
        "net.ln.bias": torch.randn(4, generator=g),
        "queue": torch.randn(8, generator=g),
    }


def _rename(key: str) -> str | None:
    if key == "queue":  # training-only buffer
        return None
    return key.replace("net.fc.", "proj.").replace("net.ln.", "norm.")


def test_strict_load_renames_and_drops() -> None:
    m, sd = _Tiny(), _official_tiny()
    load_state_dict_strict(m, sd, _rename, "tiny")
    assert torch.equal(m.proj.weight, sd["net.fc.weight"]) and torch.equal(m.norm.bias, sd["net.ln.bias"])


def test_strict_load_missing_key_listed() -> None:
    sd = _official_tiny()
    del sd["net.ln.bias"]
    with pytest.raises(CheckpointError, match=r"(?s)tiny.*missing keys.*norm\.bias"):
        load_state_dict_strict(_Tiny(), sd, _rename, "tiny")


def test_strict_load_unexpected_key_listed() -> None:
    sd = {**_official_tiny(), "net.extra.weight": torch.zeros(1)}
    with pytest.raises(CheckpointError, match=r"(?s)unexpected keys.*net\.extra\.weight"):
        load_state_dict_strict(_Tiny(), sd, _rename, "tiny")


def test_strict_load_shape_mismatch_and_collision() -> None:
    sd = {**_official_tiny(), "net.fc.weight": torch.zeros(4, 5)}
    with pytest.raises(CheckpointError, match=r"(?s)shape mismatches.*net\.fc\.weight"):
        load_state_dict_strict(_Tiny(), sd, _rename, "tiny")
    sd = {**_official_tiny(), "other.bias": torch.zeros(4)}
    with pytest.raises(CheckpointError, match=r"several checkpoint keys map to one parameter"):
        load_state_dict_strict(_Tiny(), sd, lambda k: "proj.bias" if k.endswith("fc.bias") or k == "other.bias" else _rename(k), "tiny")


def test_strict_load_assigns_into_meta_module() -> None:
    with torch.device("meta"):
        m = _Tiny()
    sd = _official_tiny()
    load_state_dict_strict(m, sd, _rename, "tiny")
    assert not m.proj.weight.is_meta and torch.equal(m.proj.weight, sd["net.fc.weight"])
    assert isinstance(m.proj.weight, nn.Parameter)
