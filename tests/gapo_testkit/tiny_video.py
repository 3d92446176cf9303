"""A tiny Wan-shaped video denoiser for tests and benchmarks (plain torch, no gapo_trainer, no ComfyUI).

`TinyWanModel` has the module names of ComfyUI's WanModel where LoRA targets them
(`blocks.N.self_attn.q/k/v/o`, `blocks.N.cross_attn.q/k/v/o`, `blocks.N.ffn.0/2`), a patchifying Conv3d,
timestep modulation per block and a text-conditioning cross-attention. `TinyVideoDenoiser` wraps it in the
trainer's Denoiser protocol for eps, v (DDPM schedule) or flow (rectified flow with shift) prediction, and
`sample()` draws clips from it (DDIM for eps/v, Euler for flow), for the alignment toy.
"""

from __future__ import annotations

import itertools
import math
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint


def sinusoid(values: torch.Tensor, dim: int) -> torch.Tensor:
    """[N] -> [N, dim] sinusoidal embedding (Wan's timestep embedding)."""
    half = dim // 2
    freqs = torch.exp(-math.log(10000.0) * torch.arange(half, dtype=torch.float32, device=values.device) / half)
    args = values.float()[:, None] * freqs[None]
    return torch.cat([torch.cos(args), torch.sin(args)], dim=1)


