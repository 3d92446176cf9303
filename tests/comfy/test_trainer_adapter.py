"""The ComfyUI side of training: the denoiser adapter on real ComfyUI models, and the LoRA file it writes.

Tiny real models (ComfyUI's own Wan classes, random weights), ComfyUI's own loaders and sampler; predictions
compared in float32.
"""

from __future__ import annotations

import logging
from types import SimpleNamespace

import pytest
import torch
from animereward_testkit.pack import pack_module

pytestmark = pytest.mark.comfy

COND_SHAPE = (1, 8, 4096)
LATENT = [16, 2, 8, 8]  # [C, T, H, W]: 2 latent frames of 8×8 (5 frames of 64×64 pixels)


def _text_cond(seed: int) -> list:
    g = torch.Generator().manual_seed(seed)
    return [[torch.randn(*COND_SHAPE, generator=g) * 0.1, {}]]


@pytest.fixture(scope="module")
def mods(comfy):
    return SimpleNamespace(
        den=pack_module("nodes.comfy_denoiser"),
        lora=pack_module("nodes.comfy_lora"),
        file=pack_module("nodes.lora_file"),
    )


@pytest.fixture(scope="module")
def tiny_wan(tiny_models):
    import comfy.sd

    return comfy.sd.load_diffusion_model(str(tiny_models["unet"]))


def _predict(mods, patcher, conds, x_t, sigma, key="g"):
    """One prediction through the adapter (the sampler's path), outside any training."""
    den = mods.den.ComfyDenoiser(patcher, conds, LATENT)
    return den.run(lambda d: d.predict(x_t, sigma, key).detach().clone())


def _randomise(lora, seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    with torch.inference_mode(False), torch.no_grad():
        for p in lora.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.05)


# ---- every ComfyUI model type: supported with a consistent target, or refused by name -----------------

def test_every_model_type_has_a_target_or_is_refused(mods):
    import comfy.model_base as mb

    config = SimpleNamespace(sampling_settings={"shift": 3.0, "multiplier": 1000})
    g = torch.Generator().manual_seed(0)
    x0, noise = torch.randn(2, 4, 3, 3, generator=g), torch.randn(2, 4, 3, 3, generator=g)
    seen = {}
    for mt in mb.ModelType:
        ms = mb.model_sampling(config, mt)
        patcher = SimpleNamespace(model=SimpleNamespace(model_type=mt), get_model_object=lambda _n, ms=ms: ms)
        try:
            kind = mods.den.prediction_type_of(patcher)
        except mods.den.UnsupportedModelError as e:
            assert mt.name in str(e)
            seen[mt.name] = "refused"
            continue
        seen[mt.name] = kind
        den = object.__new__(mods.den.ComfyDenoiser)  # the maths only: no model behind it
        den._prediction_type, den._model_sampling, den.device = kind, ms, torch.device("cpu")
        den.patcher = SimpleNamespace(model=SimpleNamespace(process_latent_in=lambda x: x))
        sigma = den.sample_timesteps(2, torch.Generator().manual_seed(1))
        assert torch.all(sigma > 0) and torch.isfinite(sigma).all()
        x_t = den.add_noise(x0, noise, sigma)
        # the native target is the output that makes ComfyUI's own calculate_denoised give back x0
        back = ms.calculate_denoised(sigma, den.target(x0, noise, sigma), x_t)
        torch.testing.assert_close(back, x0, atol=1e-4, rtol=1e-4, msg=mt.name)
    assert seen["FLOW"] == "flow" and seen["EPS"] == "eps" and seen["V_PREDICTION"] == "v"
    assert seen["IMG_TO_IMG"] == "refused"


def test_flow_shift_moves_the_sigmas(mods, tiny_wan):
    """Sigmas come from the (patched) model_sampling: a shift node's patch changes their distribution."""
    import comfy_extras.nodes_model_advanced as adv

    shifted = adv.ModelSamplingSD3().patch(tiny_wan, shift=1.0)[0]  # Wan's own shift is 8
    a = mods.den.ComfyDenoiser(tiny_wan, {}, LATENT).sample_timesteps(500, torch.Generator().manual_seed(0))
    b = mods.den.ComfyDenoiser(shifted, {}, LATENT).sample_timesteps(500, torch.Generator().manual_seed(0))
    assert a.mean() > b.mean() + 0.2  # a larger shift pushes flow sigmas towards 1
    assert float(a.max()) <= 1.0 and float(b.max()) <= 1.0


