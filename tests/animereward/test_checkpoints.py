"""Safe checkpoint I/O and strict key mapping (animereward.checkpoints), on small state dicts."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import torch
from torch import nn

from animereward import checkpoints
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