class Attention(nn.Module):
    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.q = nn.Linear(dim, dim)
        self.k = nn.Linear(dim, dim)
        self.v = nn.Linear(dim, dim)
        self.o = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        context = x if context is None else context
        b, n, d = x.shape
        h = self.heads
        q = self.q(x).view(b, n, h, d // h).transpose(1, 2)
        k = self.k(context).view(b, context.shape[1], h, d // h).transpose(1, 2)
        v = self.v(context).view(b, context.shape[1], h, d // h).transpose(1, 2)
        y = F.scaled_dot_product_attention(q, k, v)
        return self.o(y.transpose(1, 2).reshape(b, n, d))


class TinyWanBlock(nn.Module):
    def __init__(self, dim: int, ffn_dim: int, heads: int) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, elementwise_affine=False)
        self.self_attn = Attention(dim, heads)
        self.norm3 = nn.LayerNorm(dim)
        self.cross_attn = Attention(dim, heads)
        self.norm2 = nn.LayerNorm(dim, elementwise_affine=False)
        self.ffn = nn.Sequential(nn.Linear(dim, ffn_dim), nn.GELU(approximate="tanh"), nn.Linear(ffn_dim, dim))
        self.modulation = nn.Parameter(torch.randn(1, 6, dim) / dim**0.5)

    def forward(self, x: torch.Tensor, e: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        e0, e1, e2, e3, e4, e5 = (self.modulation + e).chunk(6, dim=1)
        x = x + self.self_attn(self.norm1(x) * (1 + e1) + e0) * e2
        x = x + self.cross_attn(self.norm3(x), context)
        return x + self.ffn(self.norm2(x) * (1 + e4) + e3) * e5


class TinyWanModel(nn.Module):
    """x [B, C, T, H, W], t [B] (0..1000), context [B, L, text_dim] -> [B, C, T, H, W]."""

    def __init__(self, in_channels: int = 4, dim: int = 64, ffn_dim: int = 128, heads: int = 4, layers: int = 2,
                 patch: tuple[int, int, int] = (1, 2, 2), text_dim: int = 32, freq_dim: int = 64) -> None:
        super().__init__()
        self.in_channels, self.dim, self.patch, self.freq_dim = in_channels, dim, patch, freq_dim
        self.patch_embedding = nn.Conv3d(in_channels, dim, kernel_size=patch, stride=patch)
        self.text_embedding = nn.Sequential(nn.Linear(text_dim, dim), nn.GELU(approximate="tanh"), nn.Linear(dim, dim))
        self.time_embedding = nn.Sequential(nn.Linear(freq_dim, dim), nn.SiLU(), nn.Linear(dim, dim))
        self.time_projection = nn.Sequential(nn.SiLU(), nn.Linear(dim, dim * 6))
        self.blocks = nn.ModuleList(TinyWanBlock(dim, ffn_dim, heads) for _ in range(layers))
        self.head_norm = nn.LayerNorm(dim, elementwise_affine=False)
        self.head = nn.Linear(dim, in_channels * math.prod(patch))
        self.gradient_checkpointing = False

    def positions(self, t: int, h: int, w: int, device: torch.device) -> torch.Tensor:
        d = self.dim // 3 // 2 * 2
        grids = torch.meshgrid(*(torch.arange(n, device=device) for n in (t, h, w)), indexing="ij")
        pe = torch.cat([sinusoid(g.reshape(-1).float(), d) for g in grids], dim=1)
        return F.pad(pe, (0, self.dim - pe.shape[1]))

    def forward(self, x: torch.Tensor, t: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        b, c, frames, height, width = x.shape
        pt, ph, pw = self.patch
        tokens = self.patch_embedding(x)
        gt, gh, gw = tokens.shape[2:]
        tokens = tokens.flatten(2).transpose(1, 2) + self.positions(gt, gh, gw, x.device).to(tokens.dtype)
        e = self.time_embedding(sinusoid(t, self.freq_dim).to(tokens.dtype))
        e6 = self.time_projection(e).view(b, 6, self.dim)
        ctx = self.text_embedding(context.to(tokens.dtype))
        for block in self.blocks:
            if self.gradient_checkpointing and torch.is_grad_enabled():
                tokens = checkpoint(block, tokens, e6, ctx, use_reentrant=False)
            else:
                tokens = block(tokens, e6, ctx)
        out = self.head(self.head_norm(tokens))
        out = out.view(b, gt, gh, gw, c, pt, ph, pw).permute(0, 4, 1, 5, 2, 6, 3, 7)
        return out.reshape(b, c, frames, height, width)


PredictionType = Literal["eps", "v", "flow"]


class TinyVideoDenoiser:
    """The Denoiser protocol on a TinyWanModel. eps/v: DDPM linear betas, t = integer step index as float;
    flow: t = sigma in (0, 1), x_t = (1 - sigma) x0 + sigma noise, target noise - x0, `shift` as Wan."""

    def __init__(self, model: nn.Module, prediction_type: PredictionType = "flow", num_train_timesteps: int = 1000,
                 shift: float = 1.0) -> None:
        self.model = model
        self._prediction_type = prediction_type
        self.num_train_timesteps = num_train_timesteps
        self.shift = shift
        betas = torch.linspace(1e-4, 0.02, num_train_timesteps, dtype=torch.float64)
        self.alphas_cumprod = torch.cumprod(1.0 - betas, dim=0).float()

    @property
    def prediction_type(self) -> PredictionType:
        return self._prediction_type

    def alpha_bar(self, t: torch.Tensor) -> torch.Tensor:
        return self.alphas_cumprod.to(t.device)[t.long()]

    def shift_sigma(self, sigma: torch.Tensor) -> torch.Tensor:
        return self.shift * sigma / (1 + (self.shift - 1) * sigma)

    def sample_timesteps(self, n: int, generator: torch.Generator) -> torch.Tensor:
        if self._prediction_type == "flow":
            return self.shift_sigma(torch.rand(n, generator=generator).clamp(1e-3, 1.0))
        return torch.randint(0, self.num_train_timesteps, (n,), generator=generator).float()

    @staticmethod
    def _bc(v: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        return v.to(like.device, like.dtype).view(-1, *([1] * (like.ndim - 1)))

    def add_noise(self, x0: torch.Tensor, noise: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        if self._prediction_type == "flow":
            s = self._bc(t, x0)
            return (1 - s) * x0 + s * noise
        a = self._bc(self.alpha_bar(t), x0)
        return a.sqrt() * x0 + (1 - a).sqrt() * noise

    def target(self, x0: torch.Tensor, noise: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        if self._prediction_type == "flow":
            return noise - x0
        if self._prediction_type == "eps":
            return noise
        a = self._bc(self.alpha_bar(t), x0)
        return a.sqrt() * noise - (1 - a).sqrt() * x0

    def model_time(self, t: torch.Tensor) -> torch.Tensor:
        return t * 1000.0 if self._prediction_type == "flow" else t

    def predict(self, x_t: torch.Tensor, t: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        ctx = cond if cond.ndim == 3 else cond.unsqueeze(0)
        ctx = ctx.expand(x_t.shape[0], -1, -1)
        return self.model(x_t, self.model_time(t), ctx)

    def set_gradient_checkpointing(self, enabled: bool) -> None:
        self.model.gradient_checkpointing = enabled

    @torch.no_grad()
    def sample(self, shape: tuple[int, ...], cond: torch.Tensor, steps: int = 10,
               generator: torch.Generator | None = None) -> torch.Tensor:
        """Clips [B, C, T, H, W] from pure noise: Euler (flow) or deterministic DDIM (eps, v)."""
        x = torch.randn(shape, generator=generator)
        device = next(self.model.parameters()).device
        x = x.to(device)
        b = shape[0]
        if self._prediction_type == "flow":
            sigmas = self.shift_sigma(torch.linspace(1.0, 0.0, steps + 1))
            for s, s_next in itertools.pairwise(sigmas):
                v = self.predict(x, s.expand(b).to(device), cond)
                x = x + (s_next - s).item() * v
            return x
        ts = torch.linspace(self.num_train_timesteps - 1, 0, steps).round()
        for i, t in enumerate(ts):
            tb = t.expand(b).to(device)
            a = self._bc(self.alpha_bar(tb), x)
            out = self.predict(x, tb, cond)
            if self._prediction_type == "eps":
                eps, x0 = out, (x - (1 - a).sqrt() * out) / a.sqrt()
            else:
                x0, eps = a.sqrt() * x - (1 - a).sqrt() * out, (1 - a).sqrt() * x + a.sqrt() * out
            if i + 1 < len(ts):
                a_next = self._bc(self.alpha_bar(ts[i + 1].expand(b).to(device)), x)
                x = a_next.sqrt() * x0 + (1 - a_next).sqrt() * eps
            else:
                x = x0
        return x


class ListPairs:
    """A PairSource over a list of examples (anything with the PairExample fields)."""

    def __init__(self, examples: list) -> None:
        self.examples = list(examples)

    def __len__(self) -> int:
        return len(self.examples)

    def __getitem__(self, index: int):
        return self.examples[index]
