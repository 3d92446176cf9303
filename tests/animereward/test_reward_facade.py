"""The AnimeReward facade on real files and real metrics: loading from both layouts, lazy loading, release,
weights, missing-file errors, batching (score vs score_batch), progress/cancel, the before_forward hook, and
the JSON schema.

Cost: the full-size BLIP and ActionCLIP checkpoints are written once per process (official_weights.py) and
scored once, on a two-frame clip (ActionCLIP always runs its 8 segments); everything else runs on the flow
metrics, the tiny official-format Idefics2 checkpoints, or stub scorers injected as `builders`.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from animereward_testkit import official_weights as ow
from torch import nn

from animereward.dimensions import DIMENSIONS, FLOW_DIMENSIONS, WEIGHTS_SOURCE
from animereward.hooks import CallbackHooks
from animereward.reward import AnimeReward, RewardScores, resolve_weights
from animereward.scorer_protocol import ClipBatch
from animereward.synthetic_clips import defect_suite, make_clip
from animereward.weights_layout import (
    OFFICIAL_FILES,
    DimensionNotAvailableError,
    MissingWeightsError,
    missing_files,
)

REPO = Path(__file__).resolve().parents[2]
PROMPT = "a girl with silver hair waves under falling cherry blossoms"  # in the tiny Idefics2 vocabulary
ALL_SEVEN = tuple(d for d in DIMENSIONS if d != "character_consistency")
IDEFICS2 = ("visual_smoothness", "visual_appeal")


class Stub(nn.Module):
    """A scorer that records what it is asked and returns fixed scores (or a contract violation)."""

    def __init__(self, name: str, events: list, value: float = 0.5, bad: str | None = None) -> None:
        super().__init__()
        self.name, self.events, self.value, self.bad = name, events, value, bad

    def preprocess(self, batch: ClipBatch) -> dict[str, torch.Tensor]:
        self.events.append(("preprocess", self.name, len(batch)))
        return {"x": torch.full((len(batch),), self.value)}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.events.append(("forward", self.name, x.shape[0]))
        if self.bad == "shape":
            return x[:1]
        if self.bad == "nan":
            return x * float("nan")
        return x


def stubs(events: list, values: dict[str, float] | None = None, bad: dict[str, str] | None = None):
    values, bad = values or {}, bad or {}

    def build(name: str, weights: Path | None, **kwargs) -> nn.Module:
        events.append(("build", name, kwargs["dtype"]))
        return Stub(name, events, values.get(name, 0.5), bad.get(name))

    return build


def stub_reward(*dims: str, **kwargs) -> tuple[AnimeReward, list]:
    events: list = []
    build = stubs(events, kwargs.pop("values", None), kwargs.pop("bad", None))
    return AnimeReward(list(dims), builders=dict.fromkeys(dims, build), **kwargs), events


@pytest.fixture(scope="module")
def official_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return ow.make_root(tmp_path_factory.mktemp("official"), layout="official")


@pytest.fixture(scope="module")
def idefics2_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return ow.make_root(tmp_path_factory.mktemp("idefics2"), IDEFICS2, layout="flat")


# -- real files, every dimension --------------------------------------------------------------------------------


def test_every_dimension_from_the_official_layout(official_root: Path) -> None:
    calls: list[tuple[str, str]] = []
    reward = AnimeReward.from_folder(official_root)
    hooks = CallbackHooks(on_before_forward=lambda n, m, shape: calls.append((n, type(m).__name__)))
    assert reward.dimensions == ALL_SEVEN
    assert reward.loaded() == {}  # nothing read before the first score
    iv_pth = official_root / "weights" / OFFICIAL_FILES["image_video_consistency"].relpath
    assert reward.paths["image_video_consistency"] == iv_pth and not iv_pth.with_suffix(".safetensors").exists()

    clip = make_clip(1, frames=2, height=64, width=96)
    result = reward.score(clip, prompt=PROMPT, first_frame=clip[0], hooks=hooks)

    assert list(result.scores) == list(ALL_SEVEN)
    assert all(0.0 <= s <= 1.0 for s in result.scores.values())
    assert [n for n, _ in calls] == list(ALL_SEVEN)  # the hook ran before each dimension's forward
    assert set(reward.loaded()) == set(ALL_SEVEN)
    assert iv_pth.with_suffix(".safetensors").is_file()  # the .pth was converted once, beside itself
    assert result.official() == {DIMENSIONS[d].official_key: result.scores[d] for d in ALL_SEVEN
                                 if d not in FLOW_DIMENSIONS}
    for d in IDEFICS2:  # unclamped logit / 100 kept beside the clamped score
        raw = result.extras[d]["raw_score"]
        assert result.scores[d] == pytest.approx(min(1.0, max(0.0, raw)), abs=1e-7)
    assert result.total == pytest.approx(sum(result.scores.values()) / 7)
    json.loads(result.to_json())

    reward.release("visual_motion")
    assert "visual_motion" not in reward.loaded() and len(reward.loaded()) == 6
    reward.release()
    assert reward.loaded() == {}


def test_flat_layout_builds_every_scorer(tmp_path: Path) -> None:
    root = ow.make_root(tmp_path, layout="flat")
    reward = AnimeReward.from_folder(root, list(OFFICIAL_FILES))
    for d in OFFICIAL_FILES:
        module = reward.scorer(d)
        assert module.name == d and isinstance(module, nn.Module)
        assert reward.scorer(d) is module  # built once
        reward.release(d)  # keep one resident at a time
    assert reward.loaded() == {}


def test_import_and_from_folder_are_cheap_and_lazy(idefics2_root: Path) -> None:
    code = f"""
