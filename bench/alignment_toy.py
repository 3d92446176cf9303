"""The alignment toy: a tiny video flow model whose samples carry defects, a known reward, and preference pairs.

Issue 9 item 6 asks whether GAPO aligns at all, on something small enough to run on two CPU cores. This module
holds everything the answer needs apart from the training core (gapo_trainer's losses, LoRA and loop):

- clips: `animereward.synthetic_clips` scenes rendered at 64x64 and area-downsampled to 16x16, 8 frames
  ([3, 8, 16, 16] in -1..1). Each "prompt" is a scene seed; the pretraining set holds the clean clip of each
  scene and its flicker, jitter and freeze twins (two strengths each), so the pretrained model's samples for a
  prompt come out near the clean clip or near a defective twin (docs/alignment.md says which, and how often).
- model: `TinyVideoDiT`, a Wan-shaped transformer in miniature (patch embedding, adaLN time modulation, self
  attention, cross attention to the prompt's context tokens, feed-forward; module names `self_attn.q/k/v/o`,
  `cross_attn.q/k/v/o`, `ffn.0/ffn.2` as in Wan), so the core's LoRA finds the layers it would find on Wan.
  It predicts the clean clip and returns the velocity that follows from it (see `velocity_from_x0`).
- denoiser: `ToyFlowDenoiser` implements `gapo_trainer.protocols.Denoiser` with rectified flow as Wan trains:
  x_t = (1 - sigma) x0 + sigma noise, target = noise - x0, sigma drawn uniformly then shifted
  (sigma = s u / (1 + (s - 1) u), shift s = 2). `sample` integrates the flow ODE with Euler on the same
  shifted schedule.
- reward: `animereward.flow_metrics.flow_smoothness` on the 16x16 frames (the metric raises them to its 32-px
  floor): clean clips score ~0.87, freeze ~0.70, jitter ~0.08, flicker ~0.04, and residual noise costs too.

The two libraries do not import each other (DESIGN §3); this module needs both, so it lives in bench/.
"""

from __future__ import annotations

import copy
import hashlib
import itertools
import json
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from gapo_trainer.protocols import PredictionType

DEFAULT_SAMPLE_STEPS = 8
"""Euler steps for candidates and evaluations (the last one lands on the model's clean-clip prediction)."""

KINDS: tuple[str, ...] = ("clean", "flicker", "jitter", "freeze")
"""What a pretraining clip shows: the clean motion or one defect."""


@dataclass(frozen=True)
class ToyConfig:
    """Everything that decides the pretrained toy model (its cache key)."""

    scenes: int = 4
    frames: int = 8
    size: int = 16
    render_scale: int = 4  # render at size * scale, area-downsample: clean anti-aliased edges at 16 px
    strengths: tuple[float, ...] = (0.6, 1.0)
    patch: tuple[int, int, int] = (2, 4, 4)
    dim: int = 64
    depth: int = 3
    heads: int = 4
    context_tokens: int = 4
    shift: float = 2.0
    data_std: float = 0.5
    sigma_min: float = 0.05
    pretrain_steps: int = 2000
    pretrain_batch: int = 32
    pretrain_lr: float = 2e-3
    ema_decay: float = 0.995
    seed: int = 0

    def key(self) -> str:
        return hashlib.sha256(json.dumps(asdict(self), sort_keys=True).encode()).hexdigest()[:16]


# ---------------------------------------------------------------------------------------------- clips


def render_clip(scene: int, kind: str, strength: float, cfg: ToyConfig) -> torch.Tensor:
    """One clip as the model sees it: [3, T, size, size] in -1..1."""
    from animereward.synthetic_clips import make_clip

    big = cfg.size * cfg.render_scale
    clip = make_clip(
        scene, frames=cfg.frames, height=big, width=big, shapes=2,
        defects=() if kind == "clean" else (kind,), strength=strength,
    )  # [T, H, W, 3] in 0..1
    small = F.interpolate(clip.permute(0, 3, 1, 2), size=(cfg.size, cfg.size), mode="area")
    return small.permute(1, 0, 2, 3).contiguous() * 2.0 - 1.0


