"""AnimeReward Collect through ComfyUI's real executor: tiny Wan models generate, Best-of-N scores, Collect
stores; what is stored replays exactly; bad inputs are refused before anything is written; the wait for a
human ranking ends on a ranking, a timeout or Cancel."""

from __future__ import annotations

import json
import threading
import time

import pytest
from animereward_testkit.collect_workflows import cheap_group, datasets_root, wan_replay
from animereward_testkit.inprocess import WorkflowError
from animereward_testkit.reward_workflows import capture, captured, example
from animereward_testkit.tiny_models import TINY_VAE, TINY_WAN, write_tiny_wan_i2v
from PIL import Image

from gapo_trainer.pairs import build_pairs
from gapo_trainer.store import PreferenceStore

pytestmark = pytest.mark.comfy


@pytest.fixture(scope="module")
def store(comfy, comfy_base_dir) -> PreferenceStore:
    return PreferenceStore(datasets_root(comfy_base_dir))


def _ui(comfy, node: str = "30") -> dict:
    """What Collect showed on the node in the last run (sent to the page as an animereward.collect message)."""
    for event, data in reversed(comfy.server.messages):
        if event == "animereward.collect" and data["node"] == node:
            return data["collect"]
    raise KeyError(f"node {node} sent nothing in the last run")


def test_tiny_wan_example_generates_scores_collects_and_gives_pairs(comfy, tiny_models, store):
    wf = example("tiny_wan_collect_rankings")
    wf["c"] = capture(latent=["4", 0], string=["11", 4])
    before = store.count("tiny_wan_rankings") if "tiny_wan_rankings" in store.datasets() else 0
    out = comfy.run(wf)
    ui = _ui(comfy)
    assert ui["size"] == before + 1 and ui["n"] == 3 and ui["status"] == "stored"
    group = store.load_group("tiny_wan_rankings", ui["group_id"])
    meta = group.meta
    # the latents are the sampler's, bit for bit
    sums = captured(out, "c")["latent"]["latent"]["per_item_sum"]
    assert list(group.latents.shape) == [3, 16, 3, 8, 8]
    assert [float(x.sum()) for x in group.latents.float()] == pytest.approx(sums, rel=1e-6)
    # the scores are Best-of-N's, per candidate in generation order
    bon = json.loads(captured(out, "c")["string"])
    assert [c.total for c in meta.candidates] == pytest.approx([c["total"] for c in bon["clips"]])
    assert set(meta.candidates[0].scores) == {"flow_smoothness", "flow_motion"}
    # model, sampler and seed come from the workflow
    assert meta.model_name == TINY_WAN and meta.model_hash.startswith("sha256:")
    assert meta.sampler["seed"] == 1 and meta.sampler["steps"] == 2 and meta.sampler["sampler_name"] == "euler"
    assert all(c.seed == 1 for c in meta.candidates)
    # previews: small looping animated WebPs, one per candidate
    for i in range(3):
        with Image.open(store.preview_path("tiny_wan_rankings", ui["group_id"], i)) as im:
            assert im.format == "WEBP" and im.n_frames == 9 and im.size == (64, 64)
            assert im.info.get("loop") == 0
    assert meta.model_hash == _pack("nodes.model_identity").model_hash(_load(tiny_models["unet"]))
    # pairs: reward order first, then the artist's order overrides it
    reward_pairs = build_pairs([meta], mode="all")
    assert len(reward_pairs.pairs) + reward_pairs.skipped_ties == 3
    store.set_ranking("tiny_wan_rankings", meta.group_id, [2, 0, 1])
    human = build_pairs([store.read_meta("tiny_wan_rankings", meta.group_id)], mode="adjacent")
    assert [(p.winner, p.loser) for p in human.pairs] == [(2, 0), (0, 1)]
    assert all(p.source == "human" and p.s_winner > p.s_loser for p in human.pairs)