import sys
import animereward
heavy = ("transformers", "cv2", "peft", "animereward.reward")
assert not [m for m in heavy if m in sys.modules], [m for m in heavy if m in sys.modules]
reward = animereward.AnimeReward.from_folder({str(idefics2_root)!r})
assert reward.dimensions == ("visual_smoothness", "visual_appeal", "flow_smoothness", "flow_motion")
assert reward.loaded() == {{}}
loaded = [m for m in ("transformers.models.idefics2", "transformers", "cv2", "peft") if m in sys.modules]
assert not loaded, loaded
reward.scorer("visual_appeal")
assert "transformers.models.idefics2" in sys.modules and list(reward.loaded()) == ["visual_appeal"]
print("ok")
"""
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr[-3000:]


# -- flow metrics on synthetic clips (real) ---------------------------------------------------------------------


def test_flow_metrics_rank_synthetic_defects() -> None:
    suite = defect_suite(3, frames=16, height=96, width=160)
    reward = AnimeReward.from_folder(None)
    assert reward.dimensions == FLOW_DIMENSIONS
    results = dict(zip(suite, reward.score_batch(list(suite.values())), strict=True))
    clean = results["clean"].scores
    for defect in ("flicker", "jitter", "distortion"):
        assert results[defect].scores["flow_smoothness"] < clean["flow_smoothness"], defect
    assert results["static"].scores["flow_motion"] < 0.05 < clean["flow_motion"]
    assert results["static"].scores["flow_smoothness"] >= clean["flow_smoothness"]


# -- batching --------------------------------------------------------------------------------------------------


def test_score_and_score_batch_give_the_same_numbers(idefics2_root: Path) -> None:
    reward = AnimeReward.from_folder(idefics2_root)
    clips = [make_clip(0, frames=30, height=64, width=128), make_clip(1, frames=1, height=48, width=48),
             make_clip(2, frames=5, height=56, width=40)]
    prompts = [PROMPT, "a red robot jumps over a river at night, camera pans left", PROMPT]
    batched = reward.score_batch(clips, prompts=prompts, batch_size=2)
    for clip, prompt, b in zip(clips, prompts, batched, strict=True):
        one = reward.score(clip, prompt=prompt)
        assert one.scores.keys() == b.scores.keys()
        for d in one.scores:
            assert abs(one.scores[d] - b.scores[d]) <= 1e-5, (d, one.scores[d], b.scores[d])
        assert abs(one.total - b.total) <= 1e-5
        for d in IDEFICS2:
            assert abs(one.extras[d]["raw_score"] - b.extras[d]["raw_score"]) <= 1e-5


def test_chunks_progress_and_cancel() -> None:
    reward, events = stub_reward("visual_motion", "flow_motion")
    seen: list[tuple[str, int, int]] = []
    reward.score_batch([make_clip(i, frames=3, height=16, width=16) for i in range(5)], batch_size=2,
                       hooks=CallbackHooks(on_progress=lambda d, done, total: seen.append((d, done, total))))
    assert seen == [("visual_motion", 2, 5), ("visual_motion", 4, 5), ("visual_motion", 5, 5),
                    ("flow_motion", 2, 5), ("flow_motion", 4, 5), ("flow_motion", 5, 5)]
    assert [e[2] for e in events if e[0] == "forward"] == [2, 2, 1, 2, 2, 1]  # one batched forward per chunk

    class Interrupted(BaseException):  # like ComfyUI's interrupt on current releases
        pass

    chunks_done = []

    def should_stop() -> None:  # Cancel pressed once the first chunk is done (it is also checked mid-forward)
        if chunks_done:
            raise Interrupted

    events.clear()
    with pytest.raises(Interrupted):
        reward.score_batch([make_clip(i, frames=3, height=16, width=16) for i in range(5)], batch_size=2,
                           hooks=CallbackHooks(on_should_stop=should_stop,
                                               on_progress=lambda *_: chunks_done.append(1)))
    # stopped before the second chunk's forward; its preprocess may have started beside the first forward
    assert [e[0] for e in events if e[0] == "forward"] == ["forward"]
    assert 1 <= sum(e[0] == "preprocess" for e in events) <= 2


def test_next_chunk_is_preprocessed_while_the_current_forward_runs() -> None:
    """Each forward waits (up to 5 s) for the next chunk's preprocess to start: only an overlap lets it go."""
    import threading

    started = [threading.Event() for _ in range(4)]
    calls = {"pre": 0, "fwd": 0, "waited": []}

    class Overlap(Stub):
        def preprocess(self, batch: ClipBatch) -> dict[str, torch.Tensor]:
            started[calls["pre"]].set()
            calls["pre"] += 1
            return super().preprocess(batch)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            k = calls["fwd"]
            calls["fwd"] += 1
            if k + 1 < len(started):
                off_cpu = any(p.device.type != "cpu" for p in self.parameters())
                expect = reward.prefetch is True or (reward.prefetch == "auto" and off_cpu)
                calls["waited"].append(started[k + 1].wait(5 if expect else 0.2))
            return super().forward(x)

    events: list = []
    reward = AnimeReward(["visual_motion", "visual_appeal"],
                         builders=dict.fromkeys(["visual_motion", "visual_appeal"],
                                                lambda name, w, **k: Overlap(name, events)))
    assert reward.prefetch == "auto"  # these stubs run on the CPU: auto would not overlap them
    reward.prefetch = True
    clips = [make_clip(i, frames=3, height=16, width=16) for i in range(2)]
    overlapped = reward.score_batch(clips, prompts="p", batch_size=1)
    assert calls["waited"] == [True, True, True]  # chunk k+1 (also of the next dimension) began during forward k
    reward.prefetch = False
    for ev in started:
        ev.clear()
    calls.update(pre=0, fwd=0, waited=[])
    serial = reward.score_batch(clips, prompts="p", batch_size=1)
    assert calls["waited"] == [False, False, False]
    assert [r.to_dict() for r in serial] == [r.to_dict() for r in overlapped]
    reward.prefetch = "auto"
    for ev in started:
        ev.clear()
    calls.update(pre=0, fwd=0, waited=[])
    reward.score_batch(clips, prompts="p", batch_size=1)
    assert calls["waited"] == [False, False, False]  # CPU forwards: no overlap
    for m in reward.loaded().values():  # a module on an accelerator ("meta" stands in for a GPU here)
        m.w = nn.Parameter(torch.empty((), device="meta"))
    for ev in started:
        ev.clear()
    calls.update(pre=0, fwd=0, waited=[])
    reward.score_batch(clips, prompts="p", batch_size=1)
    assert calls["waited"] == [True, True, True]  # auto overlaps forwards that run off the CPU
    reward.prefetch = "sometimes"
    with pytest.raises(ValueError, match="prefetch"):
        reward.score_batch(clips, prompts="p", batch_size=1)


