"""GAPO LoRA Trainer through ComfyUI's real executor, on tiny Wan models: collect → train → LoRA file →
LoraLoaderModelOnly; refusals before the first step; Cancel and resume; image-to-video groups."""

from __future__ import annotations

import json
import logging
import threading
import time

import pytest
from animereward_testkit.collect_workflows import datasets_root, wan_replay
from animereward_testkit.inprocess import WorkflowError
from animereward_testkit.reward_workflows import capture, captured, example
from animereward_testkit.tiny_models import TINY_WAN, TINY_WAN_I2V, write_tiny_wan_i2v

from gapo_trainer.store import PreferenceStore

pytestmark = pytest.mark.comfy

E2E = "trainer_e2e"


def trainer(dataset: str, model: list | None = None, **inputs) -> dict:
    values = {"model": model or ["1", 0], "dataset": dataset, "steps": 5, "learning_rate": 1e-3, "rank": 4,
              "alpha": 4.0, "beta": 0.0, "objective": "gapo", "gap_function": "pow2", "pair_mode": "all",
              "min_gap": 0.0, "pairs_per_step": 1, "gradient_accumulation": 1, "seed": 0,
              "gradient_checkpointing": True, "save_every": 0, "lora_name": f"tests/{dataset}", "resume": False}
    return {"class_type": "AnimeRewardGAPOTrainer", "inputs": values | inputs}


def unet(name: str = TINY_WAN) -> dict:
    return {"class_type": "UNETLoader", "inputs": {"unet_name": name, "weight_dtype": "default"}}


def one_step_sample(model: list) -> dict:
    """ComfyUI's own sampler, one Euler step from sigma 1 at cfg 1: its output is noise minus the model's
    velocity prediction, element for element."""
    return {
        "cond": {"class_type": "AnimeRewardTestRandomConditioning", "inputs": {"seed": 0, "tokens": 8, "width": 4096}},
        "lat": {"class_type": "EmptyHunyuanLatentVideo", "inputs": {"width": 64, "height": 64, "length": 9,
                                                                    "batch_size": 1}},
        "ks": {"class_type": "KSampler", "inputs": {
            "model": model, "seed": 5, "steps": 1, "cfg": 1.0, "sampler_name": "euler", "scheduler": "simple",
            "positive": ["cond", 0], "negative": ["cond", 0], "latent_image": ["lat", 0], "denoise": 1.0}},
        "vals": {"class_type": "AnimeRewardTestLatentValues", "inputs": {"latent": ["ks", 0]}},
        "cap_vals": capture(string=["vals", 0]),
    }


@pytest.fixture(scope="module")
def store(comfy, comfy_base_dir) -> PreferenceStore:
    return PreferenceStore(datasets_root(comfy_base_dir))


@pytest.fixture(scope="module")
def e2e_dataset(comfy, tiny_models, store) -> str:
    """3 groups of 3 candidates from the tiny Wan example (different prompts and seeds), scored by
    Best-of-N and stored by Collect."""
    if E2E not in store.datasets():
        for g in range(3):
            wf = example("tiny_wan_collect_rankings")
            wf["30"]["inputs"]["dataset"] = E2E
            wf["2"]["inputs"]["seed"] = 10 + g
            wf["4"]["inputs"]["seed"] = 20 + g
            comfy.run(wf)
    assert store.count(E2E) == 3
    return E2E


def _messages(comfy, event="animereward.training"):
    return [d for e, d in comfy.server.messages if e == event]