# ---- training on the patched model -----------------------------------------------------------------------

def test_lora_trains_and_disabled_is_the_base(mods, tiny_wan):
    mp = mods.den.training_clone(tiny_wan)
    lora = mods.lora.ComfyLora(mp, rank=4, alpha=4.0, seed=0)
    assert all(k.startswith("blocks.") for k in lora.deltas)
    assert {"blocks.0.self_attn.q", "blocks.1.cross_attn.o", "blocks.1.ffn.2"} <= set(lora.deltas)
    den = mods.den.ComfyDenoiser(mp, {"g": _text_cond(0)}, LATENT, gradient_checkpointing=True)
    g = torch.Generator().manual_seed(0)
    x0 = torch.randn(2, *LATENT, generator=g)

    def body(d):
        opt = torch.optim.AdamW(list(lora.parameters()), lr=1e-2)
        out = []
        for _ in range(3):
            t = d.sample_timesteps(1, g).repeat(2)
            n = torch.randn(x0.shape, generator=g)
            x_t = d.add_noise(x0, n, t)
            pred = d.predict(x_t, t, "g")
            with torch.no_grad(), lora.disabled():
                ref = d.predict(x_t, t, "g")
            loss = torch.nn.functional.mse_loss(pred, d.target(x0, n, t))
            opt.zero_grad()
            loss.backward()
            opt.step()
            out.append((pred.detach(), ref))
        return out

    with torch.inference_mode():  # as inside the executor
        steps = den.run(body, lora.num_parameters)
    assert torch.equal(steps[0][0], steps[0][1])  # zero-initialised up: the LoRA starts as the base
    assert not torch.allclose(steps[2][0], steps[2][1])  # trained: differs from the reference
    # the reference is the base model: the same prediction as the artist's untouched MODEL
    assert all(p.grad is not None for p in lora.parameters())
    # gradient checkpointing patched the shared blocks only during the run
    assert all("forward" not in vars(m) for m in mods.den.block_modules(tiny_wan.model.diffusion_model))


def test_reference_equals_the_untouched_model(mods, tiny_wan):
    mp = mods.den.training_clone(tiny_wan)
    lora = mods.lora.ComfyLora(mp, rank=4, alpha=4.0, seed=0)
    _randomise(lora, 1)
    g = torch.Generator().manual_seed(3)
    x_t, sigma = torch.randn(2, *LATENT, generator=g), torch.tensor([0.7, 0.7])
    conds = {"g": _text_cond(5)}
    with lora.disabled():
        ref = _predict(mods, mp, conds, x_t, sigma)
    base = _predict(mods, tiny_wan, conds, x_t, sigma)
    with_lora = _predict(mods, mp, conds, x_t, sigma)
    torch.testing.assert_close(ref, base, atol=0, rtol=0)
    assert (with_lora - base).abs().max() > 1e-3


def test_the_lora_runs_beside_its_layers(mods, tiny_wan):
    """The LoRA adds its own output to each layer's (ComfyUI's bypass way): backward keeps the layers' own
    weights, never a patched copy of them (which would mean a weight-sized gradient per layer in backward),
    and unloading the clone gives the shared layers their class forward back."""
    mp = mods.den.training_clone(tiny_wan)
    lora = mods.lora.ComfyLora(mp, rank=4, alpha=4.0, seed=0)
    _randomise(lora, 5)
    dm = tiny_wan.model.diffusion_model
    layers = {name: dm.get_submodule(name) for name in lora.deltas}
    weight_shapes = {tuple(m.weight.shape) for m in layers.values()}
    weights = {m.weight.data_ptr() for m in layers.values()}
    saved: list[torch.Tensor] = []

    def keep(t: torch.Tensor) -> torch.Tensor:
        saved.append(t)
        return t

    def body(d):
        x0 = torch.randn(1, *LATENT, generator=torch.Generator().manual_seed(1))
        t = torch.tensor([0.5])
        with torch.autograd.graph.saved_tensors_hooks(keep, lambda t: t):
            pred = d.predict(d.add_noise(x0, torch.randn_like(x0), t), t, "g")
        assert all("forward" in vars(m) for m in layers.values())  # injected while loaded
        pred.square().mean().backward()

    den = mods.den.ComfyDenoiser(mp, {"g": _text_cond(0)}, LATENT)
    with torch.inference_mode():
        den.run(body, lora.num_parameters)
    assert all(p.grad is not None and p.grad.abs().max() > 0 for p in lora.parameters())
    weight_sized = [t for t in saved if tuple(t.shape) in weight_shapes]
    assert weight_sized and all(t.data_ptr() in weights for t in weight_sized)
    _predict(mods, tiny_wan, {"g": _text_cond(0)}, torch.zeros(1, *LATENT), torch.tensor([0.5]))
    assert all("forward" not in vars(m) for m in layers.values())  # ejected when the base model loaded