def test_prefetched_inputs_are_redone_when_the_hook_moves_the_module() -> None:
    """ComfyUI's model management moves a scorer in before_forward; inputs made before must not be used."""

    class Placed(Stub):
        def __init__(self, name: str, events: list) -> None:
            super().__init__(name, events)
            self.w = nn.Parameter(torch.ones(()))

        def preprocess(self, batch: ClipBatch) -> dict[str, torch.Tensor]:
            out = super().preprocess(batch)
            return {"x": out["x"].to(self.w.dtype)}

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            assert x.dtype == self.w.dtype, "inputs made for another placement"
            return super().forward(x).float()

    events: list = []
    dims = ["visual_motion", "visual_appeal"]
    reward = AnimeReward(dims, builders=dict.fromkeys(dims, lambda name, w, **k: Placed(name, events)))
    reward.prefetch = True
    hooks = CallbackHooks(on_before_forward=lambda name, m, _: m.to(torch.float64) if name == "visual_appeal" else None)
    result = reward.score(make_clip(0, frames=3, height=16, width=16), prompt="p", hooks=hooks)
    assert result.scores == {"visual_motion": 0.5, "visual_appeal": 0.5}
    pre = [e[1] for e in events if e[0] == "preprocess"]
    assert pre == ["visual_motion", "visual_appeal", "visual_appeal"]  # prefetched at float32, made again


