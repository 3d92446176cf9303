"""Every kind of bad (and odd-but-fine) input the facade accepts, through clip_validation and the facade.

The facade tests here use the real flow metrics (cheap) and stub scorers injected as `builders` where only
the frames a dimension receives matter (so no model weights are needed).
"""

from __future__ import annotations

import resource
import time
import warnings

import numpy as np
import pytest
import torch
from torch import nn

from animereward import clip_validation as cv
from animereward.clip_validation import ClipInputError, ClipValueWarning
from animereward.reward import AnimeReward
from animereward.scorer_protocol import ClipBatch
from animereward.synthetic_clips import make_clip


class Recorder(nn.Module):
    """A stub scorer that keeps every ClipBatch it is given and scores each clip 0.5."""

    def __init__(self, name: str, log: list[ClipBatch]) -> None:
        super().__init__()
        self.name, self.log = name, log

    def preprocess(self, batch: ClipBatch) -> dict[str, torch.Tensor]:
        self.log.append(batch)
        return {"x": torch.zeros(len(batch))}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + 0.5


def recording_reward(*dims: str) -> tuple[AnimeReward, list[ClipBatch]]:
    log: list[ClipBatch] = []
    builders = {d: (lambda name, _w, **_: Recorder(name, log)) for d in dims}
    return AnimeReward(list(dims), builders=builders), log


def clip(t: int = 4, h: int = 24, w: int = 32) -> torch.Tensor:
    return torch.rand(t, h, w, 3, generator=torch.Generator().manual_seed(t * 1000 + h + w))


# -- shapes ---------------------------------------------------------------------------------------------------


def test_empty_clip_is_an_error_naming_the_input() -> None:
    with pytest.raises(ClipInputError, match=r"^frames: the clip is empty \(0 frames\)"):
        cv.as_clip(torch.zeros(0, 8, 8, 3))
    with pytest.raises(ClipInputError, match=r"^frames: the clip is empty \(a list of 0 frames\)"):
        cv.as_clip([])
    reward = AnimeReward.from_folder(None)
    with pytest.raises(ClipInputError, match=r"clips\[1\]: the clip is empty"):
        reward.score_batch([clip(), torch.zeros(0, 8, 8, 3)])
    with pytest.raises(ClipInputError, match=r"^clips: no clips given"):
        reward.score_batch([])


def test_single_frame_is_allowed_with_defined_results() -> None:
    reward, log = recording_reward("visual_motion", "flow_motion")
    reward.score(clip(1))
    assert [b.frames[0].shape[0] for b in log] == [1, 1]  # every dimension gets the one frame
    flow = AnimeReward.from_folder(None).score(make_clip(0, frames=1))
    assert flow.scores == {"flow_smoothness": 1.0, "flow_motion": 0.0}  # flow_metrics' documented T = 1
    assert flow.extras == {}


def test_mismatched_frame_sizes_in_a_list_name_the_frames() -> None:
    frames = [torch.rand(16, 16, 3), torch.rand(16, 16, 3), torch.rand(16, 20, 3), torch.rand(8, 8, 3)]
    with pytest.raises(ClipInputError, match=r"^frames: frames of one clip must all have the same size; frame 0 is "
                                             r"\(16, 16, 3\).*frame 2 is \(16, 20, 3\) \(and 1 more differ\)"):
        cv.as_clip(frames)
    with pytest.raises(ClipInputError, match=r"clips\[0\]: frames of one clip"):
        AnimeReward.from_folder(None).score_batch([frames])
    with pytest.raises(ClipInputError, match="share one dtype"):
        cv.as_clip([np.zeros((4, 4, 3), np.uint8), np.zeros((4, 4, 3), np.float32)])
    with pytest.raises(ClipInputError, match=r"frames\[1\]: a frame must be \[H,W,C\]"):
        cv.as_clip([torch.rand(4, 4, 3), torch.rand(1, 4, 4, 3)])


