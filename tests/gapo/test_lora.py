"""LoRA: LoRA off is the base model bit for bit, zero-initialised LoRA on too; the saved format is ComfyUI's;
hooks work on ComfyUI's own layer classes with fp8 weights; continuing a LoRA keeps it as the reference."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from gapo_testkit.tiny_video import TinyWanModel
from torch import nn

from gapo_trainer.lora import DEFAULT_TARGETS, LoraConfig, attach_lora, find_targets

BACKENDS = ["peft", "hooks"]


def inputs(seed: int = 1, batch: int = 2):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(batch, 4, 3, 8, 8, generator=g), torch.rand(batch, generator=g) * 1000,
            torch.randn(batch, 5, 32, generator=g))


def model(seed: int = 0) -> TinyWanModel:
    torch.manual_seed(seed)
    return TinyWanModel()


def nudge(lora) -> None:
    """Move the LoRA away from zero as one optimizer step would."""
    with torch.no_grad():
        for p in lora.parameters():
            p.add_(torch.randn_like(p) * 0.05)


def test_default_targets_are_attention_and_ffn_of_each_block():
    names = [n for n, _ in find_targets(model(), DEFAULT_TARGETS)]
    per_block = [f"self_attn.{x}" for x in "qkvo"] + [f"cross_attn.{x}" for x in "qkvo"] + ["ffn.0", "ffn.2"]
    assert names == [f"blocks.{b}.{s}" for b in range(2) for s in per_block]


@pytest.mark.parametrize("backend", BACKENDS)
def test_lora_off_and_zero_init_are_bit_identical_to_the_base(backend):
    m = model()
    x, t, ctx = inputs()
    with torch.no_grad():
        base = m(x, t, ctx)
    lora = attach_lora(m, LoraConfig(rank=4, dropout=0.2, backend=backend))
    assert lora.backend == backend
    with torch.no_grad():
        assert torch.equal(m(x, t, ctx), base), "zero-initialised up weights must not change a bit"
        nudge(lora)
        on = m(x, t, ctx)
        with lora.disabled():
            off = m(x, t, ctx)
    assert not torch.allclose(on, base)
    assert torch.equal(off, base)
    lora.remove()
    with torch.no_grad():
        assert torch.equal(m(x, t, ctx), base)
    assert [n for n, _ in m.named_parameters()] == [n for n, _ in model().named_parameters()]


@pytest.mark.parametrize("backend", BACKENDS)
def test_only_lora_weights_train_and_both_backends_agree(backend):
    torch.manual_seed(5)
    ref = {}
    results = {}
    for b in BACKENDS:
        m = model()
        lora = attach_lora(m, LoraConfig(rank=4, alpha=8.0, backend=b))
        if not ref:
            ref = lora.state_dict()
        lora.load_state_dict({k: (v + 0.01 if k.endswith("up.weight") else v) for k, v in ref.items()})
        x, t, ctx = inputs()
        out = m(x, t, ctx)
        out.square().mean().backward()
        results[b] = (out.detach(), [p.grad.clone() for p in lora.parameters()])
        assert all(p.grad is None for p in m.parameters() if not any(p is q for q in lora.parameters()))
    torch.testing.assert_close(results["peft"][0], results["hooks"][0], rtol=1e-5, atol=1e-6)
    for a, b in zip(results["peft"][1], results["hooks"][1], strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("backend", BACKENDS)
def test_state_dict_is_comfyui_format_and_round_trips(backend):
    lora = attach_lora(model(), LoraConfig(rank=3, alpha=6.0, key_prefix="diffusion_model.", backend=backend))
    nudge(lora)
    sd = lora.state_dict()
    assert len(sd) == 20 * 3
    assert sd["diffusion_model.blocks.1.ffn.2.lora_down.weight"].shape == (3, 128)
    assert sd["diffusion_model.blocks.1.ffn.2.lora_up.weight"].shape == (64, 3)
    assert sd["diffusion_model.blocks.0.self_attn.q.alpha"].item() == 6.0
    other = attach_lora(model(), LoraConfig(rank=3, alpha=6.0, key_prefix="diffusion_model.", backend=backend))
    other.load_state_dict(sd)
    assert all(torch.equal(sd[k], v) for k, v in other.state_dict().items())
    bad = dict(sd)
    bad["diffusion_model.blocks.0.self_attn.q.lora_down.weight"] = torch.zeros(2, 64)
    with pytest.raises(ValueError, match=r"blocks\.0\.self_attn\.q"):
        other.load_state_dict(bad)


def test_no_target_gives_a_clear_error():
    with pytest.raises(ValueError, match="no linear layer matches"):
        attach_lora(model(), LoraConfig(target_modules=(r"nothing\.here",)))


@pytest.mark.parametrize("backend", BACKENDS)
def test_continuing_a_lora_keeps_it_as_the_reference(backend):
    first = attach_lora(model(), LoraConfig(rank=4, backend=backend))
    nudge(first)
    previous = first.state_dict()
    # the model with the previous LoRA, computed by an independent attach (hooks) that is never trained
    m_prev = model()
    attach_lora(m_prev, LoraConfig(backend="hooks"), init_state=previous)
    x, t, ctx = inputs()
    with torch.no_grad():
        expected_ref = m_prev(x, t, ctx)
        base = model()(x, t, ctx)
    m = model()
    lora = attach_lora(m, LoraConfig(rank=16, backend=backend), init_state=previous)
    assert lora.layers[0].rank == 4, "the continued LoRA's rank wins over config.rank"
    with torch.no_grad():
        start_on = m(x, t, ctx)
        with lora.disabled():
            start_off = m(x, t, ctx)
        nudge(lora)
        with lora.disabled():
            after_off = m(x, t, ctx)
        after_on = m(x, t, ctx)
    assert torch.equal(start_on, start_off), "at step 0 the trained model is the reference"
    torch.testing.assert_close(start_off, expected_ref, rtol=1e-5, atol=1e-6)
    assert not torch.allclose(start_off, base)
    assert torch.equal(after_off, start_off), "training must not move the reference"
    assert not torch.allclose(after_on, start_on)


class CastingLinear(nn.Linear):
    """Like ComfyUI's comfy.ops manual_cast Linear: weights kept in a storage dtype, cast on the fly."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        bias = None if self.bias is None else self.bias.to(x.dtype)
        return F.linear(x, self.weight.to(x.dtype), bias)


