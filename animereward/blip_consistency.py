"""The two BLIP consistency dimensions: `image_video_consistency` and `text_video_consistency`.

Port of the official `models/blip_pretrain.py` (image-video) and `models/blip_pretrain_text.py` (text-video)
`inference` paths, with the official checkpoint key names:

- video feature: every sampled frame through the ViT, the mean over frames of the ViT outputs, CLS token.
  (The official code averages the full [197,768] outputs and then takes CLS; both steps act per token, so
  averaging the CLS vectors alone gives the same numbers.) It goes through `img_proj`.
- image-video: the key image's ViT CLS goes through `img_key_proj`.
- text-video: the prompt's BERT `[CLS]` (last hidden state, position 0) goes through `img_key_proj` too:
  the official text model reuses that name for its text projection. No key-image ViT pass happens.
- score = sigmoid(head_diff(cat[video, second])).

All N clips of a batch are scored together: their frames are stacked into one tensor and go through the
ViT in chunks; per-clip means come from index_add over a frame→clip index, so clips may have different
frame counts.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from .blip_text import BertTextEncoder, load_tokenizer, tokenize
from .blip_vit import VisionTransformer
from .checkpoints import load_checkpoint_dict, load_state_dict_strict
from .clip_validation import require_inputs
from .preprocess import preprocess_frames, sampled_clip
from .scorer_protocol import ClipBatch

log = logging.getLogger(__name__)

IMAGE_VIDEO = "image_video_consistency"
TEXT_VIDEO = "text_video_consistency"
CHECKPOINT_KEY = "model"  # BLIP's train script saves {'model': state_dict, 'optimizer': ..., 'config': ..., 'epoch': ...}
TEXT_WIDTH = 768
VIT_CHUNK = 32  # default frames per ViT call: bounds activation memory; a caller may set `scorer.vit_chunk`

# Checkpoint keys the inference path never reads, dropped on purpose (by prefix) wherever they appear.
# The official classes define none of the BLIP-pretraining parts below, but both were fine-tuned from BLIP's
# model_base.pth (configs/pretrain*.yaml), which has them, and the official loader is load_state_dict(
# strict=False), which would ignore them silently. Listing them keeps our loader strict about everything else.
BLIP_PRETRAIN_UNUSED = (
    "visual_encoder_m.",  # momentum ViT (training-time distillation)
    "text_encoder_m.",  # momentum text encoder
    "vision_proj.",  # ITC projections (256-d), and their momentum copies
    "vision_proj_m.",
    "text_proj.",
    "text_proj_m.",
    "itm_head.",  # image-text matching head
    "text_decoder.",  # captioning decoder
    "image_queue",  # ITC queues and pointer
    "text_queue",
    "queue_ptr",
    "temp",  # ITC temperature
)
# `position_ids` is the arange buffer med.BertEmbeddings registers; we compute it in forward.
# `crossattention.*` layers (config add_cross_attention: true) run only in mode='multimodal', never in 'text'.
_TEXT_UNUSED_INFIXES = (".crossattention.",)


def _rename_image_video(key: str) -> str | None:
    """Identity on our names; drops the unused parts (the image model has no text tower, see above)."""
    if key.startswith(BLIP_PRETRAIN_UNUSED) or key.startswith("text_encoder."):
        return None
    return key


def _rename_text_video(key: str) -> str | None:
    if key.startswith(BLIP_PRETRAIN_UNUSED):
        return None
    if key == "text_encoder.embeddings.position_ids" or (
        key.startswith("text_encoder.") and any(s in key for s in _TEXT_UNUSED_INFIXES)
    ):
        return None
    return key


def _segment_mean(values: torch.Tensor, index: torch.Tensor, num_segments: int) -> torch.Tensor:
    """Mean of the rows of `values` per segment id in `index` (fp32 accumulation, any dtype in/out)."""
    sums = torch.zeros(num_segments, values.shape[1], device=values.device, dtype=torch.float32)
    sums.index_add_(0, index, values.float())
    counts = torch.bincount(index, minlength=num_segments).clamp_min(1).to(sums)
    return (sums / counts[:, None]).to(values.dtype)


def _stack_clips(batch: ClipBatch) -> tuple[torch.Tensor, torch.Tensor]:
    """Official sampling + preprocessing of every clip, stacked: frames [ΣT,3,224,224], clip index [ΣT]."""
    clips = [sampled_clip(f, batch.memo) for f in batch.frames]
    index = torch.cat([torch.full((c.shape[0],), i, dtype=torch.long) for i, c in enumerate(clips)])
    return torch.cat(clips, 0), index


class _BlipConsistency(nn.Module):
    """Shared parts: ViT, the two projections and the 1536→1 head (official names)."""

    name: str

    def __init__(self, width: int = TEXT_WIDTH, depth: int = 12, heads: int = 12) -> None:
        """The defaults are the official ViT-B/16 (and bert-base) sizes; smaller ones build the same classes,
        with the same forward code, for tests and benchmarks."""
        super().__init__()
        self.visual_encoder = VisionTransformer(embed_dim=width, depth=depth, num_heads=heads)
        self.img_proj = nn.Linear(width, width)
        self.img_key_proj = nn.Linear(width, width)
        self.head_diff = nn.Linear(2 * width, 1)
        self.vit_chunk = VIT_CHUNK

    @property
    def _param(self) -> torch.Tensor:
        return self.visual_encoder.pos_embed

    def _cls(self, images: torch.Tensor) -> torch.Tensor:
        """ViT CLS vectors [B,768], `vit_chunk` images per call."""
        return torch.cat([self.visual_encoder(c)[:, 0] for c in images.split(self.vit_chunk)], 0)

    def video_features(self, frames: torch.Tensor, clip_index: torch.Tensor, num_clips: int) -> torch.Tensor:
        return _segment_mean(self._cls(frames), clip_index, num_clips)

    def head(self, video_cls: torch.Tensor, second_cls: torch.Tensor) -> torch.Tensor:
        logit = self.head_diff(torch.cat([self.img_proj(video_cls), self.img_key_proj(second_cls)], -1))
        return torch.sigmoid(logit.float())[:, 0]

    def _to_module(self, t: torch.Tensor) -> torch.Tensor:
        p = self._param
        return t.to(device=p.device, dtype=p.dtype if t.is_floating_point() else t.dtype)


class ImageVideoConsistency(_BlipConsistency):
    """How well the clip keeps to its key (first) image: official img-video_consist."""

    name = IMAGE_VIDEO

    def preprocess(self, batch: ClipBatch) -> dict[str, torch.Tensor]:
        missing = [i for i in range(len(batch)) if i >= len(batch.first_frames) or batch.first_frames[i] is None]
        if missing:
            raise ValueError(f"{IMAGE_VIDEO} needs a first frame (key image) for every clip; missing for {missing}")
        frames, index = _stack_clips(batch)
        keys = torch.cat([preprocess_frames(f[None]) for f in batch.first_frames], 0)  # type: ignore[index]
        return {"frames": self._to_module(frames), "clip_index": self._to_module(index), "key_images": self._to_module(keys)}

    def forward(self, frames: torch.Tensor, clip_index: torch.Tensor, key_images: torch.Tensor) -> torch.Tensor:
        video = self.video_features(frames, clip_index, key_images.shape[0])
        return self.head(video, self._cls(key_images))


class TextVideoConsistency(_BlipConsistency):
    """How well the clip follows its prompt: official text-video_consist."""

    name = TEXT_VIDEO

    def __init__(self, vocab_file: Path | None = None, width: int = TEXT_WIDTH, depth: int = 12,
                 heads: int = 12) -> None:
        super().__init__(width, depth, heads)
        self.text_encoder = BertTextEncoder(hidden=width, num_heads=heads, inner=4 * width, depth=depth)
        self.tokenizer = load_tokenizer(vocab_file)

    def preprocess(self, batch: ClipBatch) -> dict[str, torch.Tensor]:
        prompts = [batch.prompts[i] if i < len(batch.prompts) else None for i in range(len(batch))]
        require_inputs([TEXT_VIDEO], prompts, [None] * len(prompts), blank_prompt_ok=True)
        frames, index = _stack_clips(batch)
        ids, mask = tokenize(self.tokenizer, prompts)  # type: ignore[arg-type]
        return {
            "frames": self._to_module(frames),
            "clip_index": self._to_module(index),
            "input_ids": self._to_module(ids),
            "attention_mask": self._to_module(mask),
        }

    def forward(
        self, frames: torch.Tensor, clip_index: torch.Tensor, input_ids: torch.Tensor, attention_mask: torch.Tensor
    ) -> torch.Tensor:
        video = self.video_features(frames, clip_index, input_ids.shape[0])
        text_cls = self.text_encoder(input_ids, attention_mask)[:, 0]
        return self.head(video, text_cls)


_RENAMES: dict[str, Callable[[str], str | None]] = {IMAGE_VIDEO: _rename_image_video, TEXT_VIDEO: _rename_text_video}


def load_weights(scorer: _BlipConsistency, state: dict[str, torch.Tensor], what: str) -> None:
    """Strict load with the deliberate drops above; logs what was dropped (never silent)."""
    rename = _RENAMES[scorer.name]
    dropped = [k for k in state if rename(k) is None]
    if dropped:
        by_prefix = Counter(k.split(".")[0] if ".crossattention." not in k else "text_encoder.*.crossattention" for k in dropped)
        log.info("%s: not loading %d checkpoint keys unused at inference: %s", what, len(dropped), dict(by_prefix))
    load_state_dict_strict(scorer, state, rename, what)


def build_scorer(
    dimension: str, weights: Path, *, dtype: torch.dtype = torch.float32, device: str | torch.device = "cpu"
) -> nn.Module:
    """Scorer for one BLIP consistency dimension from the official `.pth` (or its converted `.safetensors`).

    The module is built on the meta device and the checkpoint tensors are assigned to it (no random init,
    no second copy of the weights). A `vocab.txt` beside the checkpoint overrides the bundled vocabulary.
    """
    weights = Path(weights)
    if dimension == IMAGE_VIDEO:
        with torch.device("meta"):
            scorer: _BlipConsistency = ImageVideoConsistency()
    elif dimension == TEXT_VIDEO:
        user_vocab = weights.parent / "vocab.txt"
        with torch.device("meta"):
            scorer = TextVideoConsistency(user_vocab if user_vocab.is_file() else None)
    else:
        raise ValueError(f"BLIP consistency scorers are {IMAGE_VIDEO!r} and {TEXT_VIDEO!r}, not {dimension!r}")
    # The strict load is the key check: it runs before a .pth is converted, so a broken file leaves no copy.
    load_checkpoint_dict(weights, CHECKPOINT_KEY,
                         check=lambda state: load_weights(scorer, state, f"{dimension} checkpoint {weights}"))
    return scorer.to(device=device, dtype=dtype).eval().requires_grad_(False)