def test_keep_loaded_false_releases_each_dimension_after_its_batch() -> None:
    reward, events = stub_reward("visual_motion", "text_video_consistency", keep_loaded=False)
    resident: list[list[str]] = []
    hooks = CallbackHooks(on_before_forward=lambda name, m, _: resident.append(sorted(reward.loaded())))
    reward.score(make_clip(0, frames=3, height=16, width=16), prompt="p", hooks=hooks)
    assert resident == [["visual_motion"], ["text_video_consistency"]]  # one at a time
    assert reward.loaded() == {}
    reward.score(make_clip(0, frames=3, height=16, width=16), prompt="p", hooks=hooks)
    assert [e[1] for e in events if e[0] == "build"] == ["visual_motion", "text_video_consistency"] * 2
    reward.prefetch = True  # even forced, the next dimension is not built before this one is released
    resident.clear()
    reward.score(make_clip(0, frames=3, height=16, width=16), prompt="p", hooks=hooks)
    assert resident == [["visual_motion"], ["text_video_consistency"]] and reward.loaded() == {}

    def fail(name: str, m: nn.Module, _shape: object) -> None:
        if name == "text_video_consistency":
            raise RuntimeError("out of memory")

    with pytest.raises(RuntimeError, match="out of memory"):
        reward.score(make_clip(0, frames=3, height=16, width=16), prompt="p",
                     hooks=CallbackHooks(on_before_forward=fail))
    assert reward.loaded() == {}  # a failed call leaves nothing resident either


def test_before_forward_runs_before_preprocess_and_inputs_follow_the_module(idefics2_root: Path) -> None:
    """The hook may move/cast the module (ComfyUI's model management does); preprocess must follow it."""
    reward, events = stub_reward("visual_motion")
    reward.score(make_clip(0, frames=2, height=16, width=16),
                 hooks=CallbackHooks(on_before_forward=lambda name, m, _: events.append(("hook", name, None))))
    assert [e[0] for e in events] == ["build", "hook", "preprocess", "forward"]

    real = AnimeReward.from_folder(idefics2_root, ["visual_appeal"])
    clip = make_clip(0, frames=3, height=48, width=64)
    reference = real.score(clip, prompt=PROMPT).scores["visual_appeal"]
    real.release()
    move = CallbackHooks(on_before_forward=lambda name, m, _: m.to(torch.float64))  # as a move to another device
    moved = real.score(clip, prompt=PROMPT, hooks=move).scores["visual_appeal"]
    assert real.scorer("visual_appeal").dtype == torch.float64
    assert moved == pytest.approx(reference, abs=1e-4)


def test_scorer_contract_violations_name_the_dimension() -> None:
    reward, _ = stub_reward("visual_motion", bad={"visual_motion": "shape"})
    with pytest.raises(RuntimeError, match=r"visual_motion: the scorer returned \(1,\) for 2 clips"):
        reward.score_batch([make_clip(0, frames=2), make_clip(1, frames=2)])
    reward, _ = stub_reward("visual_motion", bad={"visual_motion": "nan"})
    with pytest.raises(RuntimeError, match=r"visual_motion: non-finite score for clip\(s\) \[0\]"):
        reward.score(make_clip(0, frames=2))