def test_hooks_on_linear_subclasses_with_fp8_and_bf16_weights():
    m = model()
    for name, mod in list(m.named_modules()):
        for child_name, child in list(mod.named_children()):
            if type(child) is nn.Linear:
                new = CastingLinear(child.in_features, child.out_features)
                dtype = torch.float8_e4m3fn if "attn" in f"{name}.{child_name}" else torch.bfloat16
                new.weight = nn.Parameter(child.weight.detach().to(dtype), requires_grad=False)
                new.bias = nn.Parameter(child.bias.detach().clone())
                setattr(mod, child_name, new)
    x, t, ctx = inputs()
    with torch.no_grad():
        base = m(x, t, ctx)
    lora = attach_lora(m, LoraConfig(rank=4))
    assert lora.backend == "hooks"
    with pytest.raises(ValueError, match="peft LoRA back-end needs plain float"):
        attach_lora(m, LoraConfig(backend="peft"))
    assert all(p.dtype == torch.float32 for p in lora.parameters())
    with torch.no_grad():
        assert torch.equal(m(x, t, ctx), base)
    nudge(lora)
    out = m(x, t, ctx)
    out.square().mean().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in lora.parameters())
    with torch.no_grad(), lora.disabled():
        assert torch.equal(m(x, t, ctx), base)


