"""HunyuanVideo and LTX-Video through the same trainer code as Wan: tiny models of ComfyUI's own classes
(detected by UNETLoader as model_base.HunyuanVideo and model_base.LTXV), sampled, collected and trained
through the real executor; the LoRA loads in LoraLoaderModelOnly with every key and predicts as the trained
MODEL did. And every model ComfyUI can detect is either trainable or refused by name before the first step."""

from __future__ import annotations

import json
import logging

import pytest
from animereward_testkit.collect_workflows import collect, datasets_root
from animereward_testkit.pack import pack_module
from animereward_testkit.reward_workflows import capture, captured
from animereward_testkit.tiny_models import (
    HUNYUAN_POOLED,
    TINY_HUNYUAN_VIDEO,
    TINY_LTXV,
    write_tiny_hunyuan_video,
    write_tiny_ltxv,
)

from gapo_trainer.store import PreferenceStore

pytestmark = pytest.mark.comfy

# per model: its file, what its text encoder adds to the conditioning, its empty latent (3 candidates)
MODELS = {
    "hunyuan_video": (TINY_HUNYUAN_VIDEO, write_tiny_hunyuan_video, "HunyuanVideo", {"pooled": HUNYUAN_POOLED},
                      {"class_type": "EmptyHunyuanLatentVideo", "inputs": {"width": 64, "height": 64, "length": 5,
                                                                            "batch_size": 3}}),
    "ltxv": (TINY_LTXV, write_tiny_ltxv, "LTXV", {"attention_mask": True},
             {"class_type": "EmptyLTXVLatentVideo", "inputs": {"width": 64, "height": 64, "length": 9,
                                                               "batch_size": 3}}),
}


def _graph(kind: str, model: list | None = None, seed: int = 0, batch: int = 3) -> dict:
    """The model, its conditioning, one KSampler run (cfg 1) from its empty latent, the values."""
    name, _, _, cond_extra, empty = MODELS[kind]
    latent = json.loads(json.dumps(empty))
    latent["inputs"]["batch_size"] = batch
    return {
        "1": {"class_type": "UNETLoader", "inputs": {"unet_name": name, "weight_dtype": "default"}},
        "2": {"class_type": "AnimeRewardTestRandomConditioning",
              "inputs": {"seed": seed, "tokens": 8, "width": 4096, **cond_extra}},
        "3": latent,
        "ks": {"class_type": "KSampler", "inputs": {
            "model": model or ["1", 0], "seed": 5 + seed, "steps": 2 if batch > 1 else 1, "cfg": 1.0,
            "sampler_name": "euler", "scheduler": "simple", "positive": ["2", 0], "negative": ["2", 0],
            "latent_image": ["3", 0], "denoise": 1.0}},
        "vals": {"class_type": "AnimeRewardTestLatentValues", "inputs": {"latent": ["ks", 0]}},
        "cap_vals": capture(string=["vals", 0]),
    }


def _values(out: dict) -> list[float]:
    return json.loads(captured(out, "cap_vals")["string"])["values"]


