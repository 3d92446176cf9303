"""`visual_motion`: the official AnimeReward motion model, ActionCLIP, ported to plain torch.

Official reference: `bilibili/Index-anisora` (commit 171fe63) `reward/reward_infer.py` (motion block,
`prepare_text_embedding`) and `reward/models/{load,actionclip,adapter}.py`. The model is OpenAI CLIP ViT-B/16
(both towers) plus mmaction2's ActionCLIP `TransformerAdapter` (6 CLIP transformer layers over the 8 frames).
The score is the softmax probability, at the fixed logit scale 100, that the clip matches the "large range
of movement" prompt rather than the "remain stationary" one.

Parameter names are the official ones (`clip.*`, `adapter.*` of the mmengine checkpoint's `state_dict`),
so the checkpoint loads with an identity key map and nothing dropped. The official motion model runs in
float32 even on a GPU (`clip.load(device='cpu')` makes it fp32 before the checkpoint is loaded), which is
why float32 is the default here; LayerNorms compute in float32 whatever the dtype, as OpenAI CLIP's do.

The two prompts are fixed, so their token ids are constants (no `clip` package needed, see
`PROMPT_TOKEN_IDS`) and their text features are computed once at load; the text tower is then dropped.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from .checkpoints import load_checkpoint_dict, load_state_dict_strict
from .preprocess import MOTION_FRAMES, motion_frame_indices, sampled_clip
from .scorer_protocol import ClipBatch

DIMENSION = "visual_motion"

# reward_infer.py `prepare_text_embedding` ("for 2 types infer"), template '{}'. Index 0 is the score.
PROMPTS: tuple[str, str] = (
    "The protagonist has a large range of movement, such as running, jumping, dancing, or waving arms.",
    "The protagonist remain stationary in the video with no apparent movement.",
)

# `clip.tokenize(PROMPTS)` of OpenAI CLIP (byte-level BPE, bpe_simple_vocab_16e6), up to and including the
# end-of-text token; the rest of the 77 positions are 0. Recorded from the official tokenizer (see
# tests/golden/actionclip/README.md) and re-checked by the tests against the recorded ids and, when the
# dev-only `openai-clip` package is installed, against two BPE implementations.
SOT_TOKEN = 49406
EOT_TOKEN = 49407
CONTEXT_LENGTH = 77
PROMPT_TOKEN_IDS: tuple[tuple[int, ...], ...] = (
    (49406, 518, 38183, 791, 320, 3638, 3818, 539, 5208, 267, 2046, 601, 2761, 267, 11476, 267, 6226, 267,
     541, 26545, 5706, 269, 49407),
    (49406, 518, 38183, 6415, 29493, 530, 518, 1455, 593, 871, 23963, 5208, 269, 49407),
)

# reward_infer.py: `probs = (100.0 * video_features @ text_features.T).softmax(dim=-1)`; the checkpoint's
# `clip.logit_scale` is loaded (strict) but not used, as in the official code.
LOGIT_SCALE = 100.0

IMAGE_SIZE = 224
PATCH_SIZE = 16
VOCAB_SIZE = 49408


@dataclass(frozen=True)
class ActionClipSize:
    """Tower sizes. The defaults are what `clip.load('ViT-B/16')` builds plus ActionCLIP's adapter (init_actionclip
    mode='self': 8 segments; 6 layers, counted from the checkpoint): the official checkpoint's shapes. Smaller
    sizes build the same classes, with the same forward code, for tests and benchmarks."""

    embed_dim: int = 512
    vision_width: int = 768
    vision_layers: int = 12
    text_width: int = 512
    text_layers: int = 12
    adapter_layers: int = 6
    head_width: int = 64  # attention heads = width // head_width (the adapter's from text_width, as upstream)

    @property
    def vision_heads(self) -> int:
        return self.vision_width // self.head_width

    @property
    def text_heads(self) -> int:
        return self.text_width // self.head_width


OFFICIAL_SIZE = ActionClipSize()


def prompt_token_ids() -> torch.Tensor:
    """The two prompts as `clip.tokenize` returns them: int64 [2, 77], zero padded (official: int32)."""
    ids = torch.zeros(len(PROMPT_TOKEN_IDS), CONTEXT_LENGTH, dtype=torch.long)
    for row, seq in enumerate(PROMPT_TOKEN_IDS):
        ids[row, : len(seq)] = torch.tensor(seq, dtype=torch.long)
    return ids


class Linear(nn.Linear):
    """nn.Linear without random initialisation: every weight comes from the strict checkpoint load, and
    initialising ~140M weights only to overwrite them costs seconds per load."""

    def reset_parameters(self) -> None:
        pass


class Embedding(nn.Embedding):
    """nn.Embedding without random initialisation (see `Linear`)."""

    def reset_parameters(self) -> None:
        pass


class LayerNorm(nn.LayerNorm):
    """LayerNorm computed in float32 and cast back (OpenAI CLIP's subclass; matters for fp16/bf16)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weight = self.weight.float() if self.weight is not None else None
        bias = self.bias.float() if self.bias is not None else None
        out = F.layer_norm(x.float(), self.normalized_shape, weight, bias, self.eps)
        return out.to(x.dtype)


class QuickGELU(nn.Module):
    """x · sigmoid(1.702 x): the activation CLIP was trained with (not exact GELU)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(1.702 * x)


class SelfAttention(nn.Module):
    """nn.MultiheadAttention's parameters (`in_proj_weight`, `in_proj_bias`, `out_proj`) computed with SDPA.

    Batch-first [B, L, D]; the official code runs nn.MultiheadAttention on [L, B, D]. Same attention (over L
    within each batch item), so the layout is an implementation detail.
    """

    def __init__(self, width: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.in_proj_weight = nn.Parameter(torch.empty(3 * width, width))
        self.in_proj_bias = nn.Parameter(torch.empty(3 * width))
        self.out_proj = Linear(width, width)

    def forward(self, x: torch.Tensor, causal: bool) -> torch.Tensor:
        b, n, d = x.shape
        q, k, v = F.linear(x, self.in_proj_weight, self.in_proj_bias).chunk(3, dim=-1)
        q, k, v = (t.reshape(b, n, self.heads, d // self.heads).transpose(1, 2) for t in (q, k, v))
        out = F.scaled_dot_product_attention(q, k, v, is_causal=causal)
        return self.out_proj(out.transpose(1, 2).reshape(b, n, d))


class ResidualAttentionBlock(nn.Module):
    """Pre-LN CLIP block: x + attn(ln_1(x)), then x + mlp(ln_2(x)) with QuickGELU (eps 1e-5)."""

    def __init__(self, width: int, heads: int) -> None:
        super().__init__()
        self.attn = SelfAttention(width, heads)
        self.ln_1 = LayerNorm(width)
        self.mlp = nn.Sequential(
            OrderedDict(
                [("c_fc", Linear(width, width * 4)), ("gelu", QuickGELU()),
                 ("c_proj", Linear(width * 4, width))]
            )
        )
        self.ln_2 = LayerNorm(width)

    def forward(self, x: torch.Tensor, causal: bool) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x), causal)
        return x + self.mlp(self.ln_2(x))


class Transformer(nn.Module):
    """CLIP's `Transformer` (`resblocks.N.*`); `causal` is the text tower's triangular mask."""

    def __init__(self, width: int, layers: int, heads: int, causal: bool = False) -> None:
        super().__init__()
        self.causal = causal
        self.resblocks = nn.ModuleList(ResidualAttentionBlock(width, heads) for _ in range(layers))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.resblocks:
            x = block(x, self.causal)
        return x


class VisionTransformer(nn.Module):
    """CLIP ViT-B/16 image tower: patch conv (no bias), CLS, ln_pre, 12 blocks, ln_post(CLS) @ proj."""

    def __init__(self, size: ActionClipSize = OFFICIAL_SIZE) -> None:
        super().__init__()
        grid, width = IMAGE_SIZE // PATCH_SIZE, size.vision_width
        self.conv1 = nn.Conv2d(3, width, kernel_size=PATCH_SIZE, stride=PATCH_SIZE, bias=False)
        self.class_embedding = nn.Parameter(torch.empty(width))
        self.positional_embedding = nn.Parameter(torch.empty(grid * grid + 1, width))
        self.ln_pre = LayerNorm(width)
        self.transformer = Transformer(width, size.vision_layers, size.vision_heads)
        self.ln_post = LayerNorm(width)
        self.proj = nn.Parameter(torch.empty(width, size.embed_dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """[B, 3, 224, 224] normalised images → [B, 512] (unnormalised) image features."""
        x = self.conv1(x.to(self.conv1.weight.dtype)).flatten(2).transpose(1, 2)  # [B, 196, 768]
        cls = self.class_embedding.to(x.dtype).expand(x.shape[0], 1, -1)
        x = torch.cat([cls, x], dim=1) + self.positional_embedding.to(x.dtype)
        x = self.transformer(self.ln_pre(x))
        return self.ln_post(x[:, 0, :]) @ self.proj


class CLIP(nn.Module):
    """OpenAI CLIP ViT-B/16 with its official parameter names (the `clip.*` part of the checkpoint)."""

    def __init__(self, size: ActionClipSize = OFFICIAL_SIZE) -> None:
        super().__init__()
        width = size.text_width
        self.visual = VisionTransformer(size)
        self.transformer = Transformer(width, size.text_layers, size.text_heads, causal=True)
        self.token_embedding = Embedding(VOCAB_SIZE, width)
        self.positional_embedding = nn.Parameter(torch.empty(CONTEXT_LENGTH, width))
        self.ln_final = LayerNorm(width)
        self.text_projection = nn.Parameter(torch.empty(width, size.embed_dim))
        self.logit_scale = nn.Parameter(torch.empty(()))  # in the checkpoint; unused (fixed scale 100)

    def encode_text(self, ids: torch.Tensor) -> torch.Tensor:
        """[P, 77] token ids → [P, 512]: features at the end-of-text token (argmax id) @ text_projection."""
        x = self.token_embedding(ids) + self.positional_embedding.to(self.token_embedding.weight.dtype)
        x = self.ln_final(self.transformer(x))
        return x[torch.arange(x.shape[0], device=x.device), ids.argmax(dim=-1)] @ self.text_projection


class TemporalAdapter(nn.Module):
    """ActionCLIP's TransformerAdapter: frame positions, 6 CLIP blocks over the frames, residual, mean."""

    def __init__(self, size: ActionClipSize = OFFICIAL_SIZE, num_segments: int = MOTION_FRAMES) -> None:
        super().__init__()
        self.frame_position_embeddings = Embedding(num_segments, size.embed_dim)
        self.transformer = Transformer(size.embed_dim, size.adapter_layers, size.text_heads)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """[N, S, 512] per-frame features → [N, 512] video features."""
        pos = self.frame_position_embeddings.weight[: x.shape[1]]
        y = self.transformer(x + pos.unsqueeze(0))  # attention across the S frames of each clip, no mask
        return (y.to(x.dtype) + x).mean(dim=1)


class ActionClip(nn.Module):
    """The official `ActionClip` (mmaction2 project, as used by AnimeReward): keys `clip.*`, `adapter.*`."""

    def __init__(self, size: ActionClipSize = OFFICIAL_SIZE) -> None:
        super().__init__()
        self.clip = CLIP(size)
        self.adapter = TemporalAdapter(size)


def actionclip_from_state_dict(state: dict[str, torch.Tensor],
                               what: str = "ActionCLIP (visual_motion) checkpoint") -> ActionClip:
    """An fp32 CPU `ActionClip` holding exactly `state` (strict: every official key, nothing else).

    The module is allocated uninitialised (`torch.empty`, no-op `reset_parameters`): the strict load
    overwrites every parameter or raises, so nothing uninitialised can survive.
    """
    model = ActionClip()
    load_state_dict_strict(model, state, rename=lambda key: key, what=what)
    return model.float().eval()


class ActionClipMotionScorer(nn.Module):
    """`visual_motion` scorer: image tower + adapter, prompt text features cached as a buffer."""

    name = DIMENSION

    def __init__(self, model: ActionClip) -> None:
        super().__init__()
        with torch.no_grad():
            text = model.clip.encode_text(prompt_token_ids().to(model.clip.token_embedding.weight.device))
            text = text.float() / text.float().norm(dim=-1, keepdim=True)
        self.visual = model.clip.visual
        self.adapter = model.adapter
        # Normalised [2, 512] features of PROMPTS; not part of the checkpoint (recomputed at every load).
        self.register_buffer("text_features", text, persistent=False)
        self.eval()

    @property
    def dtype(self) -> torch.dtype:
        return self.visual.conv1.weight.dtype

    @property
    def device(self) -> torch.device:
        return self.visual.conv1.weight.device

    def preprocess(self, batch: ClipBatch) -> dict[str, torch.Tensor]:
        """The official 24-frame `img_all` of each clip, then its 8 motion frames: video [N, 8, 3, 224, 224]."""
        clips = []
        for frames in batch.frames:
            img_all = sampled_clip(frames, batch.memo)
            clips.append(img_all[motion_frame_indices(img_all.shape[0])])
        video = torch.stack(clips) if clips else torch.empty(0, MOTION_FRAMES, 3, IMAGE_SIZE, IMAGE_SIZE)
        return {"video": video.to(device=self.device, dtype=self.dtype)}

    def encode_video(self, video: torch.Tensor) -> torch.Tensor:
        """[N, S, 3, 224, 224] → [N, 512] unnormalised video features (all N·S frames in one tower call)."""
        n, s = video.shape[:2]
        frames = self.visual(video.reshape(n * s, *video.shape[2:]))
        return self.adapter(frames.reshape(n, s, -1))

    def probs_from_features(self, video_features: torch.Tensor) -> torch.Tensor:
        """[N, 512] video features → [N, 2] float32 softmax over (large movement, stationary), scale 100."""
        feats = video_features.float()
        feats = feats / feats.norm(dim=-1, keepdim=True)
        return (LOGIT_SCALE * feats @ self.text_features.float().T).softmax(dim=-1)

    @torch.no_grad()
    def forward(self, video: torch.Tensor) -> torch.Tensor:
        """Motion scores [N] in [0, 1]: probability of the "large range of movement" prompt."""
        return self.probs_from_features(self.encode_video(video))[:, 0]


def scorer_from_state_dict(
    state: dict[str, torch.Tensor], *, dtype: torch.dtype = torch.float32, device: str | torch.device = "cpu",
    what: str = "ActionCLIP (visual_motion) checkpoint",
) -> ActionClipMotionScorer:
    """Strictly load the official `state_dict`, cache the prompt features (fp32), then move and cast."""
    scorer = ActionClipMotionScorer(actionclip_from_state_dict(state, what))
    # Text features stay float32 (they are final); only the towers take `dtype`.
    scorer.visual.to(device=device, dtype=dtype)
    scorer.adapter.to(device=device, dtype=dtype)
    scorer.text_features = scorer.text_features.to(device)
    return scorer


def build_scorer(
    dimension: str, weights: Path, *, dtype: torch.dtype = torch.float32, device: str | torch.device = "cpu"
) -> ActionClipMotionScorer:
    """The `visual_motion` scorer from the official mmengine checkpoint (`testvl-pre76-top187-rec69.pth`,
    entry `state_dict`) or its converted `.safetensors`."""
    if dimension != DIMENSION:
        raise ValueError(f"actionclip builds only the {DIMENSION!r} dimension, not {dimension!r}")
    built: list[ActionClipMotionScorer] = []
    what = f"{DIMENSION} checkpoint {weights}"  # errors name the file, like the other dimensions'
    # Building is the key check: it runs before a .pth is converted, so a broken file leaves no copy.
    load_checkpoint_dict(Path(weights), key="state_dict",
                         check=lambda state: built.append(scorer_from_state_dict(state, dtype=dtype, device=device,
                                                                                 what=what)))
    return built[-1]
