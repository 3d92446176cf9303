"""The training loop on a tiny Wan-shaped video denoiser: objectives, inference mode, exact resume, stop,
NaN handling, gradient checkpointing and the schedule."""

from __future__ import annotations

import itertools
import json
import math

import pytest
import torch
from gapo_testkit.tiny_video import ListPairs, TinyVideoDenoiser, TinyWanModel
from safetensors.torch import load_file

from gapo_trainer import checkpoint as ckpt
from gapo_trainer.grad_checkpoint import checkpoint_modules
from gapo_trainer.loop import NonFiniteLossError, TrainConfig, Trainer, pair_losses, train
from gapo_trainer.lora import LoraConfig, attach_lora
from gapo_trainer.losses import LN2, MetricsAccumulator, gap_weight, preference_loss
from gapo_trainer.protocols import Denoiser, LoraAdapter, PairExample, SupportsGradientCheckpointing
from gapo_trainer.schedule import lr_at, resolve_optimizer


def make_pairs(n: int = 5, seed: int = 3) -> ListPairs:
    g = torch.Generator().manual_seed(seed)
    out = []
    for i in range(n):
        s_w = 0.5 + 0.5 * torch.rand(1, generator=g).item()
        out.append(PairExample(
            f"pair{i}", torch.randn(4, 3, 8, 8, generator=g), torch.randn(4, 3, 8, 8, generator=g),
            torch.randn(5, 32, generator=g), s_w, s_w * torch.rand(1, generator=g).item(),
        ))
    return ListPairs(out)


def setup(prediction: str = "flow", dropout: float = 0.0, backend: str = "auto", seed: int = 0):
    torch.manual_seed(seed)
    model = TinyWanModel()
    den = TinyVideoDenoiser(model, prediction, shift=3.0)
    lora = attach_lora(model, LoraConfig(rank=4, dropout=dropout, backend=backend))
    return den, lora


def config(**kw) -> TrainConfig:
    base = dict(steps=6, learning_rate=2e-3, beta=500.0, warmup_steps=1, seed=11)
    base.update(kw)
    return TrainConfig(**base)


def test_tiny_denoiser_implements_the_protocols():
    den, lora = setup()
    assert isinstance(den, Denoiser) and isinstance(den, SupportsGradientCheckpointing)
    assert isinstance(lora, LoraAdapter)


@pytest.mark.parametrize(("objective", "prediction"),
                         [("gapo", "flow"), ("dpo", "flow"), ("sft", "flow"), ("gapo", "eps"), ("sft", "v")])
def test_objectives_train_under_inference_mode(objective, prediction):
    den, lora = setup(prediction)
    before = {k: v.clone() for k, v in lora.state_dict().items()}
    pairs = make_pairs(3)
    with torch.inference_mode():  # as ComfyUI's executor calls nodes
        pairs = ListPairs([PairExample(p.pair_id, p.x0_winner.clone(), p.x0_loser.clone(), p.cond.clone(),
                                       p.s_winner, p.s_loser) for p in pairs.examples])
        assert pairs[0].x0_winner.is_inference()
        result = train(den, lora, pairs, config(steps=3, objective=objective))
    assert result.status == "completed" and result.steps_done == 3 and result.optimizer == "adamw"
    assert all(math.isfinite(m.loss) for m in result.history)
    assert any(not torch.equal(before[k], v) for k, v in lora.state_dict().items())
    first = result.history[0]
    if objective == "sft":
        assert first.reference_loss is None and first.implicit_accuracy is None
    else:
        assert first.reference_loss == pytest.approx(first.policy_loss, rel=1e-6)
        assert first.margin == 0.0 and first.implicit_accuracy == 0.0


def test_first_step_loss_is_gap_times_ln2_through_the_model():
    """At step 0 the LoRA is zero, the trained model is the reference: loss = g(s_w, s_l) · ln 2 exactly."""
    den, lora = setup()
    pairs = make_pairs(4)
    trainer = Trainer(den, lora, pairs, config(grad_accum=1))
    pair = pairs[trainer.order[0]]
    m = trainer.run_step()
    g = gap_weight(torch.tensor([pair.s_winner]), torch.tensor([pair.s_loser]), "pow2")
    assert m.loss == float(g * LN2)
    assert m.gap == pytest.approx(float(g))