@pytest.mark.parametrize("kind", list(MODELS))
def test_video_model_trains_and_its_lora_loads(comfy, comfy_base_dir, kind, caplog):
    import folder_paths
    from comfy.sd import load_diffusion_model

    import nodes as comfy_nodes

    caplog.set_level(logging.WARNING)
    _, write, model_class, _, _ = MODELS[kind]
    path = write(comfy_base_dir / "models")
    base_model = load_diffusion_model(str(path))
    assert type(base_model.model).__name__ == model_class
    dataset = f"trainer_{kind}"
    store = PreferenceStore(datasets_root(comfy_base_dir))
    for g in range(2):  # two groups of 3 candidates, different prompts and seeds
        wf = _graph(kind, seed=g)
        wf["img"] = {"class_type": "EmptyImage", "inputs": {"width": 32, "height": 32, "batch_size": 9, "color": 0}}
        wf["30"] = collect(dataset, latents=["ks", 0], frames=["img", 0], positive=["2", 0], negative=["2", 0],
                           model=["1", 0])
        comfy.run(wf)
        gid = next(d for e, d in comfy.server.messages if e == "animereward.collect")["collect"]["group_id"]
        store.set_ranking(dataset, gid, [2, 0, 1])

    trainer = {"class_type": "AnimeRewardGAPOTrainer", "inputs": {
        "model": ["1", 0], "dataset": dataset, "steps": 2, "learning_rate": 1e-2, "rank": 4, "alpha": 4.0,
        "beta": 0.0, "objective": "gapo", "gap_function": "pow2", "pair_mode": "all", "min_gap": 0.0,
        "pairs_per_step": 1, "gradient_accumulation": 1, "seed": 0, "gradient_checkpointing": True,
        "save_every": 0, "lora_name": f"tests/{kind}", "resume": False}}
    wf = _graph(kind, model=["t", 0], seed=7, batch=1)
    wf |= {"t": trainer, "c": capture(string=["t", 1]), "m": capture(string=["t", 3])}
    out = comfy.run(wf)
    lora_file = captured(out, "c")["string"]
    metrics = json.loads(captured(out, "m")["string"])
    assert [h["step"] for h in metrics["history"]] == [1, 2]
    assert metrics["settings"]["prediction_type"] == "flow" and metrics["settings"]["base_model_type"] == model_class
    assert all(h["loss"] == h["loss"] for h in metrics["history"])  # finite
    trained = _values(out)
    # its blocks change saved tensors in place: the first backward is refused, the run goes again with copies
    assert [r for r in caplog.records if "changes tensors in place" in r.getMessage()]

    # the file: ComfyUI's format, every layer of the repeated blocks; LoraLoaderModelOnly loads every key
    lora_mod = pack_module("nodes.comfy_lora")
    targets = lora_mod.lora_targets(base_model.model)
    caplog.clear()
    loaded = comfy_nodes.LoraLoaderModelOnly().load_lora_model_only(base_model, lora_file, 1.0)[0]
    assert not [r for r in caplog.records if "lora key not loaded" in r.getMessage()]
    assert {k for k in loaded.patches} == {f"diffusion_model.{t}.weight" for t in targets}
    assert folder_paths.get_full_path("loras", lora_file)

    # and through the executor, the loaded LoRA predicts what the trainer's MODEL output predicted
    wf = _graph(kind, model=["l", 0], seed=7, batch=1)
    wf["l"] = {"class_type": "LoraLoaderModelOnly", "inputs": {"model": ["1", 0], "lora_name": lora_file,
                                                               "strength_model": 1.0}}
    via_loader = _values(comfy.run(wf))
    base = _values(comfy.run(_graph(kind, seed=7, batch=1)))
    diff = max(abs(a - b) for a, b in zip(via_loader, trained, strict=True))
    moved = max(abs(a - b) for a, b in zip(base, trained, strict=True))
    assert diff <= 1e-4 < moved


ADAPTER = {  # conditioning extras as the model's text encoder gives them, and a latent [C, T, H, W]
    "hunyuan_video": ({"pooled_output": (1, HUNYUAN_POOLED)}, [16, 2, 8, 8]),
    "ltxv": ({"attention_mask": None}, [128, 2, 2, 2]),
}


@pytest.mark.parametrize("checkpointing", [False, True], ids=["plain", "checkpointed"])
@pytest.mark.parametrize("kind", list(MODELS))
def test_in_place_blocks_train_with_the_true_gradient(comfy, comfy_base_dir, kind, checkpointing):
    """These models' blocks change tensors in place that backward needs: autograd refuses them as they are,
    and with saved tensors copied the LoRA's gradient is the true one (a central difference along it), with
    block checkpointing too (reentrant, on copies of the block inputs)."""
    import torch
    from comfy.sd import load_diffusion_model

    den_mod, lora_mod = pack_module("nodes.comfy_denoiser"), pack_module("nodes.comfy_lora")
    model = load_diffusion_model(str(MODELS[kind][1](comfy_base_dir / "models")))
    g = torch.Generator().manual_seed(0)
    extras, shape = ADAPTER[kind]
    options = {k: (torch.randn(*v, generator=g) * 0.1 if v else torch.ones(1, 8, dtype=torch.int64))
               for k, v in extras.items()}
    cond = [[torch.randn(1, 8, 4096, generator=g) * 0.1, options]]
    mp = den_mod.training_clone(model)
    lora = lora_mod.ComfyLora(mp, rank=2, alpha=2.0, seed=0)
    with torch.inference_mode(False), torch.no_grad():
        for p in lora.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.05)
    x0, noise = torch.randn(1, *shape, generator=g), torch.randn(1, *shape, generator=g)
    t = torch.tensor([0.6])
    den = den_mod.ComfyDenoiser(mp, {"g": cond}, shape, batch=1, gradient_checkpointing=checkpointing)

    def loss(d):
        return ((d.predict(d.add_noise(x0, noise, t), t, "g") - d.target(x0, noise, t)) ** 2).mean()

    def gradient(d):  # backward, as the training loop does (reentrant checkpointing needs it)
        params = list(lora.parameters())
        for p in params:
            p.grad = None
        loss(d).backward()
        return [p.grad.clone() for p in params]

    calls = []
    block = den_mod.block_modules(model.model.diffusion_model)[0]
    first_linear = next(m for m in block.modules() if isinstance(m, torch.nn.Linear))
    hook = first_linear.register_forward_pre_hook(lambda *_: calls.append(1))

    def check(d):
        params = list(lora.parameters())
        calls.clear()
        grads = gradient(d)
        assert len(calls) == (2 if checkpointing else 1)  # checkpointed: the block ran again in backward
        norm = torch.sqrt(sum((gr ** 2).sum() for gr in grads))
        eps, values = 1e-2, []
        with torch.no_grad():
            for sign in (1, -1):
                for p, gr in zip(params, grads, strict=True):
                    p.add_(gr / norm, alpha=sign * eps)
                values.append(float(loss(d)))
                for p, gr in zip(params, grads, strict=True):
                    p.sub_(gr / norm, alpha=sign * eps)
        return float(norm), (values[0] - values[1]) / (2 * eps)

    with torch.inference_mode(False), torch.enable_grad():
        with pytest.raises(RuntimeError, match=den_mod.INPLACE_ERROR):
            den.run(gradient)
        den.copy_saved_tensors = True
        analytic, numeric = den.run(check)
    hook.remove()
    assert analytic > 0 and numeric == pytest.approx(analytic, rel=0.02)


