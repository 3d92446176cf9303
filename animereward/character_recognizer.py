"""The character recogniser of `character_consistency`: BLIP ViT-L/16 + `vision_proj`, as the official code uses it.

Official: `reward/character/BLIP/blip_models/blip_pretrain.py` (`BLIP_Pretrain(vit='large')`, checkpoint
`character/IP_checkpoints/blip_checkpoints/animate_recoginzer.pth`, key `model`) and
`infer_retrieval_pretrain_v2.py` (`compute_gallery_embeds`, `evaluation`). Facts this port matches:

- the ViT is the same module as the ViT-B consistency models (`blip_vit.VisionTransformer`), at the large
  size: width 1024, 24 blocks, 16 heads, patch 16, 224²; the embedding is `vision_proj(vit(x)[:, 0])`
  (1024 → 256) and is **not** L2-normalised (the official retrieval multiplies the raw projections);
- gallery images: PIL RGB, squash to 224×224 bicubic, CLIP mean/std (`transform_test`);
- query crops: per tracked object, the frames where its mask is not empty, `step = n // 8`,
  `frames[::step][:8]` (None when fewer than 8); each crop is the mask's bounding box of the frame times the
  mask (background black), padded to a square (centred, black), written as JPEG by `cv2.imwrite` (quality 95)
  and read back, squashed to 224×224 **bilinear**, CLIP mean/std;
- score: similarities query × gallery, averaged over the gallery images of one identity (names lower-cased),
  softmax over identities (temperature 1), mean over the 8 frames, top-1 probability; the clip's score is the
  mean over its tracked objects.

The official loader is `load_state_dict(strict=False)` after dropping shape mismatches; ours is strict: every
module key must be present with its shape, and the checkpoint's other keys (the BLIP pretraining parts the
recogniser never runs) are dropped by name and logged.
"""

from __future__ import annotations

import hashlib
import logging
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import nn

from .blip_vit import VisionTransformer
from .checkpoints import file_sha256, load_checkpoint_dict, load_state_dict_strict, source_sha256
from .preprocess import IMAGE_SIZE, normalize, resize_uint8

log = logging.getLogger(__name__)

CHECKPOINT_KEY = "model"
VIT_L = {"width": 1024, "depth": 24, "heads": 16}
EMBED_DIM = 256
QUERY_FRAMES = 8
JPEG_QUALITY = 95  # cv2.imwrite's default, which the official query crops go through
CHUNK = 32

# Keys of the recogniser checkpoint the inference path never reads (BLIP pretraining parts), dropped on purpose.
RECOGNIZER_UNUSED = (
    "visual_encoder_m.",
    "vision_proj_m.",
    "text_encoder.",
    "text_encoder_m.",
    "text_proj.",
    "text_proj_m.",
    "itm_head.",
    "text_decoder.",
    "image_queue",
    "text_queue",
    "queue_ptr",
    "temp",
)


class CharacterRecognizer(nn.Module):
    """BLIP ViT + `vision_proj`: image → 256-d identity embedding (official key names)."""

    def __init__(self, width: int = VIT_L["width"], depth: int = VIT_L["depth"], heads: int = VIT_L["heads"],
                 embed_dim: int = EMBED_DIM) -> None:
        """Defaults are the official ViT-L sizes; smaller ones build the same classes for tests and benches."""
        super().__init__()
        self.visual_encoder = VisionTransformer(embed_dim=width, depth=depth, num_heads=heads)
        self.vision_proj = nn.Linear(width, embed_dim)
        self.chunk = CHUNK
        self.weights_hash = ""  # identifies the weights: keys the gallery cache (set by the loader)

    @torch.no_grad()
    def embed(self, images: torch.Tensor) -> torch.Tensor:
        """Preprocessed images [B,3,224,224] → fp32 embeddings [B,256], `chunk` images per ViT call."""
        p = self.vision_proj.weight
        if images.shape[0] == 0:
            return torch.empty(0, p.shape[0])
        out = [self.vision_proj(self.visual_encoder(c.to(p.device, p.dtype))[:, 0]).float().cpu()
               for c in images.split(self.chunk)]
        return torch.cat(out, 0)