def test_list_of_frames_equals_the_stacked_clip() -> None:
    x = clip(5)
    a = AnimeReward.from_folder(None).score([f.numpy() for f in x])
    b = AnimeReward.from_folder(None).score(x)
    assert a.scores == b.scores


def test_rgba_drops_alpha_and_grey_is_replicated() -> None:
    rgb = clip(3)
    rgba = torch.cat([rgb, torch.rand(3, 24, 32, 1)], -1)
    grey = rgb[..., :1]
    for given, expected in ((rgba, rgb), (grey, grey.expand(-1, -1, -1, 3)), (grey[..., 0], grey.expand(-1, -1, -1, 3))):
        v = cv.validate_clip(cv.as_clip(given), [cv.official_plan])
        out = v.frames_for(range(3))
        assert out.shape == (3, 24, 32, 3) and out.dtype == torch.float32
        torch.testing.assert_close(out, expected, rtol=0, atol=0)
    image = cv.as_image(torch.cat([rgb[0], torch.ones(24, 32, 1)], -1))
    assert image.shape == (24, 32, 3)


def test_bad_shapes_and_channels_get_hints() -> None:
    with pytest.raises(ClipInputError, match=r"channels-first \[T,C,H,W\]: permute"):
        cv.as_clip(torch.rand(4, 3, 24, 32))
    with pytest.raises(ClipInputError, match=r"batch of clips .*use score_batch"):
        cv.as_clip(torch.rand(2, 4, 8, 8, 3))
    with pytest.raises(ClipInputError, match=r"^frames: expected a torch tensor or numpy array, got str"):
        cv.as_clip("video.mp4")
    with pytest.raises(ClipInputError, match=r"^frames: no frames given"):
        cv.as_clip(None)
    with pytest.raises(ClipInputError, match=r"dtype torch\.bool"):
        cv.as_clip(torch.zeros(2, 4, 4, 3, dtype=torch.bool))
    with pytest.raises(ClipInputError, match=r"frames: frames of size 0x4 have no pixels"):
        cv.as_clip(torch.zeros(2, 0, 4, 3))
    with pytest.raises(ClipInputError, match=r"clips: one tensor must be a batch of clips \[N,T,H,W,C\]"):
        cv.clip_list(torch.rand(4, 8, 8, 3))


# -- values ---------------------------------------------------------------------------------------------------


def test_slightly_outside_is_clamped_with_a_warning() -> None:
    x = clip(3)
    x[0, 0, 0] = torch.tensor([1.004, -0.003, 0.5])
    with pytest.warns(ClipValueWarning, match=r"frames: values range over \[-0.003, 1.004\].*clamped"):
        v = cv.validate_clip(cv.as_clip(x), [cv.official_plan])
    out = v.frames_for([0, 1, 2])
    assert float(out.min()) == 0.0 and float(out.max()) == 1.0
    torch.testing.assert_close(out[1:], x[1:])