def test_step_gradient_matches_the_written_formula():
    """The loop's LoRA gradient equals autograd of the written GAPO formula on the same forward."""
    den, lora = setup()
    with torch.no_grad():
        for p in lora.parameters():
            p.add_(torch.randn_like(p) * 0.02)
    pair = make_pairs(1)[0]
    x0 = torch.stack([pair.x0_winner, pair.x0_loser])
    noise = torch.randn(1, *pair.x0_winner.shape).expand_as(x0)
    t = torch.tensor([0.4, 0.4])
    beta = 300.0

    policy, ref = pair_losses(den, lora, x0, pair.cond, noise, t)

    preference_loss(policy[:1], policy[1:], ref[:1], ref[1:], torch.tensor([pair.s_winner]),
                    torch.tensor([pair.s_loser]), beta=beta, gap="pow3").loss.backward()
    ours = [p.grad.clone() for p in lora.parameters()]
    for p in lora.parameters():
        p.grad = None

    x_t = den.add_noise(x0, noise, t)
    target = den.target(x0, noise, t)
    pred = den.predict(x_t, t, pair.cond)
    lw, ll = ((pred - target) ** 2).mean(dim=(1, 2, 3, 4))
    with torch.no_grad(), lora.disabled():
        rpred = den.predict(x_t, t, pair.cond)
    rw, rl = ((rpred - target) ** 2).mean(dim=(1, 2, 3, 4))
    written = (3**pair.s_winner - 3**pair.s_loser) * -torch.log(torch.sigmoid(-beta / 2 * ((lw - ll) - (rw - rl))))
    written.backward()
    for a, p in zip(ours, lora.parameters(), strict=True):
        torch.testing.assert_close(a, p.grad, rtol=1e-4, atol=1e-7)


@pytest.mark.parametrize(("grad_accum", "checkpointing"), [(1, False), (2, True)])
def test_one_sample_at_a_time_gives_the_joint_pair_gradient(grad_accum, checkpointing):
    """The loop sends winner and loser through the trained model one at a time (one graph alive: the memory of
    batch 1); its loss and LoRA gradient are those of one joint forward of the pair, accumulation included."""
    den, lora = setup()
    with torch.no_grad():
        for p in lora.parameters():
            p.add_(torch.randn_like(p) * 0.02)
    pairs = make_pairs(2)
    trainer = Trainer(den, lora, pairs, config(beta=300.0, gap="pow3", grad_accum=grad_accum,
                                               gradient_checkpointing=checkpointing))
    state = trainer.generator.get_state()
    acc = MetricsAccumulator()
    losses = [float(trainer._micro_step(pairs[i], acc)) for i in range(grad_accum)]
    ours = [p.grad.clone() for p in lora.parameters()]
    for p in lora.parameters():
        p.grad = None

    g = torch.Generator().set_state(state)
    for i in range(grad_accum):
        pair = pairs[i]
        x0 = torch.stack([pair.x0_winner, pair.x0_loser])
        noise = torch.randn((1, *pair.x0_winner.shape), generator=g).expand_as(x0)
        t = den.sample_timesteps(1, g).expand(2)
        policy, ref = pair_losses(den, lora, x0, pair.cond, noise, t)  # one B=2 forward with grad
        joint = preference_loss(policy[:1], policy[1:], ref[:1], ref[1:], torch.tensor([pair.s_winner]),
                                torch.tensor([pair.s_loser]), beta=300.0, gap="pow3").loss
        (joint / grad_accum).backward()
        # batch 1 and batch 2 round differently in the last bits of a float32; β/2 = 150 amplifies that
        assert acc.policy[2 * i:2 * i + 2] == pytest.approx(policy.tolist(), rel=1e-6)
        assert acc.reference[2 * i:2 * i + 2] == pytest.approx(ref.tolist(), rel=1e-6)
        assert losses[i] == pytest.approx(float(joint.detach()), rel=1e-4)
    for a, p in zip(ours, lora.parameters(), strict=True):
        torch.testing.assert_close(a, p.grad, rtol=1e-3, atol=1e-6)
    den.set_gradient_checkpointing(False)


