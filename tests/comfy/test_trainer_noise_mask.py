"""Wan 2.2 TI2V image-to-video: the LATENT's noise mask (start frame kept clean, per-frame timesteps) is
stored by Collect and replayed by the trainer exactly as ComfyUI's sampler applied it. Tiny Wan 2.2 (ComfyUI's
own WanModel, detected as WAN22), ComfyUI's own Wan22ImageToVideoLatent and sampler."""

from __future__ import annotations

import json

import pytest
import torch
from animereward_testkit.collect_workflows import collect, datasets_root
from animereward_testkit.pack import pack_module
from animereward_testkit.reward_workflows import capture, captured
from animereward_testkit.tiny_models import TINY_WAN22, StandInVideoEncoder, write_tiny_wan22

from gapo_trainer.store import PreferenceStore

pytestmark = pytest.mark.comfy


def _text_cond(seed: int) -> list:
    g = torch.Generator().manual_seed(seed)
    return [[torch.randn(1, 8, 4096, generator=g) * 0.1, {}]]


@pytest.fixture(scope="module")
def wan22(comfy, comfy_base_dir):
    import comfy.sd

    model = comfy.sd.load_diffusion_model(str(write_tiny_wan22(comfy_base_dir / "models")))
    assert type(model.model).__name__ == "WAN22"
    return model


def _start_latent(kind: str, comfy_base_dir, start):
    """The model, the image-to-video LATENT of 2 candidates (ComfyUI's own node) and the text conditioning."""
    from comfy.sd import load_diffusion_model

    if kind == "wan22":
        from comfy_extras.nodes_wan import Wan22ImageToVideoLatent

        model = load_diffusion_model(str(write_tiny_wan22(comfy_base_dir / "models")))
        latent = Wan22ImageToVideoLatent.execute(StandInVideoEncoder(), 64, 64, 5, 2, start_image=start).result[0]
        return model, latent, _text_cond(1), _text_cond(2)
    from animereward_testkit.tiny_models import write_tiny_ltxv
    from comfy_extras.nodes_lt import LTXVImgToVideo

    model = load_diffusion_model(str(write_tiny_ltxv(comfy_base_dir / "models")))
    pos, neg = _text_cond(1), _text_cond(2)
    for c in (pos, neg):  # LTX-Video's T5 encoder gives an attention mask
        c[0][1]["attention_mask"] = torch.ones(1, 8, dtype=torch.int64)
    pos, neg, latent = LTXVImgToVideo.execute(pos, neg, start, StandInVideoEncoder(128, 32), 64, 64, 9, 2, 1.0).result
    return model, latent, pos, neg


@pytest.mark.parametrize("kind", ["wan22", "ltxv"])
def test_first_frame_replay_matches_the_sampler(comfy, comfy_base_dir, kind):
    """Wan 2.2 TI2V (Wan22ImageToVideoLatent) and LTX-Video (LTXVImgToVideo), with the tiny models."""
    import comfy.sample
    import comfy.samplers

    den, lora, masks = (pack_module(m) for m in ("nodes.comfy_denoiser", "nodes.comfy_lora", "nodes.noise_masks"))
    g = torch.Generator().manual_seed(21)
    start = torch.rand(1, 64, 64, 3, generator=g)
    with torch.inference_mode():  # as inside the executor
        model, latent, pos, neg = _start_latent(kind, comfy_base_dir, start)
    assert type(model.model).__name__ == {"wan22": "WAN22", "ltxv": "LTXV"}[kind]
    assert latent["samples"].shape[0] == 2 and latent["samples"].shape[2] == 2 and "noise_mask" in latent


    # ComfyUI's sampler, two Euler steps: record its state x, sigma and the denoised latent it used
    ms = model.get_model_object("model_sampling")
    sigmas = comfy.samplers.calculate_sigmas(ms, "simple", 2)
    seen = []
    with torch.inference_mode():
        noise = comfy.sample.prepare_noise(latent["samples"], 7)
        samples = comfy.sample.sample(
            model, noise, 2, 1.0, "euler", "simple", pos, neg, latent["samples"], noise_mask=latent["noise_mask"],
            callback=lambda i, x0, x, n: seen.append((x.clone(), sigmas[i].repeat(2), x0.clone())), seed=7)
    assert len(seen) == 2

    # what Collect stores and the trainer reads back
    stored = masks.stored_noise_mask(latent, samples)
    assert stored.shape == (1, 1, *samples.shape[2:]) and stored[0, 0, 0].eq(0).all() and stored[0, 0, 1].eq(1).all()
    mask = masks.replay_mask(stored, samples, list(samples.shape[1:]))
    assert mask.shape == (1, *samples.shape[1:])

    mp = den.training_clone(model)
    lora.ComfyLora(mp, rank=4, alpha=4.0, seed=0)  # zero-initialised: predicts as the base
    shape = list(samples.shape[1:])
    masked = den.ComfyDenoiser(mp, {"g": pos}, shape, noise_masks={"g": (mask, samples[0])})
    plain = den.ComfyDenoiser(mp, {"g": pos}, shape)

    def replay(d):
        return [d.predict(x, sigma, "g").detach() for x, sigma, _ in seen]

    with torch.inference_mode():
        ours = masked.run(replay)
        unmasked = plain.run(replay)
    for (x, sigma, theirs), raw in zip(seen, ours, strict=True):
        torch.testing.assert_close(ms.calculate_denoised(sigma, raw, x), theirs, atol=1e-5, rtol=1e-5)
    # the start frame is the kept latent, and the mask matters for the other frames too (per-frame timesteps)
    kept = model.model.process_latent_in(samples[:1])[:, :, 0]
    torch.testing.assert_close(seen[0][2][:, :, 0], kept.expand(2, -1, -1, -1), atol=1e-5, rtol=1e-5)
    assert (unmasked[0][:, :, 1] - ours[0][:, :, 1]).abs().max() > 1e-3

    # training: the start frame's prediction equals its target, so only the denoised frames are learnt
    def errors(d):
        sigma = torch.tensor([0.6, 0.6])
        n = torch.randn(samples.shape, generator=torch.Generator().manual_seed(3))
        x_t = d.add_noise(samples, n, sigma)
        return (d.predict(x_t, sigma, "g") - d.target(samples, n, sigma)).detach()

    with torch.inference_mode():
        err = masked.run(errors)
    assert err[:, :, 0].abs().max() < 1e-4 < err[:, :, 1].abs().max()