def test_far_outside_is_an_error_with_the_range_and_a_hint() -> None:
    with pytest.raises(ClipInputError, match=r"^frames: values range over \[0, 255\]; expected 0\.\.1.*"
                                             r"Did you pass 0\.\.255 values\?"):
        cv.validate_clip(cv.as_clip(torch.full((2, 4, 4, 3), 255.0).index_fill_(1, torch.tensor([0]), 0.0)),
                         [cv.official_plan])
    with pytest.raises(ClipInputError, match=r"Did you pass -1\.\.1 values"):
        cv.validate_clip(cv.as_clip(clip(2) * 2 - 1), [cv.official_plan])
    with pytest.raises(ClipInputError, match=r"0\.\.255 values"):  # integers other than uint8 are values
        cv.validate_clip(cv.as_clip(torch.full((2, 4, 4, 3), 200, dtype=torch.int64)), [cv.official_plan])
    with pytest.raises(ClipInputError, match=r"first_frame: values range over \[3, 3\]"):
        cv.as_image(torch.full((4, 4, 3), 3.0))
    with pytest.raises(ClipInputError, match=r"clips\[1\]: values range over \[0, 2\]"):
        AnimeReward.from_folder(None).score_batch([clip(2), torch.full((2, 8, 8, 3), 2.0).index_fill_(1, torch.tensor([0]), 0.0)])


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_nan_and_inf_are_errors_naming_the_clip(bad: float) -> None:
    x = clip(6)
    x[3, 1, 2, 0] = bad
    what = "NaN" if bad != bad else "Inf"
    with pytest.raises(ClipInputError, match=rf"^clips\[1\]: contains {what} values in 1 of the frames read"):
        AnimeReward.from_folder(None).score_batch([clip(3), x])
    with pytest.raises(ClipInputError, match=rf"^first_frame: contains {what}"):
        cv.as_image(x[3])


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.uint8, torch.float64])
def test_half_bf16_uint8_tensors_accepted(dtype: torch.dtype) -> None:
    x = make_clip(3, frames=6, height=48, width=64)
    given = (x * 255).round().to(torch.uint8) if dtype == torch.uint8 else x.to(dtype)
    reference = given.float() / 255 if dtype == torch.uint8 else given.float()
    reward = AnimeReward.from_folder(None)
    a, b = reward.score(given), reward.score(reference)
    assert a.scores == pytest.approx(b.scores, abs=1e-6)
    half_np = AnimeReward.from_folder(None).score(x.numpy().astype(np.float16))
    assert half_np.scores == pytest.approx(AnimeReward.from_folder(None).score(x.half()).scores, abs=1e-6)


def test_numpy_inputs_read_only_and_negative_strides() -> None:
    x = clip(30).numpy()
    x.flags.writeable = False
    flipped = x[::-1]  # negative stride
    reward, log = recording_reward("visual_motion", "flow_motion")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "non-writable array" warning from torch
        reward.score(x)
        reward.score(flipped)
    idx = cv.official_plan(30)
    torch.testing.assert_close(log[0].frames[0], torch.from_numpy(x[idx].copy()))
    torch.testing.assert_close(log[2].frames[0], torch.from_numpy(flipped[idx].copy()))


# -- long clips -----------------------------------------------------------------------------------------------


def test_2000_frame_clip_touches_only_the_sampled_frames() -> None:
    """A 2,000-frame fp16 clip at 480x832 as a zero-stride view: converting it all to float32 would need
    9.6 GB and many seconds; selecting first keeps time and memory at the 24 sampled frames' cost."""
    long_clip = torch.rand(1, 480, 832, 3).half().expand(2000, -1, -1, -1)
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t0 = time.perf_counter()
    reward, log = recording_reward("visual_motion", "visual_appeal", "text_video_consistency")
    reward.score(long_clip, prompt="a cat")
    elapsed = time.perf_counter() - t0
    grown_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss0) / 1024
    assert [b.frames[0].shape for b in log] == [(24, 480, 832, 3)] * 3
    assert all(b.frames[0].dtype == torch.float32 for b in log)
    assert log[0].frames[0] is log[1].frames[0] is log[2].frames[0]  # converted once, shared
    assert elapsed < 3.0, elapsed
    assert grown_mb < 600, grown_mb  # 24 fp16 + 24 float32 frames: ~170 MB; all 2,000 would be 9.6 GB


def test_flow_metrics_read_the_first_144_consecutive_frames() -> None:
    x = make_clip(5, frames=12, height=40, width=64)
    long_clip = x[torch.arange(2000) % 12]  # a looping 2,000-frame clip
    reward, log = recording_reward("flow_smoothness", "visual_motion")
    reward.score(long_clip)
    assert [b.frames[0].shape[0] for b in log] == [24, 144]
    torch.testing.assert_close(log[1].frames[0], long_clip[:144])
    t0 = time.perf_counter()
    real = AnimeReward.from_folder(None).score(long_clip)
    assert time.perf_counter() - t0 < 20
    assert real.scores["flow_motion"] > 0.1 and 0 < real.scores["flow_smoothness"] <= 1