def losses_of(result) -> list[float]:
    return [m.loss for m in result.history]


@pytest.mark.parametrize("backend", ["peft", "hooks"])
def test_interrupted_and_resumed_run_gives_the_same_losses(tmp_path, backend):
    """Stop after step 3 of 5 (dropout on, accumulation 2, 5 pairs so epochs wrap), resume: same losses."""
    kw = dict(steps=5, grad_accum=2, checkpoint_every=2)
    den, lora = setup(dropout=0.1, backend=backend)
    full = train(den, lora, make_pairs(), config(**kw, checkpoint_dir=tmp_path / "full"))
    full_lora = lora.state_dict()

    den, lora = setup(dropout=0.1, backend=backend)
    calls = []

    def stop_after_three() -> bool:
        calls.append(1)
        return len(calls) > 3

    first = train(den, lora, make_pairs(), config(**kw, checkpoint_dir=tmp_path / "cut"), should_stop=stop_after_three)
    assert first.status == "stopped" and first.steps_done == 3
    assert first.checkpoint == tmp_path / "cut" / "step-000003"

    torch.manual_seed(1234)  # a fresh process would have another global RNG state: the checkpoint restores it
    den, lora = setup(dropout=0.1, backend=backend, seed=99)  # other base init: the LoRA comes from the file...
    den, lora = setup(dropout=0.1, backend=backend)  # ...but the base model must be the same one
    resumed = train(den, lora, make_pairs(), config(**kw, checkpoint_dir=tmp_path / "cut"), resume_from=tmp_path / "cut")
    assert resumed.status == "completed" and resumed.steps_done == 5
    assert len(resumed.history) == 5
    for a, b in zip(losses_of(full), losses_of(resumed), strict=True):
        assert abs(a - b) <= 1e-5
    assert losses_of(full)[:3] == losses_of(first)
    for k, v in lora.state_dict().items():
        torch.testing.assert_close(v, full_lora[k], rtol=1e-5, atol=1e-7)


def test_checkpoint_files_are_safetensors_and_json(tmp_path):
    den, lora = setup()
    train(den, lora, make_pairs(), config(steps=4, checkpoint_every=1, keep_checkpoints=2, checkpoint_dir=tmp_path))
    assert [p.name for p in ckpt.list_checkpoints(tmp_path)] == ["step-000003", "step-000004"]
    last = tmp_path / "step-000004"
    assert sorted(p.name for p in last.iterdir()) == ["lora.safetensors", "state.json", "state.safetensors"]
    assert load_file(str(last / "lora.safetensors")).keys() == lora.state_dict().keys()
    state = load_file(str(last / "state.safetensors"))
    assert {"rng.loop", "rng.torch"} <= state.keys() and any(k.endswith("exp_avg_sq") for k in state)
    meta = json.loads((last / "state.json").read_text())
    assert meta["step"] == 4 and len(meta["history"]) == 4 and sorted(meta["pairs"]["order"]) == list(range(5))
    assert not list(tmp_path.glob(".tmp-*"))


def test_resume_refuses_other_settings(tmp_path):
    den, lora = setup()
    train(den, lora, make_pairs(), config(steps=2, checkpoint_dir=tmp_path))
    den, lora = setup()
    with pytest.raises(ckpt.CheckpointError, match="beta"):
        train(den, lora, make_pairs(), config(steps=4, beta=100.0), resume_from=tmp_path)
    with pytest.raises(ckpt.CheckpointError, match="pairs"):
        train(den, lora, make_pairs(3), config(steps=2), resume_from=tmp_path)
    with pytest.raises(ckpt.CheckpointError, match="no training checkpoint"):
        train(den, lora, make_pairs(), config(), resume_from=tmp_path / "nowhere")


