"""GAPO LoRA Trainer's init_lora: continue training from a LoRA file, through ComfyUI's real executor on the
tiny Wan; files that cannot continue are refused at validation (rank, alpha, non-LoRA parts) or before the
first step (layers of another model)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import safetensors.torch
import torch
from animereward_testkit.inprocess import WorkflowError
from animereward_testkit.pack import pack_module
from animereward_testkit.reward_workflows import capture, captured
from animereward_testkit.tiny_models import TINY_WAN

from gapo_trainer.store import CandidateMeta, PreferenceStore

pytestmark = pytest.mark.comfy

DATASET = "trainer_init_lora"


def trainer(**inputs) -> dict:
    values = {"model": ["1", 0], "dataset": DATASET, "steps": 3, "learning_rate": 1e-3, "rank": 4,
              "alpha": 4.0, "beta": 0.0, "objective": "gapo", "gap_function": "pow2", "pair_mode": "all",
              "min_gap": 0.0, "pairs_per_step": 1, "gradient_accumulation": 1, "seed": 0,
              "gradient_checkpointing": False, "save_every": 0, "lora_name": "tests/init", "resume": False,
              "init_lora": "none"}
    return {"class_type": "AnimeRewardGAPOTrainer", "inputs": values | inputs}


def graph(**inputs) -> dict:
    return {"1": {"class_type": "UNETLoader", "inputs": {"unet_name": TINY_WAN, "weight_dtype": "default"}},
            "t": trainer(**inputs), "c": capture(string=["t", 1]), "m": capture(string=["t", 3])}


def run(comfy, **inputs) -> tuple[str, dict]:
    out = comfy.run(graph(**inputs))
    return captured(out, "c")["string"], json.loads(captured(out, "m")["string"])


def loras_dir() -> Path:
    import folder_paths

    return Path(folder_paths.get_folder_paths("loras")[0])


def steps_ran(comfy) -> list[int]:
    return [d["step"] for e, d in comfy.server.messages if e == "animereward.training" and "metrics" in d]


@pytest.fixture(scope="module")
def dataset(comfy, tiny_models, comfy_base_dir) -> str:
    from animereward_testkit.collect_workflows import datasets_root

    store = PreferenceStore(datasets_root(comfy_base_dir))
    if DATASET not in store.datasets():
        g = torch.Generator().manual_seed(0)
        for _ in range(2):
            store.add_group(DATASET, latents=torch.randn(3, 16, 2, 8, 8, generator=g),
                            positive=[[torch.randn(1, 8, 4096, generator=g) * 0.1, {}]], negative=[],
                            candidates=[CandidateMeta(index=i, total=t) for i, t in enumerate([0.9, 0.5, 0.1])],
                            previews=[], preview_ext="webp", model_name=TINY_WAN, model_hash=None)
    return DATASET


@pytest.fixture(scope="module")
def first_run(comfy, dataset) -> tuple[str, dict]:
    return run(comfy, lora_name="tests/init_first")


def test_continue_from_the_trainers_own_file(comfy, first_run):
    name, metrics = first_run
    assert metrics["history"][0]["margin"] == 0.0  # a fresh LoRA starts as the reference
    first = safetensors.torch.load_file(str(loras_dir() / name))
    comfy.server.messages.clear()
    # a learning rate so small that two Adam steps move each weight by about 2e-7: what comes out is the
    # file it started from, plus a trace of training
    cont_name, cont = run(comfy, lora_name="tests/init_continued", init_lora=name, steps=2, learning_rate=1e-7)
    assert steps_ran(comfy) == [1, 2]
    assert cont["settings"]["init_lora"] == name and cont["settings"]["steps"] == 2
    assert cont["history"][0]["margin"] != 0.0  # started from the file, not from the reference
    after = safetensors.torch.load_file(str(loras_dir() / cont_name))
    assert set(after) == set(first)
    moved = max((after[k] - first[k]).abs().max().item() for k in first)
    assert 0 < moved < 1e-5
    assert (loras_dir() / name).is_file()  # the file it started from is kept


def test_start_equals_the_file_for_comfyui_format_variants(comfy, tiny_models, first_run):
    """The trainer's own names, and PEFT-style lora_A/lora_B names without alpha (ComfyUI applies them at
    scale 1, so alpha = rank), load as the LoRA's starting weights, element for element."""
    import comfy.sd

    den, clora, init = (pack_module(m) for m in ("nodes.comfy_denoiser", "nodes.comfy_lora", "nodes.lora_init"))
    model = comfy.sd.load_diffusion_model(str(tiny_models["unet"]))
    own = safetensors.torch.load_file(str(loras_dir() / first_run[0]))
    peft = {k.replace(".lora_up.weight", ".lora_B.weight").replace(".lora_down.weight", ".lora_A.weight"): v
            for k, v in own.items() if not k.endswith(".alpha")}
    peft_path = loras_dir() / "tests" / "peft_names.safetensors"
    safetensors.torch.save_file(peft, str(peft_path))
    for path in (loras_dir() / first_run[0], peft_path):
        patcher = den.training_clone(model)
        lora = clora.ComfyLora(patcher, rank=4, alpha=4.0, seed=3)
        info = init.apply_init_lora(path, patcher, lora)
        assert info["layers"] == info["of"] == len(lora.deltas)
        state = lora.state_dict()
        for k, v in own.items():
            assert torch.equal(state[k], v.float()), k


