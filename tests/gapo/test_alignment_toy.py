"""The alignment toy in short form (issue 9 item 6): one seed, a few steps, only what must hold.

The whole journey on a toy small enough for the suite: pretrain a tiny video flow model on clean and defective
synthetic clips, sample candidates, score them with `flow_smoothness`, store them as groups in a real
preference store, build pairs, train a LoRA with each objective through the core's loop, and sample again. It
asserts that the pairs are what GAPO needs, that every loss is finite, that GAPO's first step is g · ln 2 (the
LoRA starts as the reference), that the trained model's samples (and so their reward) move while the LoRA
switched off still gives the pretrained model's samples bit for bit. Whether the reward goes *up*, and by how
much per method, is the benchmark's question (`python -m bench alignment`, docs/alignment.md), not a test's.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from bench import alignment_toy as toy
from bench.bench_alignment import eval_reward, train_one
from gapo_trainer.losses import LN2, gap_weight

CFG = toy.ToyConfig(
    scenes=2, render_scale=2, dim=32, depth=2, heads=2, pretrain_steps=60, pretrain_batch=16, ema_decay=0.9
)


@pytest.fixture(scope="module")
def setting(tmp_path_factory: pytest.TempPathFactory):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        base = toy.pretrained_model(CFG, cache=tmp_path_factory.mktemp("toy_cache"))
        cands = toy.sample_candidates(toy.ToyFlowDenoiser(base), CFG, seed=0, n=4, groups_per_prompt=1, steps=4)
        pairs = toy.StoredPairs(tmp_path_factory.mktemp("store"), cands)
        prompts = toy.prompts_for(2, CFG.scenes)
        noise = toy.fresh_noise(len(prompts), CFG, 123)
        yield base, cands, pairs, prompts, noise
    finally:
        torch.set_num_threads(threads)


def test_pretrained_toy_is_cached_as_safetensors(tmp_path: Path) -> None:
    cfg = toy.ToyConfig(
        scenes=1, frames=4, size=8, render_scale=1, dim=16, depth=1, heads=1, pretrain_steps=2, pretrain_batch=2
    )
    first = toy.pretrained_model(cfg, cache=tmp_path)
    files = list(tmp_path.glob("*.safetensors"))
    assert len(files) == 1 and cfg.key() in files[0].name
    again = toy.pretrained_model(cfg, cache=tmp_path)
    for (k, a), (_, b) in zip(first.state_dict().items(), again.state_dict().items(), strict=True):
        assert torch.equal(a, b), k


def test_pairs_come_from_the_store_ranked_by_reward(setting) -> None:
    _, cands, pairs, _, _ = setting
    assert len(pairs) > 0 and pairs.pair_set.groups_used == CFG.scenes
    for i in range(len(pairs)):
        ex = pairs[i]
        p = pairs.pair_set.pairs[i]
        assert ex.s_winner > ex.s_loser
        # the winner is the candidate with the higher reward, and the stored latent is the sampled clip
        winner = torch.isclose(cands.rewards, torch.tensor(ex.s_winner)).nonzero().flatten()
        assert any(torch.equal(cands.clips[j], ex.x0_winner) for j in winner), p
        assert ex.cond in range(CFG.scenes)


@pytest.mark.parametrize("method", ["gapo", "dpo", "sft"])
def test_training_moves_the_samples_and_stays_finite(setting, method: str) -> None:
    base, _, pairs, prompts, noise = setting
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        before = eval_reward(base, CFG, noise, prompts)
        run = train_one(
            base, CFG, pairs, method, seed=0, eval_noise=noise, eval_prompts=prompts, before=before,
            steps=4, eval_every=4, learning_rate=3e-3, grad_accum=2, rank=4,
        )
        curve, model, lora, result = run.curve, run.model, run.lora, run.result
        assert result.status == "completed" and result.steps_done == 4
        assert all(math.isfinite(m.loss) and math.isfinite(m.policy_loss) for m in result.history)
        if method == "gapo":
            # step 0: LoRA at zero = the reference, so each pair's loss is g · ln 2 exactly
            ex = [pairs[i] for i in range(len(pairs))]
            g = [float(gap_weight(torch.tensor([e.s_winner]), torch.tensor([e.s_loser]), "pow2")) for e in ex]
            assert min(g) * LN2 - 1e-6 <= result.history[0].loss <= max(g) * LN2 + 1e-6
        assert curve.steps == [0, 4] and math.isfinite(curve.final) and 0.0 < curve.final <= 1.0

        with torch.no_grad():
            trained = toy.sample(toy.ToyFlowDenoiser(model), prompts, noise, steps=toy.DEFAULT_SAMPLE_STEPS)
            with lora.disabled():
                reference = toy.sample(toy.ToyFlowDenoiser(model), prompts, noise, steps=toy.DEFAULT_SAMPLE_STEPS)
            pretrained = toy.sample(toy.ToyFlowDenoiser(base), prompts, noise, steps=toy.DEFAULT_SAMPLE_STEPS)
        assert torch.equal(reference, pretrained)  # LoRA off = the pretrained model, bit for bit
        assert (trained - pretrained).abs().max() > 1e-3  # the LoRA changed what the model samples
        assert not torch.equal(toy.reward(trained), toy.reward(pretrained))  # ... and so the reward moved
    finally:
        torch.set_num_threads(threads)