def test_a_lora_on_top_of_a_trained_one(mods, tiny_wan):
    """Training on the trainer's output MODEL (its LoRA switched on, frozen): the new LoRA's clone keeps the
    first LoRA, its reference (new LoRA off) is that MODEL, and unloading leaves no wrapper behind whichever
    order the two are ejected in."""
    first_mp = mods.den.training_clone(tiny_wan)
    first = mods.lora.ComfyLora(first_mp, rank=4, alpha=4.0, seed=0)
    _randomise(first, 11)
    first.freeze()
    second_mp = mods.den.training_clone(first_mp)
    second = mods.lora.ComfyLora(second_mp, rank=4, alpha=4.0, seed=1)
    conds = {"g": _text_cond(2)}
    g = torch.Generator().manual_seed(12)
    x_t, sigma = torch.randn(1, *LATENT, generator=g), torch.tensor([0.6])

    base = _predict(mods, tiny_wan, conds, x_t, sigma)
    with_first = _predict(mods, first_mp, conds, x_t, sigma)
    assert (with_first - base).abs().max() > 1e-3
    torch.testing.assert_close(_predict(mods, second_mp, conds, x_t, sigma), with_first, atol=0, rtol=0)  # zero-init
    _randomise(second, 13)
    with second.disabled():
        torch.testing.assert_close(_predict(mods, second_mp, conds, x_t, sigma), with_first, atol=0, rtol=0)
    both = _predict(mods, second_mp, conds, x_t, sigma)
    assert (both - with_first).abs().max() > 1e-3
    torch.testing.assert_close(_predict(mods, tiny_wan, conds, x_t, sigma), base, atol=0, rtol=0)  # ejected
    layers = [tiny_wan.model.diffusion_model.get_submodule(n) for n in first.deltas]
    assert all("forward" not in vars(m) for m in layers)
    injections = [inj for key in second_mp.injections for inj in second_mp.injections[key]]
    assert len(injections) == 2
    for order in (list, reversed):  # the two LoRAs' injections, ejected in either order
        for inj in injections:
            inj.inject(second_mp)
        assert all("forward" in vars(m) for m in layers)
        for inj in order(injections):
            inj.eject(second_mp)
        assert all("forward" not in vars(m) for m in layers)


# ---- the LoRA file ---------------------------------------------------------------------------------------

def test_lora_file_loads_in_comfyui_with_the_same_predictions(mods, tiny_wan, comfy_base_dir, caplog):
    import folder_paths

    import nodes as comfy_nodes

    mp = mods.den.training_clone(tiny_wan)
    lora = mods.lora.ComfyLora(mp, rank=4, alpha=2.0, seed=0)
    _randomise(lora, 2)
    loras_dir = comfy_base_dir / "models" / "loras"
    path = mods.file.lora_path(loras_dir, "tests/adapter_lora")
    meta = {"steps": 3, "beta": 5000.0, "objective": "gapo", "gap_function": "pow2", "dataset": "d", "dataset_size": 9,
            "base_model_hash": "sha256:0123", "latent_shape": LATENT}
    mods.file.write_lora(lora.state_dict(), path, meta)
    assert mods.file.read_metadata(path) == meta
    name = path.relative_to(loras_dir).as_posix()
    assert name in folder_paths.get_filename_list("loras")  # what LoraLoaderModelOnly's list shows

    caplog.set_level(logging.WARNING)
    loaded = comfy_nodes.LoraLoaderModelOnly().load_lora_model_only(tiny_wan, name, 1.0)[0]
    assert not [r for r in caplog.records if "lora key not loaded" in r.getMessage()]
    patched_keys = {k for k in loaded.patches if k.endswith(".weight")}
    assert patched_keys == {f"diffusion_model.{n}.weight" for n in lora.deltas}

    g = torch.Generator().manual_seed(4)
    x_t, sigma = torch.randn(2, *LATENT, generator=g), torch.tensor([0.4, 0.4])
    conds = {"g": _text_cond(6)}
    ours = _predict(mods, mp, conds, x_t, sigma)
    theirs = _predict(mods, loaded, conds, x_t, sigma)
    torch.testing.assert_close(theirs, ours, atol=1e-4, rtol=0)
    assert (ours - _predict(mods, tiny_wan, conds, x_t, sigma)).abs().max() > 1e-3