def test_train_five_steps_and_load_the_lora(comfy, e2e_dataset, comfy_base_dir, caplog):
    wf = {"1": unet(), "t": trainer(e2e_dataset, lora_name="tests/e2e"),
          "cap": capture(string=["t", 1]), "cap_json": capture(string=["t", 3], image=["t", 2]),
          **one_step_sample(["t", 0])}
    out = comfy.run(wf)
    lora_file = captured(out, "cap")["string"]
    assert lora_file.startswith("tests/e2e") and lora_file.endswith(".safetensors")
    metrics = json.loads(captured(out, "cap_json")["string"])
    assert [h["step"] for h in metrics["history"]] == [1, 2, 3, 4, 5]
    assert metrics["data"]["groups"] == 3 and metrics["data"]["pairs"] >= 3
    assert metrics["settings"]["beta"] == 500.0 and metrics["settings"]["prediction_type"] == "flow"
    assert all(h["implicit_accuracy"] is not None and h["margin"] is not None for h in metrics["history"])
    chart = captured(out, "cap_json")["image"]
    assert chart["shape"][0] == 1 and chart["shape"][3] == 3
    # one progress message per step (the live chart), then the end
    steps = [m["step"] for m in _messages(comfy) if "metrics" in m]
    assert steps == [1, 2, 3, 4, 5]
    assert _messages(comfy)[-1]["done"] and _messages(comfy)[-1]["lora_file"] == lora_file
    trained = json.loads(captured(out, "cap_vals")["string"])

    # the file, in ComfyUI's own format, with its provenance
    import folder_paths
    from safetensors import safe_open

    path = folder_paths.get_full_path_or_raise("loras", lora_file)
    with safe_open(path, framework="pt") as f:
        keys, header = set(f.keys()), f.metadata()
    assert keys and all(k.startswith("diffusion_model.blocks.") for k in keys)
    assert all(k.endswith((".lora_down.weight", ".lora_up.weight", ".alpha")) for k in keys)
    assert json.loads(header["animereward.steps"]) == 5 and header["animereward.dataset"] == e2e_dataset
    assert json.loads(header["animereward.dataset_size"]) == 3 and header["animereward.objective"] == "gapo"
    assert header["animereward.gap_function"] == "pow2" and json.loads(header["animereward.beta"]) == 500.0
    assert header["animereward.base_model_hash"].startswith("sha256:")

    # LoraLoaderModelOnly loads every key, and the loaded model predicts what the trainer's model predicted
    caplog.set_level(logging.WARNING)
    loaded = comfy.run({"1": unet(), "l": {"class_type": "LoraLoaderModelOnly", "inputs": {
        "model": ["1", 0], "lora_name": lora_file, "strength_model": 1.0}}, **one_step_sample(["l", 0])})
    assert not [r for r in caplog.records if "lora key not loaded" in r.getMessage()]
    via_loader = json.loads(captured(loaded, "cap_vals")["string"])
    base = json.loads(captured(comfy.run({"1": unet(), **one_step_sample(["1", 0])}), "cap_vals")["string"])
    assert via_loader["shape"] == trained["shape"]
    diff = max(abs(a - b) for a, b in zip(via_loader["values"], trained["values"], strict=True))
    moved = max(abs(a - b) for a, b in zip(base["values"], trained["values"], strict=True))
    assert diff <= 1e-4 < moved


def test_refusals_before_the_first_step(comfy, tiny_models, store, e2e_dataset):
    import torch

    from gapo_trainer.store import CandidateMeta

    def refused(dataset: str, **inputs) -> str:
        with pytest.raises(WorkflowError) as e:
            comfy.run({"1": unet(), "t": trainer(dataset, **inputs)})
        assert not [m for m in _messages(comfy) if "metrics" in m]  # no step ran
        return str(e.value)

    # only ties: every candidate scored the same
    store.add_group("trainer_ties", latents=torch.randn(3, 16, 3, 8, 8), positive=[[torch.randn(1, 8, 4096), {}]],
                    negative=[], candidates=[CandidateMeta(index=i, total=0.5) for i in range(3)], previews=[],
                    preview_ext="webp", model_name=TINY_WAN, model_hash=None)
    msg = refused("trainer_ties")
    assert "GAPO LoRA Trainer" in msg and "'dataset'" in msg and "3 candidate pairs tie" in msg
    # another model's latents (4 channels, image latents)
    store.add_group("trainer_foreign", latents=torch.randn(2, 4, 8, 8), positive=[[torch.randn(1, 8, 4096), {}]],
                    negative=[], candidates=[CandidateMeta(index=i, total=t) for i, t in enumerate([0.9, 0.1])],
                    previews=[], preview_ext="webp", model_name="sd15.safetensors", model_hash=None)
    msg = refused("trainer_foreign")
    assert "latents of shape [4, 8, 8]" in msg and "16-channel" in msg
    # a bad LoRA name is refused at validation
    with pytest.raises(WorkflowError, match="lora_name"):
        comfy.run({"1": unet(), "t": trainer(e2e_dataset, lora_name="../escape")})
    # resume without a checkpoint
    msg = refused(e2e_dataset, lora_name="tests/never_trained", resume=True)
    assert "'resume'" in msg and "no checkpoint" in msg


