"""sampled_clip is memoised per unmodified input tensor, so the three models reading img_all share one resize."""

from __future__ import annotations

import torch

from animereward import preprocess


def test_same_tensor_is_preprocessed_once_until_forgotten():
    preprocess.forget_sampled_clips()
    frames = torch.rand(30, 40, 64, 3)
    first = preprocess.sampled_clip(frames)
    assert preprocess.sampled_clip(frames) is first
    assert torch.equal(first, preprocess.preprocess_frames(frames[preprocess.sample_frame_indices(30)]))
    preprocess.forget_sampled_clips()
    assert preprocess.sampled_clip(frames) is not first


def test_modified_or_other_tensor_is_not_served_from_the_memo():
    preprocess.forget_sampled_clips()
    frames = torch.rand(10, 40, 64, 3)
    first = preprocess.sampled_clip(frames)
    frames.mul_(0.5)  # in place: same object, new content
    again = preprocess.sampled_clip(frames)
    assert again is not first and not torch.equal(again, first)
    equal_copy = frames.clone()  # equal content, another object: computed anew, same values
    assert torch.equal(preprocess.sampled_clip(equal_copy), again)
    preprocess.forget_sampled_clips()


def test_facade_leaves_no_memo_behind():
    from animereward import AnimeReward

    reward = AnimeReward.from_folder(None, ["flow_smoothness"])
    preprocess.sampled_clip(torch.rand(4, 32, 32, 3))
    reward.score(torch.rand(4, 32, 32, 3))
    assert not preprocess._SAMPLED


def test_inference_tensors_are_accepted():
    """ComfyUI runs nodes under torch.inference_mode(); such tensors keep no version counter."""
    preprocess.forget_sampled_clips()
    with torch.inference_mode():
        frames = torch.rand(6, 40, 64, 3)
        first = preprocess.sampled_clip(frames)
        assert preprocess.sampled_clip(frames) is first
    preprocess.forget_sampled_clips()