def test_masks_that_cannot_be_replayed_are_refused(comfy):
    masks = pack_module("nodes.noise_masks")
    lat = torch.randn(2, 48, 2, 4, 4)
    lat[1, :, 0] = lat[0, :, 0]
    first = torch.ones(1, 1, 2, 4, 4)
    first[:, :, 0] = 0
    assert masks.replay_mask(first, lat, [48, 2, 4, 4]).shape == (1, 48, 2, 4, 4)
    with pytest.raises(ValueError, match="between 0 and 1"):
        masks.replay_mask(first * 0.5 + 0.25, lat, [48, 2, 4, 4])
    with pytest.raises(ValueError, match="different noise masks"):
        masks.replay_mask(torch.cat([first, torch.ones_like(first)]), lat, [48, 2, 4, 4])
    with pytest.raises(ValueError, match="keeps every element"):
        masks.replay_mask(torch.zeros_like(first), lat, [48, 2, 4, 4])
    other = lat.clone()
    other[1, :, 0] += 1.0
    with pytest.raises(ValueError, match="differ by"):
        masks.replay_mask(first, other, [48, 2, 4, 4])


def test_collect_stores_the_mask_and_the_trainer_replays_it(comfy, comfy_base_dir, wan22):
    """Through the executor: Wan22ImageToVideoLatent → KSampler → Collect (the mask is stored) → trainer on
    the tiny Wan 2.2 (2 steps, the group counted as masked); a dataset written without masks still trains."""
    dataset = "trainer_wan22_first_frame"
    wf = {
        "1": {"class_type": "UNETLoader", "inputs": {"unet_name": TINY_WAN22, "weight_dtype": "default"}},
        "2": {"class_type": "AnimeRewardTestRandomConditioning", "inputs": {"seed": 0, "tokens": 8, "width": 4096}},
        "3": {"class_type": "AnimeRewardTestRandomConditioning", "inputs": {"seed": 1, "tokens": 8, "width": 4096}},
        "4": {"class_type": "EmptyImage", "inputs": {"width": 64, "height": 64, "batch_size": 1, "color": 0x8040c0}},
        "5": {"class_type": "AnimeRewardTestWan22StartLatent", "inputs": {
            "start_image": ["4", 0], "width": 64, "height": 64, "length": 5, "batch_size": 3}},
        "6": {"class_type": "KSampler", "inputs": {
            "model": ["1", 0], "seed": 4, "steps": 2, "cfg": 1.0, "sampler_name": "euler", "scheduler": "simple",
            "positive": ["2", 0], "negative": ["3", 0], "latent_image": ["5", 0], "denoise": 1.0}},
        "7": {"class_type": "EmptyImage", "inputs": {"width": 64, "height": 64, "batch_size": 15, "color": 0}},
        "30": collect(dataset, latents=["6", 0], frames=["7", 0], positive=["2", 0], negative=["3", 0],
                      model=["1", 0]),
    }
    comfy.run(wf)
    store = PreferenceStore(datasets_root(comfy_base_dir))
    gid = next(d for e, d in comfy.server.messages if e == "animereward.collect")["collect"]["group_id"]
    group = store.load_group(dataset, gid)
    assert group.noise_mask is not None and list(group.noise_mask.shape) == [1, 1, 2, 4, 4]
    assert group.noise_mask[0, 0, 0].eq(0).all() and group.noise_mask[0, 0, 1].eq(1).all()
    store.set_ranking(dataset, gid, [1, 2, 0])
    # a group of the same model stored without a mask (as datasets written before masks were kept)
    old = store.add_group(dataset, latents=group.latents.clone(), positive=group.positive, negative=[],
                          candidates=group.meta.candidates, previews=[], preview_ext="webp",
                          model_name=TINY_WAN22, model_hash=None)
    assert store.load_group(dataset, old.group_id).noise_mask is None
    store.set_ranking(dataset, old.group_id, [0, 1, 2])

    trainer = {"class_type": "AnimeRewardGAPOTrainer", "inputs": {
        "model": ["1", 0], "dataset": dataset, "steps": 2, "learning_rate": 1e-3, "rank": 4, "alpha": 4.0,
        "beta": 0.0, "objective": "gapo", "gap_function": "pow2", "pair_mode": "all", "min_gap": 0.0,
        "pairs_per_step": 1, "gradient_accumulation": 1, "seed": 0, "gradient_checkpointing": True,
        "save_every": 0, "lora_name": "tests/wan22_first_frame", "resume": False}}
    out = comfy.run({"1": wf["1"], "t": trainer, "c": capture(string=["t", 3])})
    metrics = json.loads(captured(out, "c")["string"])
    assert metrics["data"]["groups_used"] == 2 and metrics["data"]["noise_masked_groups"] == 1
    assert len(metrics["history"]) == 2 and all(h["loss"] == h["loss"] for h in metrics["history"])