def test_dimensions_subset_per_call() -> None:
    reward = AnimeReward.from_folder(None)
    result = reward.score_batch([make_clip(0, frames=4)], dimensions=["flow_motion"])[0]
    assert list(result.scores) == ["flow_motion"] and result.weights == {"flow_motion": 1.0}
    with pytest.raises(ValueError, match=r"dimensions: \['visual_appeal'\] not enabled"):
        reward.score(make_clip(0, frames=4), dimensions=["visual_appeal"])
    with pytest.raises(RuntimeError, match="the builder for flow_motion returned a scorer named 'flow_smoothness'"):
        AnimeReward(["flow_motion"], builders={"flow_motion": lambda n, w, **k: Stub("flow_smoothness", [])}
                    ).score(make_clip(0, frames=2))


# -- weights ---------------------------------------------------------------------------------------------------


def test_weights_default_user_and_errors() -> None:
    reward, _ = stub_reward("visual_motion", "visual_appeal", "flow_motion",
                            values={"visual_motion": 0.2, "visual_appeal": 0.6, "flow_motion": 1.0})
    clip = make_clip(0, frames=2, height=16, width=16)
    equal = reward.score(clip, prompt="p")
    assert equal.weights == pytest.approx(dict.fromkeys(["visual_motion", "visual_appeal", "flow_motion"], 1 / 3))
    assert equal.total == pytest.approx((0.2 + 0.6 + 1.0) / 3)
    weighted = reward.score(clip, prompt="p", weights={"visual_motion": 2.0, "flow_motion": 0.0})
    assert weighted.weights == pytest.approx({"visual_motion": 2 / 3, "visual_appeal": 1 / 3, "flow_motion": 0.0})
    assert weighted.total == pytest.approx(0.2 * 2 / 3 + 0.6 / 3)
    assert sum(weighted.weights.values()) == pytest.approx(1.0)

    with pytest.raises(ValueError, match=r"weights: unknown dimension name\(s\) \['visual_apeal'\]"):
        reward.score(clip, prompt="p", weights={"visual_apeal": 1.0})
    with pytest.raises(ValueError, match=r"weights: all weights are 0"):
        reward.score(clip, prompt="p", weights=dict.fromkeys(["visual_motion", "visual_appeal", "flow_motion"], 0))
    with pytest.raises(ValueError, match=r"weights given for dimension\(s\) \['flow_smoothness'\] that are not enabled"):
        reward.score(clip, prompt="p", weights={"flow_smoothness": 1.0})
    with pytest.raises(ValueError, match=r"weights\['visual_motion'\]: a weight must be a finite number >= 0, got -1"):
        reward.score(clip, prompt="p", weights={"visual_motion": -1})
    with pytest.raises(ValueError, match=r"weights\['visual_motion'\]: a weight must be a finite number >= 0, got nan"):
        resolve_weights({"visual_motion": float("nan")}, ["visual_motion"])
    with pytest.raises(ValueError, match=r"weights\['visual_motion'\]: a weight must be a number"):
        resolve_weights({"visual_motion": "heavy"}, ["visual_motion"])

    with pytest.raises(ValueError, match=r"not enabled"):  # checked when the reward is made, not at first score
        AnimeReward.from_folder(None, weights={"visual_appeal": 1.0})
    default = AnimeReward.from_folder(None, weights={"flow_motion": 3.0})
    assert default.score(make_clip(0, frames=3)).weights == {"flow_smoothness": 0.25, "flow_motion": 0.75}
    only_motion = default.score_batch([make_clip(0, frames=3)], dimensions=["flow_smoothness"])[0]
    assert only_motion.weights == {"flow_smoothness": 1.0}  # defaults follow the dimensions of the call


# -- missing files and unavailable dimensions ---------------------------------------------------------------------


