"""GAPO / Diffusion-DPO / SFT losses against the written formulas (DESIGN §2), on fixed tensors."""

from __future__ import annotations

import math

import pytest
import torch
from gapo_testkit.tiny_video import TinyVideoDenoiser, TinyWanModel

from gapo_trainer.losses import (
    LN2,
    MetricsAccumulator,
    denoising_loss,
    gap_weight,
    preference_loss,
    sft_loss,
)

# Fixed per-sample losses of 4 pairs (policy and reference, winner and loser) and their scores.
LW = torch.tensor([0.101, 0.250, 0.0730, 0.5000], dtype=torch.float64)
LL = torch.tensor([0.103, 0.240, 0.0731, 0.4990], dtype=torch.float64)
RW = torch.tensor([0.102, 0.245, 0.0733, 0.5010], dtype=torch.float64)
RL = torch.tensor([0.102, 0.246, 0.0729, 0.4980], dtype=torch.float64)
SW = torch.tensor([0.90, 0.55, 0.70, 1.00])
SL = torch.tensor([0.10, 0.50, 0.65, 0.00])
BETA = 5000.0


def dpo_written(lw, ll, rw, rl, beta=BETA):
    """Diffusion-DPO per pair, as the official VideoDiffusionLoss writes it."""
    inside = -0.5 * beta * ((lw - ll) - (rw - rl))
    return -torch.log(torch.sigmoid(inside))


GAPS = {
    "none": lambda sw, sl: torch.ones_like(sw),
    "pow2": lambda sw, sl: 2.0**sw - 2.0**sl,
    "pow3": lambda sw, sl: 3.0**sw - 3.0**sl,
    "ratio": lambda sw, sl: 1.0 - 2.0**sl / 2.0**sw,
}


@pytest.mark.parametrize("gap", list(GAPS))
def test_gap_functions_scale_the_written_dpo_loss(gap):
    out = preference_loss(LW, LL, RW, RL, SW, SL, beta=BETA, gap=gap)
    g = GAPS[gap](SW.double(), SL.double())
    expected = g * dpo_written(LW, LL, RW, RL)
    torch.testing.assert_close(out.per_pair.double(), expected, rtol=1e-6, atol=1e-9)
    torch.testing.assert_close(out.loss.double(), expected.mean(), rtol=1e-6, atol=1e-9)
    if gap == "none":  # plain Diffusion-DPO
        torch.testing.assert_close(out.per_pair.double(), dpo_written(LW, LL, RW, RL), rtol=1e-6, atol=1e-9)


def test_gap_values_are_the_official_ones():
    assert gap_weight(torch.tensor(1.0), torch.tensor(0.0), "pow2").item() == pytest.approx(1.0)
    assert gap_weight(torch.tensor(0.6), torch.tensor(0.6), "pow2").item() == 0.0
    assert gap_weight(torch.tensor(1.0), torch.tensor(0.0), "pow3").item() == pytest.approx(2.0)
    assert gap_weight(torch.tensor(1.0), torch.tensor(0.0), "ratio").item() == pytest.approx(0.5)
    with pytest.raises(ValueError, match="unknown gap function"):
        gap_weight(torch.tensor(1.0), torch.tensor(0.0), "pow4")  # type: ignore[arg-type]


@pytest.mark.parametrize("gap", list(GAPS))
def test_gradient_matches_autograd_of_the_written_formula(gap):
    ours_w, ours_l = LW.clone().requires_grad_(), LL.clone().requires_grad_()
    preference_loss(ours_w, ours_l, RW, RL, SW, SL, beta=BETA, gap=gap).loss.backward()
    ref_w, ref_l = LW.clone().requires_grad_(), LL.clone().requires_grad_()
    g = GAPS[gap](SW.double(), SL.double())
    (g * dpo_written(ref_w, ref_l, RW, RL)).mean().backward()
    torch.testing.assert_close(ours_w.grad, ref_w.grad, rtol=1e-6, atol=1e-9)
    torch.testing.assert_close(ours_l.grad, ref_l.grad, rtol=1e-6, atol=1e-9)
    # and the closed form: dL/dL_w = g (1 - σ(inside)) β/2 / P = -dL/dL_l
    inside = -0.5 * BETA * ((LW - LL) - (RW - RL))
    closed = g * (1 - torch.sigmoid(inside)) * 0.5 * BETA / len(LW)
    torch.testing.assert_close(ours_w.grad, closed, rtol=1e-6, atol=1e-9)
    torch.testing.assert_close(ours_l.grad, -closed, rtol=1e-6, atol=1e-9)


