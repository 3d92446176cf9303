"""Per-call memo (clip_memo): the dimensions reading the same frames share one preprocessing, and the fast
preprocessing gives the same bits as the plain official-order operations."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from animereward import clip_memo, preprocess


def test_same_tensor_is_preprocessed_once_until_forgotten():
    clip_memo.forget()
    frames = torch.rand(30, 40, 64, 3)
    first = preprocess.sampled_clip(frames)
    assert preprocess.sampled_clip(frames) is first
    assert torch.equal(first, preprocess.preprocess_frames(frames[preprocess.sample_frame_indices(30)]))
    clip_memo.forget()
    assert clip_memo.size() == (0, 0)
    assert preprocess.sampled_clip(frames) is not first
    clip_memo.forget()


def test_modified_or_other_tensor_is_not_served_from_the_memo():
    clip_memo.forget()
    frames = torch.rand(10, 40, 64, 3)
    first = preprocess.sampled_clip(frames)
    frames.mul_(0.5)  # in place: same object, new content
    again = preprocess.sampled_clip(frames)
    assert again is not first and not torch.equal(again, first)
    equal_copy = frames.clone()  # equal content, another object: computed anew, same values
    assert torch.equal(preprocess.sampled_clip(equal_copy), again)
    clip_memo.forget()


def test_facade_leaves_no_memo_behind():
    from animereward import AnimeReward

    reward = AnimeReward.from_folder(None, ["flow_smoothness"])
    preprocess.sampled_clip(torch.rand(4, 32, 32, 3))
    reward.score(torch.rand(4, 32, 32, 3))
    assert clip_memo.size() == (0, 0)


def test_inference_tensors_are_accepted():
    """ComfyUI runs nodes under torch.inference_mode(); such tensors keep no version counter."""
    clip_memo.forget()
    with torch.inference_mode():
        frames = torch.rand(6, 40, 64, 3)
        first = preprocess.sampled_clip(frames)
        assert preprocess.sampled_clip(frames) is first
    clip_memo.forget()


def test_memory_is_bounded(monkeypatch: pytest.MonkeyPatch):
    """Past MAX_BYTES the oldest entries go (recomputed if asked again); a result over the budget is not kept."""
    clip_memo.forget()
    one = 24 * 3 * 224 * 224 * 4  # one img_all
    monkeypatch.setattr(clip_memo, "MAX_BYTES", 2 * one + 100)
    clips = [torch.rand(30, 16, 16, 3) for _ in range(3)]
    outs = [preprocess.sampled_clip(c) for c in clips]
    entries, held = clip_memo.size()
    assert held <= clip_memo.MAX_BYTES and entries < 6  # three img_all + three uint8 samples did not all fit
    assert preprocess.sampled_clip(clips[-1]) is outs[-1]  # the newest stays
    assert preprocess.sampled_clip(clips[0]) is not outs[0] and torch.equal(preprocess.sampled_clip(clips[0]), outs[0])
    monkeypatch.setattr(clip_memo, "MAX_BYTES", 10)
    clip_memo.forget()
    preprocess.sampled_clip(clips[0])
    assert clip_memo.size() == (0, 0)
    clip_memo.forget()


def _plain_uint8(frames: torch.Tensor) -> np.ndarray:
    return (frames.float().clamp(0, 1) * 255.0).round().to(torch.uint8).numpy()


def test_uint8_conversion_is_exact_on_halves_and_out_of_range():
    """round(clamp(x)·255) with torch's half-to-even rounding, bit for bit, for every dtype the nodes see."""
    x = torch.rand(3, 20, 256, 3, generator=torch.Generator().manual_seed(0))
    x[0, 0, :, 0] = (torch.arange(256) + 0.5) / 255  # exact .5 after scaling (where rounding modes differ)
    x[0, 1, :, 0] = torch.arange(256) / 255
    x[0, 2, :8, 0] = torch.tensor([-0.5, -0.003, -0.001, -0.0, 1.002, 1.5, 0.999, 1.0])
    assert np.array_equal(preprocess.to_uint8(x), _plain_uint8(x))
    for dtype in (torch.float16, torch.bfloat16, torch.float64):
        y = x.to(dtype)
        assert np.array_equal(preprocess.to_uint8(y), _plain_uint8(y)), dtype
    assert np.array_equal(preprocess.to_uint8(x[:, :, ::3]), _plain_uint8(x[:, :, ::3]))  # non-contiguous
    assert np.array_equal(preprocess.to_uint8(x, [2, 0, 2]), _plain_uint8(x[[2, 0, 2]]))  # a selection
    assert np.array_equal(preprocess.to_uint8(x.half(), [1]), _plain_uint8(x.half()[[1]]))


def test_lut_normalisation_equals_the_official_arithmetic():
    """ToTensor (/255) then Normalize ((x - mean) / std) in float32, on every uint8 value and a real image."""
    u8 = np.random.default_rng(1).integers(0, 256, size=(2, 224, 224, 3), dtype=np.uint8)
    u8[0, :2].reshape(-1, 3)[:256] = np.arange(256, dtype=np.uint8)[:, None]
    x = torch.from_numpy(u8).permute(0, 3, 1, 2).float().div(255.0)
    mean = torch.tensor(preprocess.CLIP_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(preprocess.CLIP_STD).view(1, 3, 1, 1)
    got = preprocess.normalize(u8)
    assert got.shape == (2, 3, 224, 224) and got.dtype == torch.float32
    assert torch.equal(got, (x - mean) / std)


def test_threaded_resize_equals_per_frame_pil():
    u8 = np.random.default_rng(2).integers(0, 256, size=(7, 37, 53, 3), dtype=np.uint8)
    want = np.stack([np.asarray(Image.fromarray(f).resize((224, 224), Image.BICUBIC)) for f in u8])
    assert np.array_equal(preprocess.resize_uint8(u8), want)
    same = preprocess.resize_uint8(u8, (37, 53))  # unchanged size: a copy, not the input
    assert np.array_equal(same, u8) and same is not u8
    with pytest.raises(ValueError):
        preprocess.map_frames(lambda i: (_ for _ in ()).throw(ValueError(f"frame {i}")), 4)