def test_lora_names_are_checked(mods, tmp_path):
    for bad in ("../x", "/abs", "a/../b", "", "x\\y", "a/./b"):
        with pytest.raises(ValueError, match="not a plain file name"):
            mods.file.lora_path(tmp_path, bad)
    first = mods.file.lora_path(tmp_path, "run")
    first.write_bytes(b"x")
    assert mods.file.lora_path(tmp_path, "run").name == "run_00002.safetensors"
    assert mods.file.lora_path(tmp_path, "run", overwrite=True) == first


def test_lora_file_loads_in_diffusers_wan(mods, tiny_wan, tiny_models, comfy_base_dir):
    """The same file through diffusers' loader for original-format Wan LoRAs, into a WanTransformer3DModel
    holding the same base weights: the same predictions as ComfyUI's, with and without the LoRA."""
    import safetensors.torch
    from diffusers import WanPipeline, WanTransformer3DModel
    from diffusers.loaders.single_file_utils import convert_wan_transformer_to_diffusers

    mp = mods.den.training_clone(tiny_wan)
    lora = mods.lora.ComfyLora(mp, rank=4, alpha=2.0, seed=0)
    _randomise(lora, 7)
    path = mods.file.write_lora(lora.state_dict(), comfy_base_dir / "models" / "loras" / "tests" / "for_diffusers.safetensors",
                                {"steps": 1})

    transformer = WanTransformer3DModel(
        patch_size=(1, 2, 2), num_attention_heads=1, attention_head_dim=128, in_channels=16, out_channels=16,
        text_dim=4096, freq_dim=256, ffn_dim=256, num_layers=2, cross_attn_norm=True,
        qk_norm="rms_norm_across_heads", eps=1e-6,
    )
    original = safetensors.torch.load_file(str(tiny_models["unet"]))
    missing, unexpected = transformer.load_state_dict(convert_wan_transformer_to_diffusers(original), strict=True)
    assert not missing and not unexpected
    transformer.eval()

    g = torch.Generator().manual_seed(8)
    x_t, sigma = torch.randn(2, *LATENT, generator=g), torch.tensor([0.6, 0.6])
    cond = _text_cond(9)
    conds = {"g": cond}

    def diffusers_predict() -> torch.Tensor:
        with torch.no_grad():
            return transformer(hidden_states=x_t, timestep=sigma * 1000, encoder_hidden_states=cond[0][0].repeat(2, 1, 1),
                               return_dict=False)[0]

    base_theirs = diffusers_predict()
    torch.testing.assert_close(base_theirs, _predict(mods, tiny_wan, conds, x_t, sigma), atol=1e-4, rtol=1e-4)

    state = WanPipeline.lora_state_dict(str(path))
    WanPipeline.load_lora_into_transformer(state, transformer=transformer)
    lora_theirs = diffusers_predict()
    lora_ours = _predict(mods, mp, conds, x_t, sigma)
    assert (lora_ours - base_theirs).abs().max() > 1e-3
    torch.testing.assert_close(lora_theirs, lora_ours, atol=1e-4, rtol=1e-4)


# ---- fp8 base weights --------------------------------------------------------------------------------------

def test_fp8_base_weights_train(mods, tiny_models):
    """UNETLoader's weight_dtype fp8_e4m3fn: the weights stay fp8 and untouched, the LoRA (float32) trains."""
    import comfy.sd

    fp8 = comfy.sd.load_diffusion_model(str(tiny_models["unet"]), model_options={"dtype": torch.float8_e4m3fn})
    q = fp8.model.diffusion_model.blocks[0].self_attn.q.weight
    assert q.dtype == torch.float8_e4m3fn
    before = q.detach().clone()
    mp = mods.den.training_clone(fp8)
    lora = mods.lora.ComfyLora(mp, rank=4, alpha=4.0, seed=0)
    den = mods.den.ComfyDenoiser(mp, {"g": _text_cond(0)}, LATENT)
    g = torch.Generator().manual_seed(0)
    x0 = torch.randn(2, *LATENT, generator=g)

    def body(d):
        opt = torch.optim.AdamW(list(lora.parameters()), lr=1e-2)
        losses = []
        for _ in range(3):
            t = d.sample_timesteps(1, g).repeat(2)
            n = torch.randn(x0.shape, generator=g)
            loss = torch.nn.functional.mse_loss(d.predict(d.add_noise(x0, n, t), t, "g"), d.target(x0, n, t))
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(loss.item())
        return losses

    with torch.inference_mode():
        losses = den.run(body, lora.num_parameters)
    assert all(torch.isfinite(torch.tensor(losses)))
    assert max(p.abs().max().item() for _, p in lora.state_dict().items() if p.ndim == 2) > 0
    assert any(d.lora_up.abs().max() > 0 for d in lora.deltas.values())
    assert q.dtype == torch.float8_e4m3fn and torch.equal(q.view(torch.uint8), before.view(torch.uint8))