def test_mismatched_files_are_refused_by_name(comfy, first_run):
    name = first_run[0]
    comfy.server.messages.clear()
    # rank and alpha: at validation, with the value to set
    with pytest.raises(WorkflowError, match=r"validation failed.*init_lora.*rank 4, the rank input is 8.*Set rank to 4"):
        comfy.run(graph(init_lora=name, rank=8, alpha=8.0))
    with pytest.raises(WorkflowError, match=r"validation failed.*init_lora.*alpha 4, the alpha input is 2.*Set alpha to 4"):
        comfy.run(graph(init_lora=name, alpha=2.0))
    # parts this trainer does not train (a DoRA scale): at validation
    own = safetensors.torch.load_file(str(loras_dir() / name))
    dora = dict(own)
    key = next(k for k in own if k.endswith(".lora_up.weight"))
    dora[key.replace(".lora_up.weight", ".dora_scale")] = torch.ones(own[key].shape[0], 1)
    safetensors.torch.save_file(dora, str(loras_dir() / "tests" / "dora.safetensors"))
    with pytest.raises(WorkflowError, match=r"validation failed.*init_lora.*dora_scale.*only plain LoRA"):
        comfy.run(graph(init_lora="tests/dora.safetensors"))
    # a file that is gone
    with pytest.raises(WorkflowError, match=r"validation failed.*init_lora.*no LoRA file 'tests/gone.safetensors'"):
        comfy.run(graph(init_lora="tests/gone.safetensors"))
    assert steps_ran(comfy) == []

    # layers of another model (HunyuanVideo's block names), and the right names at another width: before
    # the first step
    g = torch.Generator().manual_seed(1)
    other = {"diffusion_model.double_blocks.0.img_attn.qkv.lora_up.weight": torch.zeros(384, 4),
             "diffusion_model.double_blocks.0.img_attn.qkv.lora_down.weight": torch.randn(4, 128, generator=g),
             "diffusion_model.double_blocks.0.img_attn.qkv.alpha": torch.tensor(4.0)}
    safetensors.torch.save_file(other, str(loras_dir() / "tests" / "other_model.safetensors"))
    with pytest.raises(WorkflowError, match=r"execution failed.*init_lora.*not layers of this model.*double_blocks"):
        comfy.run(graph(init_lora="tests/other_model.safetensors"))
    wider = {k: (torch.zeros(v.shape[0] * 2, 4) if k.endswith("lora_up.weight") else v) for k, v in own.items()}
    safetensors.torch.save_file(wider, str(loras_dir() / "tests" / "wider.safetensors"))
    with pytest.raises(WorkflowError, match=r"execution failed.*init_lora.*another model size"):
        comfy.run(graph(init_lora="tests/wider.safetensors"))
    assert steps_ran(comfy) == []  # no step ran for any of them


def test_comfyuis_own_input_checks_still_apply(comfy, dataset):
    """The trainer's own validation covers the inputs it names; ComfyUI's range and list checks still run for
    the others (e.g. steps below its minimum), and rank/alpha ranges are checked too."""
    with pytest.raises(WorkflowError, match=r"validation failed.*smaller than min of 1.*steps"):
        comfy.run(graph(steps=0))
    with pytest.raises(WorkflowError, match=r"validation failed.*'rank': 0 is outside 1..256"):
        comfy.run(graph(rank=0))