def test_missing_files_one_error_lists_everything(tmp_path: Path) -> None:
    ow.make_root(tmp_path, ("visual_appeal",), layout="official")  # one present, four missing
    wanted = [d for d in OFFICIAL_FILES if d != "visual_appeal"]
    expected = missing_files(tmp_path, wanted)
    with pytest.raises(MissingWeightsError) as err:
        AnimeReward.from_folder(tmp_path, [*OFFICIAL_FILES, "flow_motion"])
    msg = str(err.value)
    assert set(err.value.missing) == set(wanted)
    for d in wanted:
        assert expected[d] and all(f"{d}: {p}" in msg for p in expected[d])
        assert OFFICIAL_FILES[d].official in msg
    assert "visual_appeal:" not in msg.split("\n", 1)[0] and WEIGHTS_SOURCE in msg

    with pytest.raises(MissingWeightsError, match="no weights folder was given") as err:
        AnimeReward.from_folder(None, ["visual_motion", "text_video_consistency"])
    assert "weights/testvl-pre76-top187-rec69.pth" in str(err.value)
    assert "weights/Pretrain_text_humangt_meanvideo_trainset_wGT_random_samescore/checkpoint_05.pth" in str(err.value)

    with pytest.raises(FileNotFoundError, match=r"^root: the weights folder .*nope does not exist"):
        AnimeReward.from_folder(tmp_path / "nope")
    empty = tmp_path / "empty"
    empty.mkdir()
    assert AnimeReward.from_folder(empty).dimensions == FLOW_DIMENSIONS  # dimensions=None: what is present
    assert AnimeReward.from_folder(tmp_path).dimensions == ("visual_appeal", *FLOW_DIMENSIONS)


def test_a_named_dimension_without_implementation_is_not_available() -> None:
    from animereward import dimensions as registry
    from animereward.dimensions import Dimension

    with registry.registered(Dimension("future_dim", None, "consistency", "Future", "future")):
        for call in (lambda: AnimeReward.from_folder(None, ["future_dim", "flow_motion"]),
                     lambda: AnimeReward(["future_dim"]),
                     lambda: AnimeReward.from_folder(None).scorer("future_dim"),
                     lambda: AnimeReward.from_folder(None).score(make_clip(0, frames=2), dimensions=["future_dim"])):
            with pytest.raises(DimensionNotAvailableError, match="future_dim is not available yet: it has no "
                                                                 "implementation"):
                call()
    with pytest.raises(ValueError, match=r"unknown AnimeReward dimension\(s\) \['motion'\]"):
        AnimeReward.from_folder(None, ["motion"])
    with pytest.raises(ValueError, match="no dimension enabled"):
        AnimeReward.from_folder(None, [])


def test_quantization_is_checked_when_the_reward_is_made(idefics2_root: Path) -> None:
    with pytest.raises(ValueError, match=r"quantization: expected one of \(None, '8bit', '4bit'\), got '16bit'"):
        AnimeReward.from_folder(None, quantization="16bit")
    with pytest.raises(ValueError, match=r"quantization='8bit' .* needs|loads the weights straight onto a CUDA GPU"):
        AnimeReward.from_folder(idefics2_root, ["visual_appeal"], quantization="8bit", device="cpu")
    assert AnimeReward.from_folder(idefics2_root, ["flow_motion"], quantization="4bit").quantization == "4bit"


# -- results ---------------------------------------------------------------------------------------------------


def test_json_schema_is_stable_and_round_trips() -> None:
    reward, _ = stub_reward("visual_smoothness", "image_video_consistency", "flow_smoothness",
                            values={"visual_smoothness": 0.25, "image_video_consistency": 0.5, "flow_smoothness": 1.0})
    clip = make_clip(0, frames=2, height=16, width=16)
    result = reward.score(clip, prompt="p", first_frame=clip[0], weights={"flow_smoothness": 2})
    data = json.loads(result.to_json())
    assert list(data) == ["total", "scores", "weights", "official", "extras", "unscored"]
    assert data == result.to_dict()
    assert data["scores"] == {"visual_smoothness": 0.25, "image_video_consistency": 0.5, "flow_smoothness": 1.0}
    assert data["official"] == {"visual_smooth": 0.25, "img-video_consist": 0.5}  # no flow metrics
    assert data["weights"] == {"visual_smoothness": 0.25, "image_video_consistency": 0.25, "flow_smoothness": 0.5}
    assert data["total"] == pytest.approx(0.25 * 0.25 + 0.5 * 0.25 + 1.0 * 0.5)
    assert data["extras"] == {} and data["unscored"] == {}
    assert all(isinstance(v, float) for part in ("scores", "weights", "official") for v in data[part].values())
    again = RewardScores.from_dict(data)
    assert again == result and again.to_json() == result.to_json()
    assert json.loads(result.to_json(indent=2)) == data