def state_fingerprint(module: nn.Module) -> str:
    """SHA-256 over a module's tensors (names, shapes, bytes): the cache key of weights not read from a file."""
    h = hashlib.sha256()
    for name, t in sorted(module.state_dict().items()):
        h.update(name.encode())
        h.update(str(tuple(t.shape)).encode())
        h.update(t.detach().float().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def _rename(key: str) -> str | None:
    return None if key.startswith(RECOGNIZER_UNUSED) else key


def load_weights(model: CharacterRecognizer, state: dict[str, torch.Tensor], what: str) -> None:
    """Strict load with the deliberate drops above; logs what was dropped."""
    dropped = [k for k in state if _rename(k) is None]
    if dropped:
        log.info("%s: not loading %d checkpoint keys unused at inference: %s", what, len(dropped),
                 dict(Counter(k.split(".")[0] for k in dropped)))
    load_state_dict_strict(model, state, _rename, what)


def build_recognizer(weights: Path, *, dtype: torch.dtype = torch.float32,
                     device: str | torch.device = "cpu", **sizes: int) -> CharacterRecognizer:
    """The official recogniser from `animate_recoginzer.pth` (or its converted `.safetensors`), strict keys.

    `sizes` (width, depth, heads, embed_dim) default to the official ViT-L; tests pass small ones."""
    weights = Path(weights)
    with torch.device("meta"):
        model = CharacterRecognizer(**sizes)
    state = load_checkpoint_dict(weights, CHECKPOINT_KEY,
                                 check=lambda s: load_weights(model, s, f"character recogniser {weights}"))
    del state
    model.weights_hash = weights_hash(weights)
    return model.to(device=device, dtype=dtype).eval().requires_grad_(False)


def weights_hash(weights: Path) -> str:
    """SHA-256 of the official `.pth` (as its converted copy recorded it, when fresh); a lone `.safetensors`
    is hashed itself."""
    pth = weights.with_suffix(".pth")
    return source_sha256(pth) if pth.is_file() else file_sha256(weights)


# ---------------------------------------------------------------- preprocessing


def gallery_image(path: Path) -> torch.Tensor:
    """One gallery image as the official `transform_test` gives it: [3,224,224]."""
    with Image.open(path) as im:
        rgb = np.asarray(im.convert("RGB"))
    return normalize(resize_uint8(rgb[None], IMAGE_SIZE, Image.BICUBIC))[0]


def masked_square_crop(frame: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """uint8 frame [H,W,3] and boolean mask [H,W] → the mask's bounding box, background black, padded square."""
    ys, xs = np.nonzero(mask)
    if ys.size == 0:
        raise ValueError("masked_square_crop: empty mask")
    y0, y1, x0, x1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
    crop = frame[y0:y1, x0:x1] * mask[y0:y1, x0:x1, None].astype(np.uint8)
    h, w = crop.shape[:2]
    side = max(h, w)
    top, left = (side - h) // 2, (side - w) // 2
    out = np.zeros((side, side, 3), dtype=np.uint8)
    out[top:top + h, left:left + w] = crop
    return out


def jpeg_roundtrip(rgb: np.ndarray, quality: int = JPEG_QUALITY) -> np.ndarray:
    """The official crops are saved with cv2.imwrite and read back with PIL: the JPEG loss is part of the input."""
    import cv2

    ok, buf = cv2.imencode(".jpg", np.ascontiguousarray(rgb[:, :, ::-1]), [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise RuntimeError("JPEG encoding of a character crop failed")
    return np.ascontiguousarray(cv2.imdecode(buf, cv2.IMREAD_COLOR)[:, :, ::-1])


def select_track_frames(masks: Sequence[np.ndarray], num: int = QUERY_FRAMES) -> list[int] | None:
    """Official frame choice for one object: frames whose mask is not empty, every `n // num`-th, first `num`."""
    present = [i for i, m in enumerate(masks) if m.any()]
    step = len(present) // num
    if step == 0:
        return None
    return present[::step][:num]


def query_crops(frames: np.ndarray, masks: Sequence[np.ndarray], *, num: int = QUERY_FRAMES,
                jpeg: bool = True) -> torch.Tensor | None:
    """One tracked object → its `num` preprocessed crops [num,3,224,224], or None (seen in fewer frames)."""
    chosen = select_track_frames(masks, num)
    if chosen is None:
        return None
    crops = []
    for i in chosen:
        sq = masked_square_crop(frames[i], masks[i])
        if jpeg:
            sq = jpeg_roundtrip(sq)
        crops.append(resize_uint8(sq[None], IMAGE_SIZE, Image.BILINEAR)[0])
    return normalize(np.stack(crops))


# ---------------------------------------------------------------- scoring


@dataclass(frozen=True)
class IdentityScore:
    """One tracked object's result: the top-1 identity, its probability, and the full distribution."""

    identity: str
    probability: float
    distribution: torch.Tensor  # [num_identities], mean over frames of the per-frame softmax


def identity_probabilities(query: torch.Tensor, gallery: torch.Tensor, identity_index: torch.Tensor,
                           num_identities: int) -> torch.Tensor:
    """Query embeddings [F,D], gallery [G,D], identity of each gallery row [G] → mean over frames of the
    softmax over identities of the per-identity mean similarity: [num_identities] (the official `evaluation`)."""
    sims = query.float() @ gallery.float().t()  # [F,G], raw projections (no normalisation), temperature 1
    sums = torch.zeros(sims.shape[0], num_identities).index_add_(1, identity_index, sims)
    counts = torch.bincount(identity_index, minlength=num_identities).clamp_min(1).float()
    return torch.softmax(sums / counts, dim=-1).mean(0)