def test_reference_losses_carry_no_gradient():
    rw, rl = RW.clone().requires_grad_(), RL.clone().requires_grad_()
    lw = LW.clone().requires_grad_()
    preference_loss(lw, LL, rw, rl, SW, SL).loss.backward()
    assert rw.grad is None and rl.grad is None and lw.grad is not None


@pytest.mark.parametrize("gap", list(GAPS))
def test_at_the_reference_the_loss_is_gap_times_ln2(gap):
    out = preference_loss(LW.float(), LL.float(), LW.float(), LL.float(), SW, SL, gap=gap)
    g = GAPS[gap](SW, SL)
    assert torch.equal(out.inside, torch.zeros(4))
    torch.testing.assert_close(out.per_pair, g * LN2, rtol=0, atol=0)
    assert math.log(2.0) == LN2


def test_per_pair_weights_multiply_each_term():
    w = torch.tensor([1.0, 0.0, 2.0, 0.5])
    out = preference_loss(LW, LL, RW, RL, SW, SL, gap="pow2", weights=w)
    plain = preference_loss(LW, LL, RW, RL, SW, SL, gap="pow2")
    torch.testing.assert_close(out.per_pair, plain.per_pair * w.double())


def test_sft_is_the_mean_winner_loss():
    assert sft_loss(torch.tensor([1.0, 3.0])).item() == 2.0


def test_denoising_loss_is_a_per_sample_mean_in_float32():
    pred = torch.zeros(2, 3, 2, 4, 4, dtype=torch.bfloat16)
    target = torch.ones(2, 3, 2, 4, 4)
    target[1] = 2.0
    out = denoising_loss(pred, target)
    assert out.dtype == torch.float32 and out.tolist() == [1.0, 4.0]
    with pytest.raises(ValueError, match="differ in shape"):
        denoising_loss(pred, target[:1])


def test_v_prediction_loss_is_the_x0_loss_over_one_minus_alpha_bar():
    """The official VideoDiffusionLoss: w·(x0_pred - x0)² with w = 1/(1-ᾱ), for a v-prediction model."""
    torch.manual_seed(0)
    den = TinyVideoDenoiser(TinyWanModel(), "v")
    x0 = torch.randn(2, 4, 3, 8, 8)
    noise = torch.randn(1, 4, 3, 8, 8).expand(2, -1, -1, -1, -1)
    t = torch.tensor([37.0, 812.0])
    x_t = den.add_noise(x0, noise, t)
    with torch.no_grad():
        v_pred = den.predict(x_t, t, torch.randn(5, 32))
    native = denoising_loss(v_pred, den.target(x0, noise, t))
    a = den.alpha_bar(t).view(-1, 1, 1, 1, 1)
    x0_pred = a.sqrt() * x_t - (1 - a).sqrt() * v_pred
    x0_space = ((x0_pred - x0) ** 2 / (1 - a)).reshape(2, -1).mean(1)
    torch.testing.assert_close(native, x0_space, rtol=1e-4, atol=1e-6)
    # and it is not the unweighted x0 loss (the weight matters at these timesteps)
    assert not torch.allclose(native, ((x0_pred - x0) ** 2).reshape(2, -1).mean(1), rtol=1e-2)


def test_metrics_from_inside_terms():
    acc = MetricsAccumulator()
    out = preference_loss(LW, LL, RW, RL, SW, SL, gap="pow2")
    acc.add(out.loss, torch.cat([LW, LL]), torch.cat([RW, RL]), out)
    m = acc.result(step=3, lr=1e-4, grad_norm=0.5)
    inside = -0.5 * BETA * ((LW - LL) - (RW - RL))
    assert m.implicit_accuracy == pytest.approx(float((inside > 0).double().mean()))
    assert m.margin == pytest.approx(float(inside.mean()), rel=1e-5)
    assert m.gap == pytest.approx(float((2.0**SW - 2.0**SL).mean()), rel=1e-6)
    assert m.policy_loss == pytest.approx(float(torch.cat([LW, LL]).mean()))
    assert m.reference_loss == pytest.approx(float(torch.cat([RW, RL]).mean()))
    assert m.loss == pytest.approx(float(out.loss)) and m.step == 3 and m.pairs == 1