def test_sampling_before_conversion_matches_the_official_indices() -> None:
    x = clip(300, 8, 8)
    reward, log = recording_reward("text_video_consistency")
    reward.score(x, prompt="a dog")
    torch.testing.assert_close(log[0].frames[0], x[cv.official_plan(300)])
    assert cv.official_plan(300) == list(range(0, 144, 6))


# -- prompts and first frames -----------------------------------------------------------------------------------


@pytest.mark.parametrize("prompt", [None, "", "   \n"])
def test_prompt_missing_or_empty_for_a_text_dimension(prompt: str | None) -> None:
    reward, _ = recording_reward("text_video_consistency", "flow_motion")
    with pytest.raises(ClipInputError, match=r"text_video_consistency is enabled and reads the text prompt, but "
                                             r"'prompt' is (missing|empty or missing)"):
        reward.score(clip(), prompt=prompt)
    with pytest.raises(ClipInputError, match=r"'prompts \(clips \[1\]\)'"):
        reward.score_batch([clip(), clip()], prompts=["a cat", prompt])
    reward.score(clip(), prompt=prompt, dimensions=["flow_motion"])  # not read: fine


def test_prompt_shapes() -> None:
    reward, log = recording_reward("visual_appeal")
    reward.score_batch([clip(), clip()], prompts="shared")
    assert log[-1].prompts == ["shared", "shared"]
    with pytest.raises(ClipInputError, match=r"^prompts: 1 prompts for 2 clips"):
        reward.score_batch([clip(), clip()], prompts=["one"])
    with pytest.raises(ClipInputError, match=r"^prompts\[0\]: a prompt must be a string, got int"):
        reward.score_batch([clip()], prompts=[3])
    with pytest.raises(ValueError, match=r"^prompt: one clip takes one prompt string"):
        reward.score(clip(), prompt=["a", "b"])


def test_first_frame_missing_and_shapes() -> None:
    reward, log = recording_reward("image_video_consistency")
    with pytest.raises(ClipInputError, match=r"image_video_consistency is enabled and reads the first frame .*"
                                             r"'first_frame' is missing"):
        reward.score(clip())
    key = torch.rand(24, 32, 3)
    reward.score(clip(), first_frame=key)
    reward.score(clip(), first_frame=key[None])
    reward.score(clip(), first_frame=(key.numpy() * 255).astype(np.uint8))
    for b in log:
        assert b.first_frames[0].shape == (24, 32, 3) and b.first_frames[0].dtype == torch.float32
    with pytest.raises(ClipInputError, match=r"^first_frame: expected one image .* got a batch of 2"):
        reward.score(clip(), first_frame=torch.rand(2, 24, 32, 3))
    reward.score_batch([clip(), clip()], first_frames=torch.rand(2, 24, 32, 3))  # one per clip
    assert not torch.equal(log[-1].first_frames[0], log[-1].first_frames[1])
    reward.score_batch([clip(), clip()], first_frames=key)  # one for all
    assert log[-1].first_frames[0] is log[-1].first_frames[1]
    with pytest.raises(ClipInputError, match=r"first_frames \(clips \[1\]\)"):
        reward.score_batch([clip(), clip()], first_frames=[key, None])
    with pytest.raises(ClipInputError, match=r"^first_frames: 3 images for 2 clips"):
        reward.score_batch([clip(), clip()], first_frames=[key, key, key])


def test_batch_tensor_equals_list_of_clips() -> None:
    xs = torch.stack([make_clip(s, frames=5, height=32, width=48) for s in range(3)])
    reward = AnimeReward.from_folder(None)
    a = [r.scores for r in reward.score_batch(xs)]
    b = [r.scores for r in reward.score_batch(list(xs))]
    assert a == b
