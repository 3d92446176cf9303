"""Per-call memo (clip_memo.ClipMemo): the dimensions reading the same frames share one preprocessing, and the
fast preprocessing gives the same bits as the plain official-order operations."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from animereward import clip_memo, preprocess
from animereward.clip_memo import ClipMemo


def test_same_tensor_is_preprocessed_once_until_forgotten():
    memo = ClipMemo()
    frames = torch.rand(30, 40, 64, 3)
    first = preprocess.sampled_clip(frames, memo)
    assert preprocess.sampled_clip(frames, memo) is first
    assert torch.equal(first, preprocess.preprocess_frames(frames[preprocess.sample_frame_indices(30)]))
    memo.forget()
    assert memo.size() == (0, 0)
    assert preprocess.sampled_clip(frames, memo) is not first
    assert preprocess.sampled_clip(frames) is not preprocess.sampled_clip(frames)  # no memo: nothing kept


def test_modified_or_other_tensor_is_not_served_from_the_memo():
    memo = ClipMemo()
    frames = torch.rand(10, 40, 64, 3)
    first = preprocess.sampled_clip(frames, memo)
    frames.mul_(0.5)  # in place: same object, new content
    again = preprocess.sampled_clip(frames, memo)
    assert again is not first and not torch.equal(again, first)
    equal_copy = frames.clone()  # equal content, another object: computed anew, same values
    assert torch.equal(preprocess.sampled_clip(equal_copy, memo), again)


def test_facade_leaves_no_memo_behind():
    """The memo is the call's: it is emptied when the call ends, and no other call or caller sees it."""
    from animereward import AnimeReward
    from animereward.hooks import CallbackHooks
    from animereward.scorer_protocol import ClipBatch

    reward = AnimeReward.from_folder(None, ["flow_smoothness"])
    memos: list[ClipMemo] = []
    original = reward.scorer("flow_smoothness").preprocess

    def spy(batch: ClipBatch):
        memos.append(batch.memo)
        return original(batch)

    reward.scorer("flow_smoothness").preprocess = spy
    reward.score(torch.rand(4, 32, 32, 3), hooks=CallbackHooks())
    reward.score(torch.rand(4, 32, 32, 3))
    assert len(memos) == 2 and memos[0] is not memos[1]  # one memo per call
    assert [m.size() for m in memos] == [(0, 0), (0, 0)]  # each emptied when its call ended


def test_inference_tensors_are_accepted():
    """ComfyUI runs nodes under torch.inference_mode(); such tensors keep no version counter."""
    memo = ClipMemo()
    with torch.inference_mode():
        frames = torch.rand(6, 40, 64, 3)
        first = preprocess.sampled_clip(frames, memo)
        assert preprocess.sampled_clip(frames, memo) is first


def test_memory_is_bounded():
    """Past max_bytes the oldest entries go (recomputed if asked again); a result over the budget is not kept."""
    one = 24 * 3 * 224 * 224 * 4  # one img_all
    memo = ClipMemo(max_bytes=2 * one + 100)
    clips = [torch.rand(30, 16, 16, 3) for _ in range(3)]
    outs = [preprocess.sampled_clip(c, memo) for c in clips]
    entries, held = memo.size()
    assert held <= memo.max_bytes and entries < 6  # three img_all + three uint8 samples did not all fit
    assert preprocess.sampled_clip(clips[-1], memo) is outs[-1]  # the newest stays
    assert preprocess.sampled_clip(clips[0], memo) is not outs[0]
    assert torch.equal(preprocess.sampled_clip(clips[0], memo), outs[0])
    tiny = ClipMemo(max_bytes=10)
    preprocess.sampled_clip(clips[0], tiny)
    assert tiny.size() == (0, 0)
    assert clip_memo.MAX_BYTES == 2 * 1024**3  # the default budget of a call


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
