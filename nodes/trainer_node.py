"""GAPO LoRA Trainer: train a LoRA on the artist's own MODEL from a preference dataset they collected.

The pieces: training_data (pairs and refusals), comfy_denoiser and comfy_lora (the model the ComfyUI way),
gapo_trainer.loop (the steps, checkpoints, resume), lora_file (the LoRA in models/loras), loss_chart (the
IMAGE), and `animereward.training` messages for the live chart in the page (web/js/gapo_chart.js).
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

from comfy_api.latest import io

from .errors import NodeInputError, from_library
from .page_messages import send_to_page

log = logging.getLogger("AnimeReward")

NODE_ID = "AnimeRewardGAPOTrainer"
EVENT = "animereward.training"
OBJECTIVES = ["gapo", "dpo", "sft"]
GAP_FUNCTIONS = ["pow2", "pow3", "ratio", "none"]
PAIR_MODES = ["all", "best_vs_rest", "adjacent"]
# β when the input is 0 ("auto"), per prediction type (docs: web/docs/AnimeRewardGAPOTrainer.md).
# eps and v: the official GAPO / Diffusion-DPO value. flow: losses in velocity space are larger and their
# differences between winner and loser too; see the help page for how the flow value was chosen.
DEFAULT_BETA = {"eps": 5000.0, "v": 5000.0, "flow": 500.0}
CHECKPOINTS_FOLDER = "animereward_training"
RANK_RANGE, ALPHA_RANGE = (1, 256), (0.01, 1024.0)


def _datasets() -> list[str]:
    """The dataset names for the combo; never raises (a broken folder must not break the node list)."""
    try:
        from .datasets_folder import open_store

        return open_store().datasets()
    except Exception as e:  # any failure here would hide the node from the list
        log.warning("GAPO trainer: cannot list datasets: %s", e)
        return []


def _loras() -> list[str]:
    """'none' and the LoRA files ComfyUI lists, for init_lora; never raises (the node list must not break)."""
    try:
        import folder_paths

        return ["none", *folder_paths.get_filename_list("loras")]
    except Exception as e:  # any failure here would hide the node from the list
        log.warning("GAPO trainer: cannot list LoRA files: %s", e)
        return ["none"]


def send_progress(node_id: str | None, payload: dict[str, Any]) -> None:
    """One point of the live chart to the page that queued the prompt (no-op without a server)."""
    if node_id is not None:
        send_to_page(EVENT, {"node": str(node_id), **payload})


def checkpoint_root(lora_name: str) -> Path:
    """Where a run's resumable checkpoints go: <output>/animereward_training/<LoRA name>/."""
    import folder_paths

    return Path(folder_paths.get_output_directory()) / CHECKPOINTS_FOLDER / lora_name


def _lora_file(name: str) -> Path:
    """The full path of a LoRA the loaders list (FileNotFoundError naming it when it is gone)."""
    import folder_paths

    path = folder_paths.get_full_path("loras", name)
    if path is None:
        raise FileNotFoundError(f"there is no LoRA file '{name}' in models/loras (press R to refresh the list).")
    return Path(path)