@pytest.mark.parametrize("i2v", [False, True], ids=["t2v", "i2v"])
def test_stored_conditioning_replays_exactly(comfy, tiny_models, comfy_base_dir, store, i2v):
    write_tiny_wan_i2v(comfy_base_dir / "models")
    out = comfy.run(wan_replay("replay_i2v" if i2v else "replay_t2v", i2v=i2v))
    original, replayed = captured(out, "50"), captured(out, "51")
    assert original["string"] == "" and replayed["string"] == ""  # no difference in either conditioning
    assert replayed["latent"]["latent"]["per_item_sum"] == original["latent"]["latent"]["per_item_sum"]  # sampled again: identical
    report = json.loads(captured(out, "52")["string"])
    if i2v:
        assert {"concat_latent_image", "concat_mask", "clip_vision_output"} <= set(report["keys"][0])
        assert report["types"]["clip_vision_output"] == "comfy.clip_vision.Output"
    else:
        assert report["keys"] == [[]]
    meta = store.read_meta("replay_i2v" if i2v else "replay_t2v", _ui(comfy)["group_id"])
    assert meta.n == 3 and meta.latent_shape == [16, 2, 4, 4]


def _pack(name: str):
    """A module of the pack as ComfyUI loaded it (its package is named after the custom_nodes folder path)."""
    import importlib

    import nodes as comfy_nodes

    package = comfy_nodes.NODE_CLASS_MAPPINGS["AnimeRewardCollect"].__module__.rsplit(".nodes.", 1)[0]
    return importlib.import_module(f"{package}.{name}")


def _load(path):
    import comfy.sd

    return comfy.sd.load_diffusion_model(str(path))


def test_model_fingerprint_is_stable_cached_and_sees_weights_and_loras(comfy, tiny_models):
    import torch

    ident = _pack("nodes.model_identity")
    a, b = _load(tiny_models["unet"]), _load(tiny_models["unet"])
    t0 = time.perf_counter()
    h = ident.model_hash(a)
    first = time.perf_counter() - t0
    t0 = time.perf_counter()
    assert ident.model_hash(a) == h == ident.model_hash(b)  # a second load of the same file: the same
    assert time.perf_counter() - t0 < max(first, 0.05)  # cached per model object
    # a LoRA patch adds a second part; the base part stays
    key = "diffusion_model.blocks.0.ffn.0.weight"
    lora = b.clone()
    w = b.model.state_dict()[key]
    lora.add_patches({key: ("diff", (torch.full_like(w, 0.01),))}, 0.8)
    assert ident.model_hash(lora).startswith(h + "+")
    # a change inside a sampled window of one weight changes the fingerprint
    with torch.no_grad():
        a.model.state_dict()[key].view(-1)[0] += 1.0
    ident._BASE_CACHE.clear()
    assert ident.model_hash(a) != h


def _dataset_files(root, name):
    path = root / name
    return sorted(p.relative_to(path) for p in path.rglob("*") if ".tmp" not in p.parts) if path.exists() else []


def _refused(comfy, wf, *needles):
    with pytest.raises(WorkflowError) as err:
        comfy.run(wf)
    msg = str(err.value)
    for n in needles:
        assert n in msg, msg
    return msg