def pretraining_clips(cfg: ToyConfig) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    """The pretraining set: per scene the clean clip and each defect at each strength.

    Returns clips [N, 3, T, H, W], their scene ids [N] and kinds. Kinds are sampled with equal weight in
    pretraining (see `pretrain`), so a quarter of the training signal is clean motion.
    """
    clips, scenes, kinds = [], [], []
    for scene in range(cfg.scenes):
        for kind in KINDS:
            for strength in (1.0,) if kind == "clean" else cfg.strengths:
                clips.append(render_clip(scene, kind, strength, cfg))
                scenes.append(scene)
                kinds.append(kind)
    return torch.stack(clips), torch.tensor(scenes), kinds


def to_frames(x: torch.Tensor) -> torch.Tensor:
    """Model space [3, T, H, W] in -1..1 -> ComfyUI IMAGE frames [T, H, W, 3] in 0..1 (what the reward reads)."""
    return ((x.float().clamp(-1, 1) + 1) / 2).permute(1, 2, 3, 0).contiguous()


# ---------------------------------------------------------------------------------------------- model


def _timestep_embedding(sigma: torch.Tensor, dim: int) -> torch.Tensor:
    """Sinusoidal embedding of sigma * 1000 (Wan embeds its 0..1000 timestep the same way)."""
    half = dim // 2
    freqs = torch.exp(-math.log(10000.0) * torch.arange(half, dtype=torch.float32, device=sigma.device) / half)
    args = (sigma.float() * 1000.0)[:, None] * freqs[None]
    return torch.cat([torch.cos(args), torch.sin(args)], dim=-1)