def _headless(config_class):
    """A model_base instance of a supported-model config without its network (ComfyUI's own
    `disable_unet_model_creation`): its class, model type, model_sampling and latent format are the real ones."""
    import torch
    from comfy.ldm.audio.embedders import NumberConditioner

    weights = {  # the two configs that read weights of their own while building
        "Stable_Zero123": {"cc_projection.weight": torch.zeros(768, 772), "cc_projection.bias": torch.zeros(768)},
        "StableAudio": {f"conditioner.conditioners.{k}.{name}": v for k in ("seconds_start", "seconds_total")
                        for name, v in NumberConditioner(768, min_val=0, max_val=512).state_dict().items()},
    }
    config = config_class({"in_channels": 4, **config_class.unet_config, "disable_unet_model_creation": True})
    with torch.no_grad():  # as ComfyUI's loaders build models
        return config.get_model(weights.get(config_class.__name__, {}))


def test_every_model_comfyui_detects_is_trainable_or_refused_by_name(comfy, monkeypatch):
    """Every model config ComfyUI 0.3.75 detects (comfy.supported_models.models, with the model_base class and
    ModelType it builds): the trainer's check before the first step either accepts it with a prediction type
    or refuses it with a message naming its model type and class."""
    from types import SimpleNamespace

    import comfy.model_base as mb
    import comfy.supported_models as sm
    import torch

    # Stable Zero123 asks its (absent) network for the dtype of a layer it adds
    monkeypatch.setattr(mb.BaseModel, "get_dtype", lambda self: torch.float32)
    den = pack_module("nodes.comfy_denoiser")
    accepted, refused = {}, {}
    for config_class in sm.models:
        model = _headless(config_class)
        patcher = SimpleNamespace(model=model, get_model_object=lambda _n, m=model: m.model_sampling)
        try:
            accepted[config_class.__name__] = den.check_trainable(patcher)
        except den.UnsupportedModelError as e:
            assert type(model).__name__ in str(e) and model.model_type.name in str(e)
            refused[config_class.__name__] = str(e)
    assert len(accepted) + len(refused) == len(sm.models) > 60
    for name in ("WAN21_T2V", "WAN21_I2V", "WAN22_T2V", "WAN21_Vace", "HunyuanVideo", "HunyuanVideoI2V",
                 "HunyuanVideo15", "LTXV", "GenmoMochi"):
        assert accepted[name] == "flow", name
    assert accepted["CosmosT2V"] == "v"  # EDM
    for name in ("SD15", "SDXL", "Flux", "SD3", "StableAudio", "Hunyuan3Dv2", "SVD_img2vid"):
        assert "no time axis" in refused[name], name
    assert "predicts the clean latent" in refused["LotusD"] or "no time axis" in refused["LotusD"]


def test_a_model_whose_first_step_fails_is_named(comfy, comfy_base_dir):
    """A failure inside the model before the first step finished (here HunyuanVideo without the CLIP-pooled
    vector its conditioning must carry) names the model type, and nothing was trained."""
    import torch
    from comfy.sd import load_diffusion_model

    den_mod, lora_mod = pack_module("nodes.comfy_denoiser"), pack_module("nodes.comfy_lora")
    model = load_diffusion_model(str(write_tiny_hunyuan_video(comfy_base_dir / "models")))
    mp = den_mod.training_clone(model)
    lora = lora_mod.ComfyLora(mp, rank=2, alpha=2.0, seed=0)
    den = den_mod.ComfyDenoiser(mp, {"g": [[torch.randn(1, 8, 4096) * 0.1, {}]]}, [16, 2, 8, 8], batch=1)
    with pytest.raises(den_mod.UnsupportedModelError, match=r"model type FLOW \(HunyuanVideo\): the first training "
                                                            r"step failed.*pooled_output"):
        den_mod.run_training(den, lambda d: None, lora.num_parameters, lambda: 0)
    assert all(float(d.lora_up.detach().abs().max()) == 0 for d in lora.deltas.values())