def test_disagreeing_counts_and_unstorable_conditioning_are_refused_before_writing(comfy, comfy_base_dir, store):
    root = datasets_root(comfy_base_dir)
    comfy.run(cheap_group("refusals", n=2))  # the dataset exists; every refusal below must leave it as it is
    files = _dataset_files(root, "refusals")
    assert store.count("refusals") == 1
    wf = cheap_group("refusals", n=3, frames=5)
    wf["1"]["inputs"]["defects"] = "clean, clean"  # 10 frames for 3 latents
    _refused(comfy, wf, "AnimeReward Collect", "'frames'", "10 frames", "3 candidates", "Fix:")
    two_scores = json.dumps({"clips": [{"scores": {"a": 0.1}, "total": 0.1}, {"scores": {"a": 0.2}, "total": 0.2}]})
    wf = cheap_group("refusals", n=3)
    wf["s"] = {"class_type": "PrimitiveString", "inputs": {"value": two_scores}}
    wf["30"]["inputs"]["scores_json"] = ["s", 0]
    _refused(comfy, wf, "'scores_json'", "scores 2 clips", "latents hold 3", "Fix:")
    wf = cheap_group("refusals", n=2, frames_per_clip=3)
    _refused(comfy, wf, "'frames_per_clip'", "clips of 5 frames", "Fix:")
    wf = cheap_group("refusals", n=2)
    wf |= {"c": {"class_type": "AnimeRewardTestRandomConditioning", "inputs": {"seed": 0, "tokens": 2, "width": 8}},
           "o": {"class_type": "AnimeRewardTestOddConditioning", "inputs": {"conditioning": ["c", 0]}}}
    wf["30"]["inputs"] |= {"positive": ["c", 0], "negative": ["o", 0]}
    _refused(comfy, wf, "'negative'", "negative[0]['odd']", "Fix:")
    ltx = cheap_group("refusals", n=2)  # 128-channel LTX-Video latents into a dataset of 16-channel Wan ones
    ltx["2"] = {"class_type": "EmptyLTXVLatentVideo", "inputs": {"width": 64, "height": 64, "length": 9,
                                                                 "batch_size": 2}}
    _refused(comfy, ltx, "'dataset'", "another model", "Fix:")
    one = cheap_group("refusals", n=1)
    _refused(comfy, one, "a ranked group needs 2 or more", "Fix:")
    assert store.count("refusals") == 1 and _dataset_files(root, "refusals") == files
    # a bad dataset name is refused when the prompt is validated
    bad = cheap_group("../escape", n=2)
    msg = _refused(comfy, bad, "validation failed", "dataset")
    assert "Fix:" in msg and not (root.parent / "escape").exists()


def test_synthetic_example_encodes_the_frames_with_the_vae(comfy, tiny_models, store):
    wf = example("synthetic_collect_rankings")
    wf["5"]["inputs"]["vae_name"] = TINY_VAE  # the example names the real Wan VAE
    wf["1"]["inputs"] |= {"frames": 9, "width": 64, "height": 48}
    wf["c"] = capture(string=["11", 4])
    out = comfy.run(wf)
    ui = _ui(comfy)
    meta = store.read_meta("synthetic_rankings", ui["group_id"])
    assert meta.n == 4 and meta.latent_shape == [16, 3, 6, 8] and meta.model_name == "none"
    assert meta.prompt.startswith("a girl with a red ribbon")
    bon = json.loads(captured(out, "c")["string"])
    assert [c.total for c in meta.candidates] == pytest.approx([c["total"] for c in bon["clips"]])
    assert ui["warnings"] and "not trained on" in ui["warnings"][0]


def _newest_unranked(store: PreferenceStore, dataset: str, timeout: float = 30.0) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if dataset in store.datasets():
            page = store.list_groups(dataset, unranked_only=True, limit=100)
            if page.groups:
                return page.groups[-1].group_id
        time.sleep(0.05)
    raise TimeoutError(f"no unranked group appeared in {dataset}")


def test_wait_for_ranking_returns_the_ranking_saved_meanwhile(comfy, store):
    wf = cheap_group("waiting", n=3, wait_for_ranking=True, timeout_seconds=60)
    wf["c"] = capture(string=["30", 1])

    def rank() -> None:
        gid = _newest_unranked(store, "waiting")
        time.sleep(0.3)
        store.set_ranking("waiting", gid, [1, 2, 0])

    t = threading.Thread(target=rank)
    t.start()
    t0 = time.monotonic()
    out = comfy.run(wf)
    t.join()
    assert time.monotonic() - t0 < 20
    assert captured(out, "c")["string"] == "1,2,0"
    assert _ui(comfy)["status"] == "ranked"


