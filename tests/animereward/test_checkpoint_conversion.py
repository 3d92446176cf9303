"""The `.pth` → `.safetensors` conversion: checked before it is written, and tied to the file it came from.

Found when the loaders were tried with hand-made official-format files: a `.pth` with wrong keys was converted
before its keys were checked, and the copy it left behind kept being preferred after the `.pth` was replaced.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from animereward import actionclip, blip_consistency, checkpoints
from animereward.checkpoints import CheckpointError, load_checkpoint_dict


def _state(seed: int) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {"a.weight": torch.randn(4, 3, generator=g), "a.bias": torch.randn(4, generator=g)}


def _require_a(state: dict[str, torch.Tensor]) -> None:
    if set(state) != {"a.weight", "a.bias"}:
        raise CheckpointError(f"tiny checkpoint: keys {sorted(state)} do not fit")


def test_keys_checked_before_the_copy_is_written(tmp_path: Path) -> None:
    pth = tmp_path / "m.pth"
    torch.save({"model": {"wrong.weight": torch.zeros(2)}}, pth)
    with pytest.raises(CheckpointError, match=r"m\.pth"):
        load_checkpoint_dict(pth, "model", check=_require_a)
    assert not (tmp_path / "m.safetensors").exists()  # nothing left to shadow a fixed file
    torch.save({"model": _state(0)}, pth)  # the user fetches the file again
    got = load_checkpoint_dict(pth, "model", check=_require_a)
    assert torch.equal(got["a.weight"], _state(0)["a.weight"])
    assert (tmp_path / "m.safetensors").is_file()


def test_replaced_source_is_converted_again(tmp_path: Path) -> None:
    pth = tmp_path / "m.pth"
    torch.save({"model": _state(0)}, pth)
    load_checkpoint_dict(pth, "model")
    torch.save({"model": {**_state(1), "a.extra": torch.ones(3)}}, pth)  # other content, other size
    got = load_checkpoint_dict(pth, "model")
    assert set(got) == {"a.weight", "a.bias", "a.extra"} and torch.equal(got["a.weight"], _state(1)["a.weight"])
    # Asking for the .safetensors by name follows the source too.
    assert set(load_checkpoint_dict(tmp_path / "m.safetensors", "model")) == set(got)


def test_copy_named_directly_follows_a_replaced_pt_too(tmp_path: Path) -> None:
    """SAM2's official file is a `.pt`: its copy named directly must not shadow a replaced `.pt` (it only
    looked for a `.pth` beside it before)."""
    pt, copy = tmp_path / "sam.pt", tmp_path / "sam.safetensors"
    torch.save({"model": _state(0)}, pt)
    load_checkpoint_dict(pt, "model")
    assert copy.is_file()
    torch.save({"model": {**_state(1), "a.extra": torch.ones(3)}}, pt)  # a fixed download replaces the .pt
    got = load_checkpoint_dict(copy, "model")
    assert set(got) == {"a.weight", "a.bias", "a.extra"} and torch.equal(got["a.weight"], _state(1)["a.weight"])
    assert set(load_checkpoint_dict(copy, "model")) == set(got)  # and the copy was rewritten from it
    # With a .pth and a .pt of the same stem, the one the copy was converted from is followed.
    torch.save({"model": _state(2)}, tmp_path / "sam.pth")
    assert torch.equal(load_checkpoint_dict(copy, "model")["a.weight"], _state(1)["a.weight"])
    # Neither source: the message names both suffixes.
    with pytest.raises(FileNotFoundError, match=r"nor x\.pth or x\.pt beside it"):
        load_checkpoint_dict(tmp_path / "x.safetensors", "model")


def test_same_size_other_content_caught_by_hash_and_copy_with_new_time_kept(tmp_path: Path, monkeypatch) -> None:
    pth = tmp_path / "m.pth"
    torch.save({"model": _state(0)}, pth)
    load_checkpoint_dict(pth, "model")
    st = tmp_path / "m.safetensors"
    written = st.stat().st_mtime_ns
    # Same bytes, new time (a copy without -p): the hash says it is the same file, no conversion.
    stat = pth.stat()
    os.utime(pth, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    load_checkpoint_dict(pth, "model")
    assert st.stat().st_mtime_ns == written
    # Same size, other values, same time as recorded: size and time match, so only a changed time triggers
    # the hash; give it a new time as any rewrite does.
    torch.save({"model": _state(2)}, pth)
    assert pth.stat().st_size == stat.st_size
    got = load_checkpoint_dict(pth, "model")
    assert torch.equal(got["a.weight"], _state(2)["a.weight"])


def test_copy_from_before_sources_were_recorded_is_converted_once(tmp_path: Path) -> None:
    from safetensors.torch import save_file

    pth = tmp_path / "m.pth"
    torch.save({"model": _state(0)}, pth)
    save_file(_state(5), str(tmp_path / "m.safetensors"), metadata={"converted_from": "m.pth"})
    got = load_checkpoint_dict(pth, "model")
    assert torch.equal(got["a.weight"], _state(0)["a.weight"])


def test_hand_made_safetensors_is_used_as_it_is(tmp_path: Path, monkeypatch) -> None:
    """What the refusal message tells the user to do: save the tensors beside the .pth by hand."""
    from safetensors.torch import save_file

    torch.save({"model": _state(0)}, tmp_path / "m.pth")
    save_file(_state(7), str(tmp_path / "m.safetensors"))
    monkeypatch.setattr(checkpoints.torch, "load", lambda *a, **k: pytest.fail("the .pth must not be read"))
    got = load_checkpoint_dict(tmp_path / "m.pth", "model")
    assert torch.equal(got["a.weight"], _state(7)["a.weight"])


def test_check_error_names_the_copy_it_read(tmp_path: Path) -> None:
    from safetensors.torch import save_file

    save_file({"b": torch.zeros(1)}, str(tmp_path / "m.safetensors"))
    with pytest.raises(CheckpointError, match=r"tensors read from .*m\.safetensors"):
        load_checkpoint_dict(tmp_path / "m.safetensors", None, check=_require_a)


@pytest.mark.parametrize("dimension", ["visual_motion", "image_video_consistency", "text_video_consistency"])
def test_builders_name_the_file_and_leave_no_copy(tmp_path: Path, dimension: str) -> None:
    """The motion model's error used to say only 'ActionCLIP checkpoint'; every builder now names the file."""
    pth = tmp_path / f"{dimension}.pth"
    key = "state_dict" if dimension == "visual_motion" else "model"
    torch.save({key: {"not.a.key": torch.zeros(2)}}, pth)
    module = actionclip if dimension == "visual_motion" else blip_consistency
    with pytest.raises(CheckpointError) as err:
        module.build_scorer(dimension, pth)
    assert str(pth) in str(err.value) and "not.a.key" in str(err.value)
    assert not pth.with_suffix(".safetensors").exists()