class AnimeRewardGAPOTrainer(io.ComfyNode):
    NODE_NAME = "GAPO LoRA Trainer"

    @classmethod
    def define_schema(cls) -> io.Schema:
        datasets = _datasets()
        return io.Schema(
            node_id=NODE_ID,
            display_name=cls.NODE_NAME,
            category="AnimeReward/training",
            description="Trains a LoRA on the connected video model with Gap-Aware Preference Optimization "
                        "from the groups you collected and ranked; writes it to models/loras.",
            inputs=[
                io.Model.Input("model", tooltip="The video model to align (from your own loaders: Wan, "
                                                "HunyuanVideo, LTX-Video). fp8 weights work; the LoRA is float32."),
                io.Combo.Input("dataset", options=datasets, default=datasets[0] if datasets else None,
                               tooltip="A preference dataset collected with AnimeReward Collect from this model "
                                       "(press R to refresh the list after collecting)."),
                io.Int.Input("steps", default=200, min=1, max=100000,
                             tooltip="Optimizer steps. Each step reads 'pairs_per_step' × "
                                     "'gradient_accumulation' preference pairs."),
                io.Float.Input("learning_rate", default=1e-4, min=1e-7, max=1.0, step=1e-6,
                               tooltip="AdamW learning rate of the LoRA (cosine schedule to zero)."),
                io.Int.Input("rank", default=16, min=RANK_RANGE[0], max=RANK_RANGE[1],
                             tooltip="LoRA rank: the inner size of each layer's low-rank delta (more = more "
                                     "capacity, a bigger file)."),
                io.Float.Input("alpha", default=16.0, min=ALPHA_RANGE[0], max=ALPHA_RANGE[1], step=0.01,
                               tooltip="LoRA alpha: the delta is scaled by alpha/rank (saved in the file)."),
                io.Float.Input("beta", default=0.0, min=0.0, max=1e6, step=1.0,
                               tooltip="β of the preference loss. 0 = the default for the model's prediction "
                                       "type: 5000 for eps and v models (official GAPO), 500 for flow models "
                                       "(Wan, HunyuanVideo, LTX)."),
                io.Combo.Input("objective", options=OBJECTIVES, default="gapo",
                               tooltip="gapo: Diffusion-DPO weighted by the score gap; dpo: plain Diffusion-DPO; "
                                       "sft: fine-tune on the winners only (no reference, no preference)."),
                io.Combo.Input("gap_function", options=GAP_FUNCTIONS, default="pow2",
                               tooltip="GAPO's gap weight: pow2 = 2^s_w − 2^s_l (the paper's), pow3 = 3^s_w − 3^s_l, "
                                       "ratio = 1 − 2^s_l / 2^s_w, none = 1 (plain DPO)."),
                io.Combo.Input("pair_mode", options=PAIR_MODES, default="all",
                               tooltip="Which pairs a ranked group gives: all = every better/worse pair; "
                                       "best_vs_rest = the best against each other; adjacent = neighbours in rank."),
                io.Float.Input("min_gap", default=0.0, min=0.0, max=1.0, step=0.01,
                               tooltip="Leave out pairs whose score gap is below this (scores in [0, 1])."),
                io.Int.Input("pairs_per_step", default=1, min=1, max=64,
                             tooltip="Pairs averaged into one optimizer step (run one after another: the memory "
                                     "of one pair)."),
                io.Int.Input("gradient_accumulation", default=1, min=1, max=256,
                             tooltip="Multiplies pairs_per_step: more pairs per step at the same memory."),
                io.Int.Input("seed", default=0, min=0, max=2**31 - 1,
                             tooltip="Seed of the LoRA initialisation, the pair order, noise and timesteps."),
                io.Boolean.Input("gradient_checkpointing", default=True,
                                 tooltip="Recompute each transformer block in the backward pass: much less VRAM, "
                                         "about a third slower."),
                io.Int.Input("save_every", default=50, min=0, max=100000,
                             tooltip="Write a resumable checkpoint every this many steps (0 = only at the end "
                                     "and on Cancel), under output/animereward_training/<lora_name>/."),
                io.String.Input("lora_name", default="gapo/anime_gapo",
                                tooltip="File name under models/loras (sub-folders allowed). An existing file is "
                                        "never overwritten: a number is appended."),
                io.Boolean.Input("resume", default=False,
                                 tooltip="Continue from the newest checkpoint of this lora_name (after Cancel or a "
                                         "crash), with the same settings; off starts afresh."),
                io.Combo.Input("init_lora", options=_loras(), default="none", optional=True,
                               tooltip="Continue training from this LoRA file (one this trainer wrote, or another "
                                       "ComfyUI-format LoRA of this model with the same rank and alpha); none = a "
                                       "fresh LoRA. The new LoRA is written under lora_name, the file is kept."),
            ],
            outputs=[
                io.Model.Output("trained_model", display_name="model",
                                tooltip="The input model with the trained LoRA applied, to preview at once."),
                io.String.Output("lora_file", display_name="lora_file",
                                 tooltip="The LoRA's name as LoraLoaderModelOnly lists it."),
                io.Image.Output("chart", display_name="chart",
                                tooltip="Loss, implicit accuracy and margin per step."),
                io.String.Output("metrics_json", display_name="metrics_json",
                                 tooltip="Every step's metrics, the settings and the dataset summary, as JSON."),
            ],
            hidden=[io.Hidden.unique_id],
            is_output_node=True,
        )

    @classmethod
    def validate_inputs(cls, lora_name: str = "x", init_lora: str = "none", rank: int | None = None,
                        alpha: float | None = None) -> bool | str:
        """The inputs named here skip ComfyUI's own checks (ranges, combo lists), so they are checked here;
        every other input keeps ComfyUI's (no **kwargs: that would switch them all off)."""
        from .lora_file import check_lora_name

        for name, value, (lo, hi) in (("rank", rank, RANK_RANGE), ("alpha", alpha, ALPHA_RANGE)):
            if value is not None and not lo <= value <= hi:
                return f"{cls.NODE_NAME}: input '{name}': {value} is outside {lo}..{hi}."

        try:
            check_lora_name(lora_name)
        except ValueError as e:
            return f"{cls.NODE_NAME}: input 'lora_name': {e}"
        if init_lora not in (None, "none"):
            from .lora_init import InitLoraError, check_settings, read_layout

            try:
                layout = read_layout(_lora_file(init_lora))
                if rank is not None and alpha is not None:  # linked inputs are checked when the node runs
                    check_settings(layout, rank, alpha)
            except (InitLoraError, FileNotFoundError) as e:
                return f"{cls.NODE_NAME}: input 'init_lora': {e}"
        return True

    @classmethod
    def fingerprint_inputs(cls, dataset: str = "", **_: Any) -> Any:
        """Run again when the dataset changed (new groups or rankings), even with the same inputs."""
        try:
            from .datasets_folder import open_store

            path = open_store().dataset_path(dataset)
            return tuple((p.name, p.stat().st_mtime_ns, p.stat().st_size) for p in sorted(path.glob("*"))
                         if p.is_file())
        except Exception:  # validation and execute report bad datasets, not the fingerprint
            return None

    @classmethod
    def execute(cls, model: Any, dataset: str, steps: int, learning_rate: float, rank: int, alpha: float,
                beta: float, objective: str, gap_function: str, pair_mode: str, min_gap: float,
                pairs_per_step: int, gradient_accumulation: int, seed: int, gradient_checkpointing: bool,
                save_every: int, lora_name: str, resume: bool, init_lora: str = "none") -> io.NodeOutput:
        import comfy.model_management as mm
        import comfy.utils
        import folder_paths
        import torch

        from ..gapo_trainer.loop import TrainConfig, Trainer
        from .comfy_denoiser import (
            ComfyDenoiser,
            UnsupportedModelError,
            check_trainable,
            run_training,
            training_clone,
        )
        from .comfy_lora import ComfyLora
        from .conditioning_records import from_store
        from .datasets_folder import open_store
        from .lora_file import check_lora_name, lora_path, write_lora
        from .loss_chart import draw_chart
        from .model_identity import model_hash
        from .training_data import StorePairs, load_training_data

        node = cls.NODE_NAME
        node_id = cls.hidden.unique_id if cls.hidden is not None else None
        with from_library(node):
            lora_name = check_lora_name(lora_name)
        try:
            prediction = check_trainable(model)
        except UnsupportedModelError as e:
            raise NodeInputError(node, "model", str(e), "connect a Wan, HunyuanVideo or LTX-Video model.") from e
        data = load_training_data(node, open_store(), dataset, model, pair_mode, min_gap, from_store)
        beta = float(beta) if beta > 0 else DEFAULT_BETA[prediction]
        base_hash = model_hash(model)
        if data.model_hashes and base_hash not in data.model_hashes:
            log.warning("GAPO trainer: dataset '%s' was collected with model(s) %s; this MODEL is %s. Training "
                        "anyway (the latents have the right shape), but the LoRA fits best the model that made them.",
                        dataset, sorted(data.model_hashes), base_hash)
        ckpt_root = checkpoint_root(lora_name)
        if resume and not any(ckpt_root.glob("step-*")):
            raise NodeInputError(node, "resume", f"there is no checkpoint of '{lora_name}' in {ckpt_root}.",
                                 "turn resume off to start a new run, or give the lora_name of the run to continue.")
        config = TrainConfig(
            objective=objective, gap=gap_function, beta=beta, steps=steps, learning_rate=learning_rate,
            grad_accum=pairs_per_step * gradient_accumulation, seed=seed, checkpoint_dir=ckpt_root,
            checkpoint_every=save_every,
        )
        log.info("GAPO trainer: %s pairs from %s groups of '%s' (%s), %s model, β=%s",
                 len(data.pairs), len(data.latents), dataset, data.latent_shape, prediction, beta)

        patcher = training_clone(model)
        try:
            lora = ComfyLora(patcher, rank=rank, alpha=alpha, seed=seed)
        except ValueError as e:  # no linear layers in repeated blocks: nothing to put a LoRA on
            raise NodeInputError(node, "model", f"model type {type(model.model).__name__}: {e}.") from e
        started_from = None
        if init_lora not in (None, "none"):
            from .lora_init import InitLoraError, apply_init_lora

            try:
                started_from = apply_init_lora(_lora_file(init_lora), patcher, lora)
            except (InitLoraError, FileNotFoundError) as e:
                raise NodeInputError(node, "init_lora", str(e)) from e
            log.info("GAPO trainer: starting from %s (%s of %s layers)", init_lora, started_from["layers"],
                     started_from["of"])
        # batch 1: every objective sends one sample at a time through the model (gapo_trainer.loop)
        denoiser = ComfyDenoiser(patcher, data.positive, data.latent_shape,
                                 batch=1, gradient_checkpointing=gradient_checkpointing,
                                 noise_masks=data.inpaint())
        pbar = comfy.utils.ProgressBar(steps)
        cancelled: list[BaseException] = []
        started = time.perf_counter()

        finished: list[int] = []  # the steps this call finished

        def progress(report: Any) -> None:
            finished.append(report.step)
            point = report.metrics.to_json()
            send_progress(node_id, {"step": report.step, "total": report.total_steps, "metrics": point})
            try:
                pbar.update_absolute(report.step, report.total_steps)  # the server's hook raises on Cancel
            except mm.InterruptProcessingException as e:  # a BaseException on current ComfyUI: named explicitly
                cancelled.append(e)

        def should_stop() -> bool:
            if not cancelled and mm.processing_interrupted():
                cancelled.append(mm.InterruptProcessingException())
            return bool(cancelled)

        send_progress(node_id, {"step": 0, "total": steps, "start": True, "dataset": data.summary()})

        def body(d: ComfyDenoiser) -> Any:
            with torch.inference_mode(False), torch.enable_grad():
                trainer = Trainer(d, lora, StorePairs(data), config)
                if resume:
                    trainer.load(ckpt_root)
                # ComfyUI's layers raise the interrupt mid-step (every op checks Cancel); the core rewinds to
                # the last finished step and keeps a resumable checkpoint before it propagates.
                try:
                    return trainer.run(progress=progress, should_stop=should_stop,
                                       interrupts=(mm.InterruptProcessingException,))
                except mm.InterruptProcessingException as e:
                    cancelled.append(e)
                    return trainer.result("stopped")

        with from_library(node):
            result = run_training(denoiser, body, lora.num_parameters, lambda: len(finished))
        if cancelled:
            log.info("GAPO trainer: cancelled at step %s; checkpoint %s (resume with the same lora_name)",
                     result.steps_done, result.checkpoint)
            mm.interrupt_current_processing(False)
            raise mm.InterruptProcessingException()

        history = [m.to_json() for m in result.history]  # a resumed run's history includes the earlier steps
        loras_dir = Path(folder_paths.get_folder_paths("loras")[0])
        path = lora_path(loras_dir, lora_name)
        meta = {
            "base_model_hash": base_hash,
            "base_model_type": f"{type(model.model).__name__}",
            "prediction_type": prediction, "steps": result.steps_done, "beta": beta, "objective": objective,
            "gap_function": config.effective_gap, "dataset": dataset, "dataset_size": data.groups_total,
            "pairs": len(data.pairs), "rank": rank, "alpha": alpha, "learning_rate": learning_rate, "seed": seed,
            "pair_mode": pair_mode, "min_gap": min_gap, "latent_shape": data.latent_shape,
            "init_lora": None if started_from is None else init_lora,
        }
        write_lora(lora.state_dict(), path, meta)
        lora.freeze()
        name = path.relative_to(loras_dir).as_posix()
        seconds = time.perf_counter() - started
        send_progress(node_id, {"step": result.steps_done, "total": steps, "done": True, "lora_file": name})
        metrics = {"lora_file": name, "settings": meta, "data": data.summary(), "history": history,
                   "status": result.status, "seconds": round(seconds, 3),
                   "checkpoint": str(result.checkpoint) if result.checkpoint else None}
        chart = draw_chart(history, f"{objective.upper()} · {dataset} · {len(data.pairs)} pairs · β {beta:g}")
        log.info("GAPO trainer: wrote %s after %s steps in %.1f s", path, result.steps_done, seconds)
        return io.NodeOutput(patcher, name, chart, json.dumps(metrics))