def test_wait_for_ranking_times_out_and_continues(comfy, store):
    wf = cheap_group("waiting_timeout", n=2, wait_for_ranking=True, timeout_seconds=1)
    t0 = time.monotonic()
    comfy.run(wf)
    assert 1.0 <= time.monotonic() - t0 < 15
    ui = _ui(comfy)
    assert ui["status"] == "timed out" and ui["ranking"] == ""
    assert store.read_meta("waiting_timeout", ui["group_id"]).human_ranking is None


def test_cancel_stops_the_wait_and_keeps_the_group(comfy, store):
    import comfy.model_management as mm

    wf = cheap_group("waiting_cancel", n=2, wait_for_ranking=True, timeout_seconds=120)

    def cancel() -> None:
        _newest_unranked(store, "waiting_cancel")
        time.sleep(0.3)
        mm.interrupt_current_processing(True)  # as the Cancel button does

    t = threading.Thread(target=cancel)
    t.start()
    t0 = time.monotonic()
    try:
        with pytest.raises(WorkflowError, match="interrupted"):
            comfy.run(wf)
    finally:
        t.join()
        mm.interrupt_current_processing(False)
    assert time.monotonic() - t0 < 20
    assert store.count("waiting_cancel") >= 1  # what was collected before Cancel stays


def test_collect_node_has_tooltips_and_help_page(comfy):
    from animereward_testkit.comfy_paths import REPO_ROOT

    import nodes as comfy_nodes

    schema = comfy_nodes.NODE_CLASS_MAPPINGS["AnimeRewardCollect"].GET_SCHEMA()
    assert all(i.tooltip for i in schema.inputs), [i.id for i in schema.inputs if not i.tooltip]
    assert all(o.tooltip for o in schema.outputs)
    assert (REPO_ROOT / "web" / "docs" / "AnimeRewardCollect.md").read_text().count("##") >= 3



def test_model_prompt_and_sampler_are_read_from_the_workflow(comfy):
    """Through LoRA loaders to the model file, through WanImageToVideo to each text encoder (output 1 is the
    negative), and the literal settings of the sampler that made the latents."""
    ident = _pack("nodes.model_identity")
    prompt = {
        "1": {"class_type": "UNETLoader", "inputs": {"unet_name": "wan.safetensors", "weight_dtype": "default"}},
        "2": {"class_type": "LoraLoaderModelOnly", "inputs": {"model": ["1", 0], "lora_name": "style.safetensors",
                                                              "strength_model": 0.8}},
        "3": {"class_type": "ModelSamplingSD3", "inputs": {"model": ["2", 0], "shift": 8.0}},
        "4": {"class_type": "CLIPTextEncode", "inputs": {"text": "a girl waves", "clip": ["9", 0]}},
        "5": {"class_type": "CLIPTextEncode", "inputs": {"text": "blurry", "clip": ["9", 0]}},
        "6": {"class_type": "WanImageToVideo", "inputs": {"positive": ["4", 0], "negative": ["5", 0]}},
        "7": {"class_type": "KSamplerAdvanced", "inputs": {"model": ["3", 0], "noise_seed": 42, "steps": 20,
                                                           "cfg": 5.0, "sampler_name": "uni_pc", "positive": ["6", 0],
                                                           "negative": ["6", 1], "latent_image": ["6", 2]}},
    }
    assert ident.model_name_from_graph(prompt, ["3", 0]) == "wan.safetensors + style.safetensors@0.8"
    assert ident.text_from_graph(prompt, ["6", 0]) == "a girl waves"
    assert ident.text_from_graph(prompt, ["6", 1]) == "blurry"
    assert ident.sampler_from_graph(prompt, ["7", 0]) == {"noise_seed": 42, "steps": 20, "cfg": 5.0,
                                                           "sampler_name": "uni_pc", "node": "KSamplerAdvanced"}
    assert ident.model_name_from_graph(prompt, None) is None and ident.text_from_graph(None, ["6", 0]) is None
