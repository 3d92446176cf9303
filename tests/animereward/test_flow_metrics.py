"""flow_smoothness and flow_motion on synthetic cel clips: defects lower smoothness, stillness lowers motion."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import animereward.flow_metrics as fm
from animereward.preprocess import to_uint8
from animereward.scorer_protocol import ClipBatch
from animereward.synthetic_clips import make_clip

SEEDS = range(5)
FRAMES = 16


@pytest.fixture(scope="module")
def scores() -> dict[str, list[dict[str, float]]]:
    """Both metrics of the clean clip and of each defective twin, for several seeds."""
    out: dict[str, list[dict[str, float]]] = {}
    for seed in SEEDS:
        out.setdefault("clean", []).append(fm.flow_scores(make_clip(seed, frames=FRAMES)))
        for defect in ("flicker", "jitter", "freeze", "distortion", "static"):
            out.setdefault(defect, []).append(
                fm.flow_scores(make_clip(seed, frames=FRAMES, defects=[defect]))
            )
    return out


@pytest.mark.parametrize("defect", ["flicker", "jitter", "freeze", "distortion"])
def test_defects_lower_smoothness_for_every_seed(scores: dict, defect: str) -> None:
    clean = np.array([s["flow_smoothness"] for s in scores["clean"]])
    bad = np.array([s["flow_smoothness"] for s in scores[defect]])
    gaps = clean - bad
    # measured over 20 seeds: min gap flicker 0.71, jitter 0.69, freeze 0.066, distortion 0.21
    assert (gaps > 0.03).all(), (defect, clean.round(3), bad.round(3))
    assert gaps.mean() > 0.08


def test_static_has_less_motion_than_moving(scores: dict) -> None:
    moving = np.array([s["flow_motion"] for s in scores["clean"]])
    still = np.array([s["flow_motion"] for s in scores["static"]])
    assert (still < 0.01).all() and (moving > still + 0.1).all(), (moving, still)
    assert all(s["flow_smoothness"] == pytest.approx(1.0) for s in scores["static"])


def test_scores_in_unit_interval(scores: dict) -> None:
    values = [v for runs in scores.values() for s in runs for v in s.values()]
    assert all(0.0 <= v <= 1.0 and np.isfinite(v) for v in values)


def test_short_and_tiny_clips() -> None:
    one = make_clip(0, frames=1)
    assert fm.flow_smoothness(one) == 1.0 and fm.flow_motion(one) == 0.0
    two = fm.clip_flow_stats(make_clip(0, frames=2))
    assert two.warp.shape == (1,) and two.accel.shape == (0,)
    for t, h, w in ((3, 5, 6), (4, 2, 40), (3, 1, 1)):
        s = fm.flow_scores(torch.rand(t, h, w, 3, generator=torch.Generator().manual_seed(t)))
        assert all(0.0 <= v <= 1.0 for v in s.values()), (t, h, w, s)
    still = np.zeros((4, 16, 16, 3), np.uint8)
    assert fm.flow_scores(still) == {"flow_smoothness": 1.0, "flow_motion": 0.0}
    with pytest.raises(ValueError, match="T,H,W,3"):
        fm.flow_scores(np.zeros((2, 8, 8)))


def test_input_types_and_resolution_do_not_change_the_result() -> None:
    base = fm.flow_scores(make_clip(1, frames=10, height=144, width=256))
    as_uint8 = fm.flow_scores(to_uint8(make_clip(1, frames=10, height=144, width=256)))
    as_numpy = fm.flow_scores(make_clip(1, frames=10, height=144, width=256).numpy().astype(np.float64))
    double = fm.flow_scores(make_clip(1, frames=10, height=288, width=512))  # same working size (256 wide)
    assert fm.working_size(288, 512) == fm.working_size(144, 256) == (144, 256)
    for other in (as_uint8, as_numpy, double):
        for k in base:
            assert other[k] == pytest.approx(base[k], abs=0.05), (k, base, other)


def test_scorer_contract_and_shared_flow(monkeypatch: pytest.MonkeyPatch) -> None:
    clips = [make_clip(2, frames=8), make_clip(3, frames=1), make_clip(2, frames=8, defects=["flicker"])]
    batch = ClipBatch(frames=clips, prompts=[None] * 3)
    calls = []
    real = fm.clip_flow_stats
    monkeypatch.setattr(fm, "clip_flow_stats", lambda *a, **k: calls.append(1) or real(*a, **k))
    smooth, motion = fm.build_scorer("flow_smoothness"), fm.build_scorer("flow_motion", None, device="cpu")
    assert isinstance(smooth, torch.nn.Module) and not list(smooth.parameters())
    assert (smooth.name, motion.name) == ("flow_smoothness", "flow_motion")
    s = smooth(**smooth.preprocess(batch))
    m = motion(**motion.preprocess(batch))
    assert len(calls) == 3  # the second dimension reused the flow of the first
    for out in (s, m):
        assert out.shape == (3,) and out.dtype == torch.float32 and ((out >= 0) & (out <= 1)).all()
    assert s[1] == 1.0 and m[1] == 0.0  # the 1-frame clip
    assert s[2] < s[0]
    expected = [fm.flow_scores(c) for c in clips]
    torch.testing.assert_close(s, torch.tensor([e["flow_smoothness"] for e in expected]), atol=1e-5, rtol=0)
    torch.testing.assert_close(m, torch.tensor([e["flow_motion"] for e in expected]), atol=1e-5, rtol=0)
    with pytest.raises(ValueError, match="serves"):
        fm.build_scorer("visual_appeal")


def test_imports_are_light() -> None:
    """cv2 and transformers load only when a metric runs or a model is built (one subprocess for all three)."""
    code = (
        "import sys; import animereward.flow_metrics, animereward.synthetic_clips, animereward.idefics2_regression; "
        "heavy = [m for m in sys.modules if m.split('.')[0] in ('cv2', 'transformers')]; assert not heavy, heavy"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).resolve().parents[2])