def test_cancel_then_resume_continues_the_same_run(comfy, e2e_dataset):
    import comfy.model_management as mm

    full = comfy.run({"1": unet(), "t": trainer(e2e_dataset, steps=6, lora_name="tests/uninterrupted"),
                      "c": capture(string=["t", 3])})
    expected = [h["loss"] for h in json.loads(captured(full, "c")["string"])["history"]]

    def cancel_after_step_2() -> None:
        deadline = time.time() + 300
        while time.time() < deadline:
            if any(m.get("step", 0) >= 2 and "metrics" in m for m in _messages(comfy)):
                mm.interrupt_current_processing(True)  # what the Cancel button does
                return
            time.sleep(0.01)

    comfy.server.messages.clear()  # the uninterrupted run's messages must not trigger the Cancel
    watcher = threading.Thread(target=cancel_after_step_2, daemon=True)
    watcher.start()
    with pytest.raises(WorkflowError, match="interrupted"):
        comfy.run({"1": unet(), "t": trainer(e2e_dataset, steps=6, lora_name="tests/resumed", save_every=0)})
    watcher.join()
    assert not mm.processing_interrupted()  # the flag does not leak into the next prompt
    done_before = max(m["step"] for m in _messages(comfy) if "metrics" in m)
    assert 2 <= done_before < 6

    out = comfy.run({"1": unet(), "t": trainer(e2e_dataset, steps=6, lora_name="tests/resumed", resume=True),
                     "c": capture(string=["t", 3])})
    history = json.loads(captured(out, "c")["string"])["history"]
    assert [h["step"] for h in history] == [1, 2, 3, 4, 5, 6]
    assert [m["step"] for m in _messages(comfy) if "metrics" in m] == list(range(done_before + 1, 7))
    assert [h["loss"] for h in history] == pytest.approx(expected, abs=1e-5)


def test_image_to_video_group_trains(comfy, comfy_base_dir, tiny_models, store):
    """A group collected from the tiny Wan i2v graph (start image, CLIP-vision features) trains."""
    write_tiny_wan_i2v(comfy_base_dir / "models")
    dataset = "trainer_i2v"
    comfy.run({k: v for k, v in wan_replay(dataset, i2v=True).items() if k in {"1", "2", "3", "5", "6", "7",
                                                                                     "9", "12", "13", "30"}})
    gid = next(d for e, d in comfy.server.messages if e == "animereward.collect" and d["node"] == "30")["collect"]["group_id"]
    store.set_ranking(dataset, gid, [2, 0, 1])  # the artist's order
    out = comfy.run({"1": unet(TINY_WAN_I2V), "t": trainer(dataset, steps=2, lora_name="tests/i2v"),
                     "c": capture(string=["t", 3])})
    metrics = json.loads(captured(out, "c")["string"])
    assert metrics["data"]["pairs"] == 3 and len(metrics["history"]) == 2
    assert all(h["loss"] == h["loss"] for h in metrics["history"])  # finite, not NaN


def test_tiny_examples_train_then_compare(comfy, tiny_models, store, comfy_base_dir):
    """The tiny forms of the shipped examples: collect → train_gapo_lora → compare_lora."""
    if "tiny_wan_rankings" not in store.datasets():
        comfy.run(example("tiny_wan_collect_rankings"))
    train = example("tiny_wan_train_gapo_lora")
    train["c"] = capture(string=["2", 1])
    out = comfy.run(train)
    lora_file = captured(out, "c")["string"]
    assert out["3"]["images"]  # the loss chart, saved
    compare = example("tiny_wan_compare_lora")
    compare["14"]["inputs"]["lora_name"] = lora_file
    compare["c"] = capture(float=["17", 1], string=["17", 2])
    out = comfy.run(compare)
    report = json.loads(captured(out, "c")["string"])
    assert len(report["pairs"]) == 2
    assert captured(out, "c")["float"] == pytest.approx(sum(p["difference"] for p in report["pairs"]) / 2)
    sheet = out["21"]["images"][0]
    assert (comfy_base_dir / "output" / sheet["subfolder"] / sheet["filename"]).is_file()


@pytest.mark.parametrize("node_id", ["AnimeRewardGAPOTrainer", "AnimeRewardCompareLoRA"])
def test_nodes_have_tooltips_and_help_pages(comfy, node_id):
    from animereward_testkit.comfy_paths import REPO_ROOT

    import nodes as comfy_nodes

    schema = comfy_nodes.NODE_CLASS_MAPPINGS[node_id].GET_SCHEMA()
    assert all(i.tooltip for i in schema.inputs), [i.id for i in schema.inputs if not i.tooltip]
    assert all(o.tooltip for o in schema.outputs)
    assert (REPO_ROOT / "web" / "docs" / f"{node_id}.md").read_text().count("##") >= 2