# ---- image-to-video: the replayed conditioning is the one the sampler used --------------------------------

def test_i2v_replay_matches_the_sampler(mods, comfy_base_dir, tiny_models):
    import comfy.clip_vision
    import comfy.sd
    import comfy.utils
    from animereward_testkit.tiny_models import write_tiny_wan_i2v
    from comfy_extras.nodes_wan import WanImageToVideo

    import nodes as comfy_nodes

    model = comfy.sd.load_diffusion_model(str(write_tiny_wan_i2v(comfy_base_dir / "models")))
    assert type(model.model).__name__ == "WAN21" and model.model.image_to_video
    vae = comfy.sd.VAE(sd=comfy.utils.load_torch_file(str(tiny_models["vae"])))
    g = torch.Generator().manual_seed(11)
    clip_vision = comfy.clip_vision.Output()
    clip_vision.penultimate_hidden_states = torch.randn(1, 257, 1280, generator=g)
    start = torch.rand(1, 64, 64, 3, generator=g)
    with torch.inference_mode():  # as inside the executor: the conditioning holds inference tensors
        pos, neg, latent = WanImageToVideo.execute(
            _text_cond(12), _text_cond(13), vae, 64, 64, 5, 1, start_image=start, clip_vision_output=clip_vision,
        ).result
    assert {"concat_latent_image", "concat_mask", "clip_vision_output"} <= set(pos[0][1])

    seen = []

    def record(apply_model, args):
        out = apply_model(args["input"], args["timestep"], **args["c"])
        seen.append((args["input"].clone(), args["timestep"].clone(), out.clone()))
        return out

    watched = model.clone()
    watched.set_model_unet_function_wrapper(record)
    with torch.inference_mode():
        comfy_nodes.common_ksampler(watched, 3, 2, 1.0, "euler", "simple", pos, neg, latent)
    assert len(seen) == 2

    mp = mods.den.training_clone(model)
    mods.lora.ComfyLora(mp, rank=4, alpha=4.0, seed=0)  # zero-initialised: predicts as the base
    den = mods.den.ComfyDenoiser(mp, {"group": pos}, list(latent["samples"].shape[1:]))
    ms = model.get_model_object("model_sampling")

    def replay(d):
        return [d.predict(x, sigma, "group").detach() for x, sigma, _ in seen]

    with torch.inference_mode():
        ours = den.run(replay)
    for (x, sigma, theirs), raw in zip(seen, ours, strict=True):  # the sampler saw denoised latents
        torch.testing.assert_close(ms.calculate_denoised(sigma, raw, x), theirs, atol=1e-5, rtol=1e-5)
    # and the image conditioning matters: without it the prediction differs
    den_text = mods.den.ComfyDenoiser(mp, {"group": [[pos[0][0], {}]]}, list(latent["samples"].shape[1:]))
    with torch.inference_mode():
        text_only = den_text.run(replay)
    assert (text_only[0] - ours[0]).abs().max() > 1e-3


def test_memory_estimate_counts_activations_and_optimizer_state(mods, tiny_wan):
    """What model management is asked for beside the weights: more without checkpointing, and 16 bytes per
    LoRA parameter (value, gradient, two Adam moments in float32)."""
    est = mods.den.training_memory_bytes
    with_gc = est(tiny_wan, LATENT, 2, True, 0)
    without = est(tiny_wan, LATENT, 2, False, 0)
    assert 0 < with_gc < without
    assert est(tiny_wan, LATENT, 2, True, 1000) - with_gc == 16 * 1000
    assert est(tiny_wan, [16, 8, 8, 8], 2, True, 0) > with_gc  # longer clips need more