def test_stop_callback_stops_within_one_step_and_leaves_a_resumable_checkpoint(tmp_path):
    den, lora = setup()
    seen = []
    stop = {"now": False}

    def progress(report):
        seen.append(report.step)
        if report.step == 2:
            stop["now"] = True  # e.g. the user pressed Cancel during step 2

    result = train(den, lora, make_pairs(), config(steps=50, checkpoint_dir=tmp_path), progress=progress,
                   should_stop=lambda: stop["now"])
    assert result.status == "stopped" and result.steps_done == 2 and seen == [1, 2]
    assert result.checkpoint == tmp_path / "step-000002"
    den, lora = setup()
    resumed = train(den, lora, make_pairs(), config(steps=3, checkpoint_dir=tmp_path), resume_from=result.checkpoint)
    assert resumed.steps_done == 3 and [m.step for m in resumed.history] == [1, 2, 3]


class NaNAfter:
    """A denoiser that predicts NaN from its n-th predict call on (a diverging model)."""

    def __init__(self, inner: TinyVideoDenoiser, n: int) -> None:
        self.inner, self.n, self.calls = inner, n, 0
        self.prediction_type = inner.prediction_type

    def sample_timesteps(self, n, generator):
        return self.inner.sample_timesteps(n, generator)

    def add_noise(self, x0, noise, t):
        return self.inner.add_noise(x0, noise, t)

    def target(self, x0, noise, t):
        return self.inner.target(x0, noise, t)

    def predict(self, x_t, t, cond):
        self.calls += 1
        out = self.inner.predict(x_t, t, cond)
        return out * float("nan") if self.calls >= self.n else out


def test_nan_loss_stops_with_a_clear_message_and_keeps_the_last_good_checkpoint(tmp_path):
    den, lora = setup()
    # 4 predicts per GAPO step (reference winner, loser; trained winner, loser): NaN arrives in step 4's trained
    # winner forward
    bad = NaNAfter(den, n=15)
    with pytest.raises(NonFiniteLossError) as info:
        train(bad, lora, make_pairs(), config(steps=6, checkpoint_every=2, checkpoint_dir=tmp_path))
    msg = str(info.value)
    assert "step 4 of 6" in msg and "nan" in msg and "step-000003" in msg and "learning rate" in msg
    assert info.value.checkpoint == tmp_path / "step-000003"
    assert info.value.result.steps_done == 3
    assert all(torch.isfinite(p).all() for p in lora.parameters())
    saved = load_file(str(tmp_path / "step-000003" / "lora.safetensors"))
    assert all(torch.equal(saved[k], v) for k, v in lora.state_dict().items())
    # that checkpoint continues exactly as a run that never hit the NaN
    den2, lora2 = setup()
    clean = train(den2, lora2, make_pairs(), config(steps=6, checkpoint_every=2))
    den3, lora3 = setup()
    resumed = train(den3, lora3, make_pairs(), config(steps=6, checkpoint_every=2, checkpoint_dir=tmp_path),
                    resume_from=tmp_path)
    assert losses_of(resumed) == pytest.approx(losses_of(clean), abs=1e-5)


def test_gradient_checkpointing_gives_the_same_step():
    results = []
    for gc in (False, True):
        den, lora = setup(dropout=0.1)
        r = train(den, lora, make_pairs(), config(steps=2, gradient_checkpointing=gc))
        results.append((losses_of(r), lora.state_dict()))
    assert results[0][0] == pytest.approx(results[1][0], rel=1e-6)
    for k, v in results[0][1].items():
        torch.testing.assert_close(v, results[1][1][k], rtol=1e-5, atol=1e-7)