class Attention(nn.Module):
    """Multi-head attention with Wan's projection names (q, k, v, o)."""

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.q, self.k, self.v, self.o = (nn.Linear(dim, dim) for _ in range(4))

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        context = x if context is None else context
        b, n, d = x.shape

        def split(t: torch.Tensor) -> torch.Tensor:
            return t.view(b, -1, self.heads, d // self.heads).transpose(1, 2)

        out = F.scaled_dot_product_attention(split(self.q(x)), split(self.k(context)), split(self.v(context)))
        return self.o(out.transpose(1, 2).reshape(b, n, d))


class Block(nn.Module):
    """A Wan-style block: adaLN-modulated self attention, cross attention to the context, modulated FFN."""

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, elementwise_affine=False)
        self.self_attn = Attention(dim, heads)
        self.norm3 = nn.LayerNorm(dim)
        self.cross_attn = Attention(dim, heads)
        self.norm2 = nn.LayerNorm(dim, elementwise_affine=False)
        self.ffn = nn.Sequential(nn.Linear(dim, 4 * dim), nn.GELU(approximate="tanh"), nn.Linear(4 * dim, dim))
        self.modulation = nn.Parameter(torch.randn(1, 6, dim) / dim**0.5)

    def forward(self, x: torch.Tensor, e: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        shift1, scale1, gate1, shift2, scale2, gate2 = (self.modulation + e).unbind(1)
        h = self.norm1(x) * (1 + scale1[:, None]) + shift1[:, None]
        x = x + gate1[:, None] * self.self_attn(h)
        x = x + self.cross_attn(self.norm3(x), context)
        h = self.norm2(x) * (1 + scale2[:, None]) + shift2[:, None]
        return x + gate2[:, None] * self.ffn(h)


def velocity_from_x0(x_t: torch.Tensor, x0_hat: torch.Tensor, sigma: torch.Tensor, sigma_min: float) -> torch.Tensor:
    """v = (x_t - x0_hat) / sigma, sigma clamped below at sigma_min (JiT, Li & He 2025, "Back to Basics").

    The network predicts the clean clip and the velocity follows from it: the noise never has to pass
    through the narrow tokens of a transformer this small (a 96-value patch in 64 channels), which a velocity
    or noise head would need, and which leaves visible noise in its samples.
    """
    return (x_t - x0_hat) / sigma.view(-1, 1, 1, 1, 1).clamp_min(sigma_min)


class TinyVideoDiT(nn.Module):
    """A video flow transformer in miniature: [B, 3, T, H, W] x_t, sigma [B], prompt ids [B] -> velocity.

    Patches of (2, 4, 4) make 4 x 4 x 4 = 64 tokens of width 64; each prompt (scene) id owns
    `context_tokens` learned context tokens, the stand-in for a text encoder's output.
    """

    def __init__(self, cfg: ToyConfig) -> None:
        super().__init__()
        self.cfg = cfg
        pt, ph, pw = cfg.patch
        self.patch_dim = 3 * pt * ph * pw
        self.grid = (cfg.frames // pt, cfg.size // ph, cfg.size // pw)
        n_tokens = self.grid[0] * self.grid[1] * self.grid[2]
        d = cfg.dim
        self.patch_embedding = nn.Linear(self.patch_dim, d)
        self.pos = nn.Parameter(torch.randn(1, n_tokens, d) * 0.02)
        self.context = nn.Embedding(cfg.scenes, cfg.context_tokens * d)
        self.time_embedding = nn.Sequential(nn.Linear(d, d), nn.SiLU(), nn.Linear(d, d))
        self.time_projection = nn.Sequential(nn.SiLU(), nn.Linear(d, 6 * d))
        self.blocks = nn.ModuleList(Block(d, cfg.heads) for _ in range(cfg.depth))
        self.head_norm = nn.LayerNorm(d, elementwise_affine=False)
        self.head = nn.Linear(d, self.patch_dim)
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)

    def _patchify(self, x: torch.Tensor) -> torch.Tensor:
        b, c, _, _, _ = x.shape
        (pt, ph, pw), (gt, gh, gw) = self.cfg.patch, self.grid
        x = x.reshape(b, c, gt, pt, gh, ph, gw, pw).permute(0, 2, 4, 6, 1, 3, 5, 7)
        return x.reshape(b, gt * gh * gw, self.patch_dim)

    def _unpatchify(self, tokens: torch.Tensor) -> torch.Tensor:
        b = tokens.shape[0]
        (pt, ph, pw), (gt, gh, gw) = self.cfg.patch, self.grid
        x = tokens.reshape(b, gt, gh, gw, 3, pt, ph, pw).permute(0, 4, 1, 5, 2, 6, 3, 7)
        return x.reshape(b, 3, gt * pt, gh * ph, gw * pw)

    def forward(self, x: torch.Tensor, sigma: torch.Tensor, prompt: torch.Tensor) -> torch.Tensor:
        d = self.cfg.dim
        s = sigma.to(x.dtype).view(-1, 1, 1, 1, 1)
        c_in = ((1 - s) ** 2 * self.cfg.data_std**2 + s**2).rsqrt()  # unit-variance input at every sigma
        h = self.patch_embedding(self._patchify(x * c_in)) + self.pos
        context = self.context(prompt).view(x.shape[0], self.cfg.context_tokens, d)
        t = self.time_embedding(_timestep_embedding(sigma, d))
        e = self.time_projection(t).view(-1, 6, d)
        for block in self.blocks:
            h = block(h, e, context)
        x0_hat = self._unpatchify(self.head(self.head_norm(h)))
        return velocity_from_x0(x, x0_hat, sigma.to(x.dtype), self.cfg.sigma_min)


# ---------------------------------------------------------------------------------------------- flow


def shift_sigma(u: torch.Tensor, shift: float) -> torch.Tensor:
    """Wan / SD3 time shift: sigma = s u / (1 + (s - 1) u); s > 1 spends more time at high noise."""
    return shift * u / (1 + (shift - 1) * u)


class ToyFlowDenoiser:
    """`gapo_trainer.protocols.Denoiser` on a TinyVideoDiT, rectified flow with a shift (Wan's training).

    `t` is sigma in [0, 1]; `cond` is the prompt id (an int, or a LongTensor of one id per sample).
    """

    def __init__(self, model: TinyVideoDiT, shift: float | None = None) -> None:
        self.model = model
        self.shift = model.cfg.shift if shift is None else shift

    @property
    def prediction_type(self) -> PredictionType:
        return "flow"

    def sample_timesteps(self, n: int, generator: torch.Generator) -> torch.Tensor:
        return shift_sigma(torch.rand(n, generator=generator), self.shift)

    def add_noise(self, x0: torch.Tensor, noise: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        s = t.to(x0.dtype).view(-1, *([1] * (x0.ndim - 1)))
        return (1 - s) * x0 + s * noise

    def target(self, x0: torch.Tensor, noise: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return noise - x0

    def predict(self, x_t: torch.Tensor, t: torch.Tensor, cond: object) -> torch.Tensor:
        prompt = torch.as_tensor(cond, dtype=torch.long).reshape(-1).expand(x_t.shape[0])
        return self.model(x_t, t.to(x_t.dtype), prompt)


@torch.no_grad()
def sample(
    denoiser: ToyFlowDenoiser, prompts: torch.Tensor, noise: torch.Tensor, steps: int = DEFAULT_SAMPLE_STEPS,
    batch: int = 64,
) -> torch.Tensor:
    """Euler over the flow ODE from sigma = 1 (noise) to 0 on the shifted schedule: clips [N, 3, T, H, W]."""
    sigmas = shift_sigma(torch.linspace(1.0, 0.0, steps + 1), denoiser.shift)
    out = []
    for i in range(0, noise.shape[0], batch):
        x, p = noise[i : i + batch].clone(), prompts[i : i + batch]
        for s0, s1 in itertools.pairwise(sigmas):
            v = denoiser.model(x, s0.expand(x.shape[0]), p)
            x = x + (s1 - s0) * v
        out.append(x)
    return torch.cat(out)


def fresh_noise(n: int, cfg: ToyConfig, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 3, cfg.frames, cfg.size, cfg.size, generator=g)


# ---------------------------------------------------------------------------------------------- reward


def reward(clips: torch.Tensor) -> torch.Tensor:
    """flow_smoothness of each clip [N, 3, T, H, W] (model space) -> [N] in (0, 1]."""
    from animereward.flow_metrics import flow_smoothness

    return torch.tensor([flow_smoothness(to_frames(c)) for c in clips], dtype=torch.float32)


# ---------------------------------------------------------------------------------------------- pretraining


def pretrain(cfg: ToyConfig, log_every: int = 0) -> TinyVideoDiT:
    """Train the toy on the clean + defective clips: AdamW, warm-up + cosine, flow loss, equal weight per kind;
    returns the exponential moving average of the weights."""
    torch.manual_seed(cfg.seed)
    clips, scenes, kinds = pretraining_clips(cfg)
    # equal weight per kind, whatever the number of clips of each kind
    counts = {k: kinds.count(k) for k in KINDS}
    weights = torch.tensor([1.0 / counts[k] for k in kinds])
    model = TinyVideoDiT(cfg)
    ema = copy.deepcopy(model)  # the weights we keep: a moving average over the last ~200 steps
    den = ToyFlowDenoiser(model)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.pretrain_lr, weight_decay=0.0)
    warm = max(1, cfg.pretrain_steps // 20)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / warm) * 0.5 * (1 + math.cos(math.pi * min(1.0, s / cfg.pretrain_steps)))
    )
    g = torch.Generator().manual_seed(cfg.seed)
    model.train()
    for step in range(cfg.pretrain_steps):
        idx = torch.multinomial(weights, cfg.pretrain_batch, replacement=True, generator=g)
        x0, p = clips[idx], scenes[idx]
        noise = torch.randn(x0.shape, generator=g)
        t = den.sample_timesteps(x0.shape[0], g)
        loss = F.mse_loss(den.predict(den.add_noise(x0, noise, t), t, p), den.target(x0, noise, t))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        with torch.no_grad():
            decay = min(cfg.ema_decay, (1 + step) / (10 + step))
            for pe, pm in zip(ema.parameters(), model.parameters(), strict=True):
                pe.lerp_(pm, 1 - decay)
        if log_every and (step % log_every == 0 or step == cfg.pretrain_steps - 1):
            print(f"  pretrain step {step:5d}  loss {loss.item():.4f}", flush=True)
    return ema.eval()


def cache_dir() -> Path:
    """Where pretrained toy weights are kept between runs (the repo's git-ignored .cache folder)."""
    return Path(__file__).resolve().parents[1] / ".cache" / "alignment_toy"


def pretrained_model(cfg: ToyConfig, cache: Path | None = None, log_every: int = 0) -> TinyVideoDiT:
    """The pretrained toy for `cfg`, from the safetensors cache when present (keyed by the config)."""
    from safetensors.torch import load_file, save_file

    path = (cache or cache_dir()) / f"tiny_video_dit_{cfg.key()}.safetensors"
    model = TinyVideoDiT(cfg)
    if path.is_file():
        model.load_state_dict(load_file(str(path)))
        return model.eval()
    model = pretrain(cfg, log_every=log_every)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(tmp),
              metadata={"config": json.dumps(asdict(cfg))})
    tmp.replace(path)
    return model


def prompts_for(n_per_scene: int, scenes: int | Sequence[int]) -> torch.Tensor:
    """Prompt ids, each scene repeated n_per_scene times in a row (one group of candidates per scene)."""
    ids = range(scenes) if isinstance(scenes, int) else scenes
    return torch.tensor([s for s in ids for _ in range(n_per_scene)])


# ---------------------------------------------------------------------------------------------- groups and pairs


@dataclass
class Candidates:
    """One seed's candidates: `groups` groups of `n` clips per prompt, sampled from the pretrained model."""

    clips: torch.Tensor  # [G * n, 3, T, H, W]
    prompts: torch.Tensor  # [G * n]
    rewards: torch.Tensor  # [G * n]
    n: int


def sample_candidates(
    denoiser: ToyFlowDenoiser, cfg: ToyConfig, *, seed: int, n: int, groups_per_prompt: int, steps: int
) -> Candidates:
    """n candidates per group, `groups_per_prompt` groups for each prompt, each scored by the reward."""
    prompts = prompts_for(n, [s for s in range(cfg.scenes) for _ in range(groups_per_prompt)])
    clips = sample(denoiser, prompts, fresh_noise(len(prompts), cfg, 10_000 + seed), steps=steps)
    return Candidates(clips, prompts, reward(clips), n)


class StoredPairs:
    """The candidates written to a real `gapo_trainer.store.PreferenceStore` (one group per prompt draw,
    reward scores as the collect node stores them) and paired by `gapo_trainer.pairs.build_pairs`: the pairs
    a trainer node gets from a dataset. Implements `gapo_trainer.protocols.PairSource`."""

    def __init__(self, root: Path, cands: Candidates, *, mode: str = "all", min_gap: float = 0.0,
                 dataset: str = "toy") -> None:
        from gapo_trainer.pairs import build_pairs
        from gapo_trainer.store import CandidateMeta, PreferenceStore

        store = PreferenceStore(root)
        for g0 in range(0, len(cands.prompts), cands.n):
            scene = int(cands.prompts[g0])
            scores = [float(r) for r in cands.rewards[g0 : g0 + cands.n]]
            store.add_group(
                dataset,
                latents=cands.clips[g0 : g0 + cands.n].contiguous(),
                positive=[(torch.tensor([[float(scene)]]), {"scene": scene})],
                negative=[],
                candidates=[
                    CandidateMeta(index=i, seed=None, scores={"flow_smoothness": s}, total=s)
                    for i, s in enumerate(scores)
                ],
                previews=[], preview_ext="webp", model_name="alignment_toy", model_hash=None,
                prompt=f"scene {scene}",
            )
        self.pair_set = build_pairs(store.iter_groups(dataset), mode=mode, min_gap=min_gap)  # type: ignore[arg-type]
        groups = {p.group_id for p in self.pair_set.pairs}
        self._groups = {gid: store.load_group(dataset, gid) for gid in groups}

    def __len__(self) -> int:
        return len(self.pair_set.pairs)

    def __getitem__(self, index: int):  # -> PairExample
        from gapo_trainer.protocols import PairExample

        p = self.pair_set.pairs[index]
        group = self._groups[p.group_id]
        scene = int(group.positive[0][1]["scene"])
        return PairExample(
            pair_id=f"{p.group_id}:{p.winner}>{p.loser}",
            x0_winner=group.latents[p.winner].float(),
            x0_loser=group.latents[p.loser].float(),
            cond=scene,
            s_winner=p.s_winner,
            s_loser=p.s_loser,
        )
