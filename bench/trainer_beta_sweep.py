"""β for flow models: how the DPO logit (margin) and loss of the GAPO LoRA Trainer evolve on the tiny Wan.

`python -m bench.trainer_beta_sweep` (a few minutes on a CPU): 3 groups of 3 candidates (random latents and
conditioning, reward totals 0.9/0.5/0.1, so 9 pairs), objective dpo, rank 4, lr 1e-3, 30 steps, seed 0, for
β = 5000, 500 and 50; prints per β the median and largest |margin| over the steps, the range of the per-step
loss and the mean implicit accuracy. The figures behind the trainer's flow default are in
web/docs/AnimeRewardGAPOTrainer.md.
"""

from __future__ import annotations

import json
import statistics
import tempfile
from pathlib import Path

from .bench_trainer import _boot


def main() -> None:
    base = Path(tempfile.mkdtemp(prefix="animereward-beta-sweep-"))
    _boot(base)
    import comfy.sd
    import torch
    from animereward_testkit.tiny_models import write_tiny_wan

    import nodes
    from gapo_trainer.store import CandidateMeta, PreferenceStore

    paths = write_tiny_wan(base / "models")
    store = PreferenceStore(base / "user" / "animereward_datasets")
    g = torch.Generator().manual_seed(0)
    for _ in range(3):
        store.add_group("beta", latents=torch.randn(3, 16, 3, 8, 8, generator=g),
                        positive=[[torch.randn(1, 8, 4096, generator=g) * 0.1, {}]], negative=[],
                        candidates=[CandidateMeta(index=i, total=t) for i, t in enumerate([0.9, 0.5, 0.1])],
                        previews=[], preview_ext="webp", model_name="tiny", model_hash=None)
    model = comfy.sd.load_diffusion_model(str(paths["unet"]))
    trainer = nodes.NODE_CLASS_MAPPINGS["AnimeRewardGAPOTrainer"]
    for beta in (5000.0, 500.0, 50.0):
        with torch.inference_mode():
            out = trainer.execute(model=model, dataset="beta", steps=30, learning_rate=1e-3, rank=4, alpha=4.0,
                                  beta=beta, objective="dpo", gap_function="pow2", pair_mode="all", min_gap=0.0,
                                  pairs_per_step=1, gradient_accumulation=1, seed=0, gradient_checkpointing=False,
                                  save_every=0, lora_name=f"beta/b{int(beta)}", resume=False)
        h = json.loads(out.result[3])["history"]
        m = [abs(x["margin"]) for x in h]
        print(f"beta {beta:g}: |margin| median {statistics.median(m):.3g}, max {max(m):.3g}; loss "
              f"{min(x['loss'] for x in h):.3g}..{max(x['loss'] for x in h):.3g}; implicit accuracy "
              f"{statistics.mean(x['implicit_accuracy'] for x in h):.2f}", flush=True)


if __name__ == "__main__":
    main()