def test_checkpoint_modules_helper_is_non_reentrant_and_reversible():
    torch.manual_seed(0)
    model = TinyWanModel()
    lora = attach_lora(model, LoraConfig(rank=2, backend="hooks"))
    with torch.no_grad():
        for p in lora.parameters():
            p.add_(0.01)
    x, t, ctx = torch.randn(1, 4, 3, 8, 8), torch.tensor([10.0]), torch.randn(1, 5, 32)
    model(x, t, ctx).sum().backward()
    plain = [p.grad.clone() for p in lora.parameters()]
    for p in lora.parameters():
        p.grad = None
    assert checkpoint_modules(model.blocks, True) == 2 and checkpoint_modules(model.blocks, True) == 0
    model(x, t, ctx).sum().backward()  # inputs need no grad: reentrant checkpointing would give None here
    for a, p in zip(plain, lora.parameters(), strict=True):
        torch.testing.assert_close(a, p.grad, rtol=1e-5, atol=1e-7)
    assert checkpoint_modules(model.blocks, False) == 2
    assert "forward" not in model.blocks[0].__dict__


def test_gradient_checkpointing_needs_a_denoiser_that_offers_it():
    den, lora = setup()
    with pytest.raises(ValueError, match="set_gradient_checkpointing"):
        train(NaNAfter(den, 10**9), lora, make_pairs(), config(gradient_checkpointing=True))


def test_schedule_warmup_then_cosine():
    lrs = [lr_at(s, 1.0, total_steps=10, warmup_steps=2) for s in range(10)]
    assert lrs[:2] == [0.5, 1.0]
    assert lrs[2] == 1.0 and all(a >= b for a, b in itertools.pairwise(lrs[2:]))
    assert lr_at(10, 1.0, 10, 2) == pytest.approx(0.0)
    assert lr_at(5, 1.0, 10, 0, "constant") == 1.0
    assert lr_at(10, 1.0, 10, 0, min_lr_ratio=0.1) == pytest.approx(0.1)


def test_optimizer_choice_on_the_cpu():
    assert resolve_optimizer("auto", torch.device("cpu")) == "adamw"
    with pytest.raises(ValueError, match="needs a CUDA device and bitsandbytes"):
        resolve_optimizer("adamw8bit", torch.device("cpu"))


class _NaNGrad(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        return x.clone()

    @staticmethod
    def backward(ctx, grad):
        return grad * float("nan")


class NaNGradient(NaNAfter):
    """Finite predictions whose gradient is NaN (an overflow in the backward only)."""

    def predict(self, x_t, t, cond):
        out = self.inner.predict(x_t, t, cond)
        return _NaNGrad.apply(out) if torch.is_grad_enabled() else out


def test_nan_gradient_stops_even_without_clipping():
    den, lora = setup()
    before = {k: v.clone() for k, v in lora.state_dict().items()}
    with pytest.raises(NonFiniteLossError, match="gradient norm is nan"):
        train(NaNGradient(den, 0), lora, make_pairs(), config(max_grad_norm=None))
    assert all(torch.equal(before[k], v) for k, v in lora.state_dict().items())


class HostCancel(BaseException):
    """A host's Cancel raised inside a layer (ComfyUI's interrupt is a BaseException on current releases)."""


class CancelAt(NaNAfter):
    """A denoiser whose n-th predict call raises the host's Cancel, mid-step."""

    def predict(self, x_t, t, cond):
        self.calls += 1
        if self.calls == self.n:
            raise HostCancel()
        return self.inner.predict(x_t, t, cond)


def test_an_interrupt_inside_a_step_keeps_a_checkpoint_that_resumes_exactly(tmp_path):
    kw = dict(steps=5, grad_accum=2)
    den, lora = setup()
    full = train(den, lora, make_pairs(), config(**kw, checkpoint_dir=tmp_path / "full"))

    den, lora = setup()
    trainer = Trainer(CancelAt(den, 9), lora, make_pairs(), config(**kw, checkpoint_dir=tmp_path / "cut"))
    with torch.inference_mode(False), torch.enable_grad(), pytest.raises(HostCancel):
        trainer.run(interrupts=(HostCancel,))
    stopped = trainer.result("stopped")
    assert 0 < stopped.steps_done < 5 and stopped.checkpoint is not None

    den, lora = setup()
    resumed = train(den, lora, make_pairs(), config(**kw, checkpoint_dir=tmp_path / "cut"), resume_from=tmp_path / "cut")
    for a, b in zip(losses_of(full), losses_of(resumed), strict=True):
        assert abs(a - b) <= 1e-5