def test_attach_under_inference_mode_on_an_inference_model():
    """ComfyUI loads and runs models under inference_mode: the LoRA must still train."""
    with torch.inference_mode():
        m = model()
        x, t, ctx = inputs()
        base = m(x, t, ctx)
        lora = attach_lora(m, LoraConfig(rank=2, backend="hooks"))
    with torch.inference_mode(False):
        assert not any(p.is_inference() for p in lora.parameters())
        nudge(lora)
        out = m(x.clone(), t.clone(), ctx.clone())
        out.mean().backward()
        assert all(p.grad is not None for p in lora.parameters())
        with torch.no_grad(), lora.disabled():
            assert torch.equal(m(x.clone(), t.clone(), ctx.clone()), base)


@pytest.mark.comfy
def test_comfyui_wan_model_fp8_weights_and_lora_loader_round_trip(comfy):
    """On ComfyUI's own WanModel with comfy.ops.manual_cast layers (fp8 block weights): default targets,
    LoRA off bit-identical, and the saved file applied by ComfyUI's LoRA code gives our LoRA-on output."""
    import comfy.ldm.wan.model
    import comfy.lora
    import comfy.ops

    torch.manual_seed(0)
    wan = comfy.ldm.wan.model.WanModel(
        model_type="t2v", dim=64, ffn_dim=128, num_heads=2, num_layers=2, in_dim=4, out_dim=4, text_dim=16,
        freq_dim=32, operations=comfy.ops.manual_cast,
    )
    with torch.no_grad():
        for name, p in wan.named_parameters():
            p.copy_(torch.ones_like(p) if "norm" in name else torch.randn_like(p) * 0.05)
    targets = [n for n, _ in find_targets(wan, DEFAULT_TARGETS)]
    assert len(targets) == 20 and "blocks.1.cross_attn.o" in targets and "blocks.0.ffn.2" in targets
    float_weights = {k: v.clone() for k, v in wan.state_dict().items()}
    x = torch.randn(1, 4, 3, 8, 8)
    ts = torch.tensor([500.0])
    ctx = torch.randn(1, 6, 16)
    with torch.no_grad():
        base = wan(x, ts, ctx)
    lora = attach_lora(wan, LoraConfig(rank=4, alpha=2.0, key_prefix="diffusion_model."))
    assert lora.backend == "hooks"
    nudge(lora)
    with torch.no_grad():
        ours = wan(x, ts, ctx)
        with lora.disabled():
            assert torch.equal(wan(x, ts, ctx), base)

    # ComfyUI's own loader path: key map -> load_lora -> calculate_weight on the float weights
    key_map = {f"diffusion_model.{k[: -len('.weight')]}": f"diffusion_model.{k}" for k in float_weights if k.endswith(".weight")}
    patches = comfy.lora.load_lora(lora.state_dict(), key_map)
    assert len(patches) == 20
    lora.remove()
    patched = dict(float_weights)
    for key, adapter in patches.items():
        k = key[len("diffusion_model."):]
        patched[k] = comfy.lora.calculate_weight([(1.0, adapter, 1.0, None, None)], float_weights[k].clone(), key)
    wan.load_state_dict(patched)
    with torch.no_grad():
        theirs = wan(x, ts, ctx)
    torch.testing.assert_close(theirs, ours, rtol=1e-4, atol=1e-5)

    # fp8 block weights (cast on the fly by manual_cast): LoRA off stays bit-identical, gradients flow
    wan.load_state_dict(float_weights)
    with torch.no_grad():
        for blk in wan.blocks:
            for mod in (blk.self_attn.q, blk.self_attn.k, blk.self_attn.v, blk.self_attn.o, blk.ffn[0], blk.ffn[2]):
                mod.weight = nn.Parameter(mod.weight.to(torch.float8_e4m3fn), requires_grad=False)
        base8 = wan(x, ts, ctx)
    lora8 = attach_lora(wan, LoraConfig(rank=4))
    nudge(lora8)
    wan(x, ts, ctx).square().mean().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in lora8.parameters())
    with torch.no_grad(), lora8.disabled():
        assert torch.equal(wan(x, ts, ctx), base8)
