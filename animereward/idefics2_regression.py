"""`visual_smoothness` and `visual_appeal`: the two Idefics2-8B (Mantis) regression reward models.

Faithful port of the official inference (`reward/reward_infer.py` of bilibili/Index-anisora), written on
transformers' own `Idefics2Model` instead of the Mantis fork:

- frames: the official 24-frame sampling (`preprocess.sample_frame_indices`), fed as uint8 RGB images at their
  own resolution to the checkpoint folder's own processor (AutoProcessor, the slow PIL image processor; the
  official folders were saved with `do_image_splitting=False`). For that processor's recipe (no splitting)
  the pixels are made by `clip_pixel_values` with the same bits, faster: the processor's own output size, PIL
  resize of each frame on a few threads, and its rescale/normalise applied through a table built by its own
  methods (see `PixelRecipe`); any other image processor is called as it is. Both regression models share
  the result within a call (the call's `ClipMemo`);
- text: `REGRESSION_QUERY_PROMPT` with the user's prompt, then `"<image> "` once per frame;
- model: `Idefics2Model` under the attribute `model` and `score = nn.Linear(hidden, num_labels)` with bias, so
  the state-dict keys are exactly those of Mantis' `Idefics2ForSequenceClassification` checkpoints
  (`model.vision_model.*`, `model.connector.*`, `model.text_model.*`, `score.weight`, `score.bias`);
- pooling: the hidden state of the last real token (the official run has batch 1 and no padding, so Mantis'
  pad-token search lands on the last token; we pad on the right and read the position from the attention mask,
  which gives the same token and the same values: causal attention and positions are untouched by right pads);
- score: `logits[:, 0] / 100`.

One deliberate deviation from transformers: the vision position ids. The official checkpoints were trained
and are run with the Idefics2 code copied into Mantis (the transformers 4.40 era), which buckets patch
coordinates made by `torch.arange(0, 1 - 1e-6, 1 / n)` in float32. Current transformers (checked: 4.57.6)
computes `i / n * (1 - 1e-6)` in the pixel dtype, which puts some patches in the neighbouring bucket: for a
16:9 video (resized to 551×980, 39×70 patches) every patch column from the second on moves down one bucket.
We compute them the official way (`official_position_ids`), so the port matches the official scores.

Clamp policy: the regression head is unbounded (a logit of 103 or -2 is possible). `forward` returns the score
clamped to [0, 1], as the scorer contract requires; the unclamped `logit / 100` of the last call is kept in
`last_raw_scores`, and `raw_scores(**inputs)` returns it directly. The official code rounds the logit to 3
decimals before dividing; we do not round (rounding is for display).

Heavy imports (transformers model classes) happen inside functions: importing this module costs only torch.
"""

from __future__ import annotations

import functools
import importlib.util
import json
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import nn

from .clip_memo import ClipMemo, memoised
from .dimensions import DIMENSIONS, WEIGHTS_SOURCE
from .file_kinds import not_a_checkpoint, sniff
from .preprocess import apply_lut, channel_lut, resize_uint8, sample_frame_indices, sampled_uint8
from .scorer_protocol import ClipBatch
from .weights_layout import index_shards

# Copied verbatim from the official `reward_infer.py` (a fact of the trained models: they saw this text).
REGRESSION_QUERY_PROMPT = """
Suppose you are an expert in judging and evaluating the quality of AI-generated videos,
please watch the following frames of a given video and see the text prompt for generating the video,
then give scores from quality dimensions: the quality of the video in terms of clearness, resolution, brightness, and color

Output a float number from 0 to 100,
the higher the number is, the better the video performs in that sub-score, 
the lowest 0 means Bad, the highest 100 means Perfect/Real (the video is like a real video)

For this video, the text prompt is "{text_prompt}",
all the frames of video are as follows:
"""  # noqa: W291 (the trailing space after "sub-score," is in the official text)

IMAGE_TOKEN = "<image>"
SPECIAL_TOKENS = ("<image>", "<fake_token_around_image>", "<end_of_utterance>")
OFFICIAL_ARCHITECTURE = "Idefics2ForSequenceClassification"
LOGIT_SCALE = 100.0

DIMENSIONS_SERVED: tuple[str, ...] = ("visual_smoothness", "visual_appeal")
# Official checkpoint folders (under the hub repo's reward/weights/), for error messages; and the
# quantisations: both as the registry declares them.
OFFICIAL_FOLDERS: dict[str, str] = {d: DIMENSIONS[d].files.relpath for d in DIMENSIONS_SERVED}  # type: ignore[union-attr]
QUANTIZATIONS: tuple[str | None, ...] = (None, *DIMENSIONS["visual_appeal"].quantizations)
DTYPES: tuple[torch.dtype, ...] = (torch.float32, torch.bfloat16, torch.float16)


def build_eval_prompt(text_prompt: str | None, num_frames: int) -> str:
    """The official query: template + prompt, then `"<image> "` per frame.

    The official code counts `<image>` already in the text; a user prompt containing the processor's special
    tokens would break the image count, so they are removed from the prompt first (the only deviation).
    """
    text = text_prompt or ""
    for tok in SPECIAL_TOKENS:
        text = text.replace(tok, "")
    prompt = REGRESSION_QUERY_PROMPT.format(text_prompt=text)
    missing = num_frames - prompt.count(IMAGE_TOKEN)
    if missing > 0:
        prompt += "<image> " * missing
    return prompt


@dataclass(frozen=True)
class PixelRecipe:
    """What the slow `Idefics2ImageProcessor` does to an RGB uint8 frame when it does not split images:
    resize to `get_resize_output_image_size` with PIL (`resample`), then rescale and normalise, elementwise,
    i.e. a per-channel function of the uint8 value, held as a table built by the processor's own methods."""

    size: dict[str, int] | None  # shortest_edge/longest_edge, None when the processor does not resize
    resample: int
    lut: np.ndarray  # [1,256,3] float32, for cv2.LUT
    key: str  # the processor settings that matter, for the per-call memo

    def output_size(self, height: int, width: int) -> tuple[int, int]:
        if self.size is None:
            return height, width
        from transformers.models.idefics2.image_processing_idefics2 import get_resize_output_image_size

        probe = np.broadcast_to(np.zeros((1, 1, 3), np.uint8), (height, width, 3))  # only its shape is read
        h, w = get_resize_output_image_size(probe, self.size, "channels_last")
        return int(h), int(w)


def pixel_recipe(image_processor: Any) -> PixelRecipe | None:
    """The recipe of the official (slow, non-splitting) Idefics2 image processor; None for any other, which is
    then called as it is."""
    if type(image_processor).__name__ != "Idefics2ImageProcessor" or image_processor.do_image_splitting:
        return None
    size = dict(image_processor.size) if image_processor.do_resize else None
    if size is not None and set(size) != {"shortest_edge", "longest_edge"}:
        return None
    ip = image_processor

    def values(ramp: torch.Tensor) -> torch.Tensor:  # [256,3] uint8 -> [256,3], through the processor's methods
        x = ramp.numpy()[None]  # a 1x256 RGB image
        if ip.do_rescale:
            x = ip.rescale(x, scale=ip.rescale_factor, input_data_format="channels_last")
        if ip.do_normalize:
            x = ip.normalize(x, mean=ip.image_mean, std=ip.image_std, input_data_format="channels_last")
        return torch.from_numpy(np.asarray(x, dtype=np.float32)[0])

    settings = {k: getattr(ip, k) for k in ("do_resize", "size", "resample", "do_rescale", "rescale_factor",
                                              "do_normalize", "image_mean", "image_std")}
    return PixelRecipe(size, int(ip.resample), channel_lut(values), json.dumps(settings, sort_keys=True, default=str))


def clip_pixel_values(processor: Any, recipe: PixelRecipe | None, frames: torch.Tensor,
                      memo: ClipMemo | None = None) -> torch.Tensor:
    """[t,3,h,w] float32 pixel values of a clip's official frames, as `processor.image_processor` makes them
    (memoised in the call's memo: both regression models read them)."""

    def compute() -> torch.Tensor:
        u8 = sampled_uint8(frames, memo)
        if recipe is None:
            images = [Image.fromarray(f) for f in u8]
            return processor.image_processor(images=[images], return_tensors="pt")["pixel_values"][0]
        h, w = recipe.output_size(u8.shape[1], u8.shape[2])
        resized = u8 if (h, w) == u8.shape[1:3] else resize_uint8(u8, (h, w), recipe.resample)
        return apply_lut(resized, recipe.lut)

    key = ("idefics2_pixels", recipe.key if recipe is not None else id(processor))
    return memoised(memo, frames, key, compute)


def official_position_ids(patch_attention_mask: torch.Tensor, num_patches_per_side: int) -> torch.Tensor:
    """Vision position ids [B, h*w] exactly as the official (transformers-4.40/Mantis) Idefics2 computes them.

    Coordinates are `arange(0, 1 - 1e-6, 1/n)` in float32 on the CPU (n = real patches along the axis, the step
    being the float32 value of 1/n), bucketed into `num_patches_per_side` bins.
    """
    batch_size, nb_h, nb_w = patch_attention_mask.shape
    boundaries = torch.arange(1 / num_patches_per_side, 1.0, 1 / num_patches_per_side)
    mask_cpu = patch_attention_mask.detach().to("cpu", torch.bool)
    position_ids = torch.zeros((batch_size, nb_h * nb_w), dtype=torch.long)
    for b in range(batch_size):
        mask = mask_cpu[b]
        step_h = float(1 / mask[:, 0].sum())  # 1 / int64 tensor -> float32, as in the official code
        step_w = float(1 / mask[0].sum())
        coords_h = torch.arange(0, 1 - 1e-6, step_h)
        coords_w = torch.arange(0, 1 - 1e-6, step_w)
        bucket_h = torch.bucketize(coords_h, boundaries, right=True)
        bucket_w = torch.bucketize(coords_w, boundaries, right=True)
        pos = (bucket_h[:, None] * num_patches_per_side + bucket_w).flatten()
        position_ids[b][mask.view(-1)] = pos
    return position_ids


def _official_embeddings_forward(
    self: Any, pixel_values: torch.Tensor, patch_attention_mask: torch.Tensor
) -> torch.Tensor:
    """Idefics2VisionEmbeddings.forward with the official position ids (see the module docstring)."""
    patch_embeds = self.patch_embedding(pixel_values)
    embeddings = patch_embeds.flatten(2).transpose(1, 2)
    position_ids = official_position_ids(patch_attention_mask, self.num_patches_per_side)
    return embeddings + self.position_embedding(position_ids.to(self.position_embedding.weight.device))


@functools.cache
def scorer_class() -> type:
    """The scorer class, built on first use so that importing this module never imports transformers models."""
    from transformers.models.idefics2.modeling_idefics2 import (
        Idefics2Model,
        Idefics2PreTrainedModel,
        Idefics2VisionEmbeddings,
    )

    class OfficialIdefics2VisionEmbeddings(Idefics2VisionEmbeddings):
        forward = _official_embeddings_forward

    class Idefics2RegressionScorer(Idefics2PreTrainedModel):
        """Idefics2Model + linear `score` head; the keys of Mantis' Idefics2ForSequenceClassification."""

        def __init__(self, config: Any) -> None:
            super().__init__(config)
            self.model = Idefics2Model(config)
            self.score = nn.Linear(config.text_config.hidden_size, config.num_labels)  # bias, as Mantis
            self.model.vision_model.embeddings.__class__ = OfficialIdefics2VisionEmbeddings
            self.name = "visual_appeal"
            self.processor: Any = None
            self.max_batch = 4
            self.vision_chunk = 8
            self.last_raw_scores: torch.Tensor | None = None
            self.post_init()

        @functools.cached_property
        def fast_pixels(self) -> PixelRecipe | None:
            """The processor's pixel recipe, derived on first use (`processor` is set after construction)."""
            return pixel_recipe(self.processor.image_processor)

        # -- contract -------------------------------------------------------------------------------------
        def preprocess(self, batch: ClipBatch) -> dict[str, torch.Tensor]:
            """Per clip: official frames + query through the folder's processor; then right-pad into a batch.

            Returns input_ids/attention_mask [N,L] (right padded), pixel_values [N,F,3,H,W] (zero padded, model
            dtype) and image_sizes [N,3] = (frames, height, width) of each clip's own processed images.
            """
            if self.processor is None:
                raise RuntimeError("no processor: build the scorer with build_scorer()")
            per_clip = []
            for i, frames in enumerate(batch.frames):
                prompt = batch.prompts[i] if i < len(batch.prompts) else None
                pixels = clip_pixel_values(self.processor, self.fast_pixels, frames, batch.memo)
                # Text alone: the processor expands each <image> the same way with or without the images.
                num_images = len(sample_frame_indices(frames.shape[0]))  # splitting makes more pixel rows
                enc = dict(self.processor(text=build_eval_prompt(prompt, num_images), return_tensors="pt"))
                enc["pixel_values"] = pixels[None]
                per_clip.append(enc)
            n = len(per_clip)
            lengths = [int(e["input_ids"].shape[1]) for e in per_clip]
            shapes = [tuple(e["pixel_values"].shape[1:]) for e in per_clip]  # (F, 3, H, W)
            pad_id = self.processor.tokenizer.pad_token_id
            pad_id = 0 if pad_id is None else int(pad_id)
            input_ids = torch.full((n, max(lengths)), pad_id, dtype=torch.long)
            attention_mask = torch.zeros((n, max(lengths)), dtype=torch.long)
            f_max, _, h_max, w_max = (max(s[k] for s in shapes) for k in range(4))
            pixel_values = torch.zeros((n, f_max, 3, h_max, w_max), dtype=torch.float32)
            image_sizes = torch.zeros((n, 3), dtype=torch.long)
            for i, (enc, (f, _, h, w)) in enumerate(zip(per_clip, shapes, strict=True)):
                input_ids[i, : lengths[i]] = enc["input_ids"][0]
                attention_mask[i, : lengths[i]] = enc["attention_mask"][0]
                pixel_values[i, :f, :, :h, :w] = enc["pixel_values"][0]
                image_sizes[i] = torch.tensor([f, h, w])
            dev = self.device
            return {
                "input_ids": input_ids.to(dev),
                "attention_mask": attention_mask.to(dev),
                "pixel_values": pixel_values.to(dev, self.dtype),
                "image_sizes": image_sizes.to(dev),
            }

        @torch.no_grad()
        def raw_scores(
            self,
            input_ids: torch.Tensor,
            attention_mask: torch.Tensor,
            pixel_values: torch.Tensor,
            image_sizes: torch.Tensor,
        ) -> torch.Tensor:
            """Unclamped `logit / 100` per clip, float32 [N]; `max_batch` clips per padded forward."""
            out = []
            for start in range(0, input_ids.shape[0], max(1, int(self.max_batch))):
                sl = slice(start, start + max(1, int(self.max_batch)))
                out.append(self._logits(input_ids[sl], attention_mask[sl], pixel_values[sl], image_sizes[sl]))
            raw = torch.cat(out).float() / LOGIT_SCALE
            self.last_raw_scores = raw.detach().cpu()
            return raw

        def forward(
            self,
            input_ids: torch.Tensor,
            attention_mask: torch.Tensor,
            pixel_values: torch.Tensor,
            image_sizes: torch.Tensor,
        ) -> torch.Tensor:
            """Scores in [0,1] (clamped), float32 [N]; the unclamped values stay in `last_raw_scores`."""
            return self.raw_scores(input_ids, attention_mask, pixel_values, image_sizes).clamp(0.0, 1.0)

        # -- internals ------------------------------------------------------------------------------------
        def image_features(self, pixel_values: torch.Tensor) -> torch.Tensor:
            """[F,3,H,W] of one clip (no padding) -> [F*latents, D]; `vision_chunk` frames per vision call."""
            feats = []
            step = max(1, int(self.vision_chunk))
            for s in range(0, pixel_values.shape[0], step):
                feats.append(self.model.get_image_features(pixel_values[None, s : s + step].to(self.dtype)))
            return torch.cat(feats)

        def _logits(
            self,
            input_ids: torch.Tensor,
            attention_mask: torch.Tensor,
            pixel_values: torch.Tensor,
            image_sizes: torch.Tensor,
        ) -> torch.Tensor:
            lengths = attention_mask.long().sum(-1)
            width = int(lengths.max())
            input_ids, attention_mask = input_ids[:, :width], attention_mask[:, :width]
            # Each clip's images are cropped back to their own size, so the vision tower sees exactly what the
            # official batch-1 run sees (no pixel padding, every patch real).
            feats = [
                self.image_features(pixel_values[i, :f, :, :h, :w])
                for i, (f, h, w) in enumerate(image_sizes.tolist())
            ]
            hidden = self.model(
                input_ids=input_ids,
                attention_mask=attention_mask,
                image_hidden_states=torch.cat(feats),
                use_cache=False,
            ).last_hidden_state
            last = hidden[
                torch.arange(hidden.shape[0], device=hidden.device), (lengths - 1).to(hidden.device)
            ]
            return self.score(last.to(self.score.weight.dtype))[:, 0]

    return Idefics2RegressionScorer


# -- loading --------------------------------------------------------------------------------------------------


def _weight_files(folder: Path) -> list[Path]:
    if (folder / "model.safetensors.index.json").is_file():
        return index_shards(folder)  # checked: a JSON object whose shards stay inside the folder
    single = folder / "model.safetensors"
    if single.is_file():
        return [single]
    if any(folder.glob("pytorch_model*.bin")):
        raise ValueError(
            f"{folder} holds pytorch_model*.bin pickles; this pack loads safetensors only. Convert the folder once "
            "(load it with the official code and save_pretrained(..., safe_serialization=True))."
        )
    raise ValueError(f"{folder} has no model.safetensors or model.safetensors.index.json")


def checkpoint_shapes(folder: Path) -> dict[str, tuple[int, ...]]:
    """Key -> shape of every tensor in the folder's safetensors shards (headers only, nothing is loaded)."""
    from safetensors import safe_open

    shapes: dict[str, tuple[int, ...]] = {}
    for path in _weight_files(folder):
        try:
            with safe_open(str(path), framework="pt") as f:
                for key in f.keys():  # noqa: SIM118 (safe_open is not a mapping)
                    shapes[key] = tuple(f.get_slice(key).get_shape())
        except Exception as exc:  # safetensors raises its own error type; any failure here is the file's
            reason = not_a_checkpoint(path, "safetensors") or f"{path} is not a readable safetensors file"
            raise ValueError(f"unreadable: {reason} ({type(exc).__name__}: {str(exc)[:200]})") from exc
    return shapes


def check_keys(expected: dict[str, tuple[int, ...]], found: dict[str, tuple[int, ...]], where: str) -> None:
    """Strict key/shape comparison; the error lists every missing, unexpected and mis-shaped key."""
    missing = sorted(set(expected) - set(found))
    unexpected = sorted(set(found) - set(expected))
    mismatched = sorted(k for k in set(expected) & set(found) if tuple(expected[k]) != tuple(found[k]))
    if missing or unexpected or mismatched:
        lines = [f"{where} does not match the official Idefics2ForSequenceClassification layout:"]
        if missing:
            lines.append(f"  missing keys ({len(missing)}): {missing}")
        if unexpected:
            lines.append(f"  unexpected keys ({len(unexpected)}): {unexpected}")
        if mismatched:
            lines.append(
                "  shape mismatches: " + ", ".join(f"{k} {found[k]} != {expected[k]}" for k in mismatched)
            )
        raise ValueError("\n".join(lines))


def _quantization_config(quantization: str | None, device: torch.device, dtype: torch.dtype) -> Any:
    if quantization not in QUANTIZATIONS:
        raise ValueError(f"quantization must be one of {QUANTIZATIONS}, got {quantization!r}")
    if quantization is None:
        return None
    if device.type != "cuda" or not torch.cuda.is_available():
        raise ValueError(
            f"quantization={quantization!r} needs a CUDA GPU (bitsandbytes); on {device.type} use "
            "quantization=None (dtype=torch.bfloat16 halves the memory of float32)."
        )
    if importlib.util.find_spec("bitsandbytes") is None:
        raise ValueError(
            f"quantization={quantization!r} needs the bitsandbytes package: `pip install bitsandbytes` in "
            "ComfyUI's Python environment, or use quantization=None with dtype=torch.bfloat16."
        )
    from transformers import BitsAndBytesConfig

    if quantization == "8bit":
        return BitsAndBytesConfig(load_in_8bit=True, llm_int8_skip_modules=["score"])
    return BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type="nf4",
        bnb_4bit_compute_dtype=dtype,
        llm_int8_skip_modules=["score"],
    )


def build_scorer(
    dimension: str,
    weights: Path | str,
    *,
    dtype: torch.dtype = torch.float32,
    device: str | torch.device = "cpu",
    quantization: str | None = None,
    max_batch: int = 4,
    vision_chunk: int = 8,
) -> nn.Module:
    """Load an official `checkpoint-final/` folder strictly into our Idefics2 regression scorer.

    weights: the HF folder (config.json, safetensors shards, processor and tokenizer files). Keys and shapes
    are checked against our class before anything is loaded (any missing/unexpected key is an error), and again
    from transformers' loading report. quantization: None, "8bit" or "4bit" (CUDA + bitsandbytes only; the
    `score` head stays unquantised; pass dtype=torch.bfloat16 as the compute dtype).
    max_batch: clips per padded forward; vision_chunk: frames per vision-tower call (memory knobs only).
    """
    if dimension not in OFFICIAL_FOLDERS:
        raise ValueError(f"idefics2_regression serves {DIMENSIONS_SERVED}, not {dimension!r}")
    if dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {DTYPES}, got {dtype}")
    device = torch.device(device)
    qconfig = _quantization_config(quantization, device, dtype)
    folder = Path(weights)
    if not (folder / "config.json").is_file():
        raise ValueError(
            f"{folder} is not a checkpoint folder (no config.json). {dimension} expects the official "
            f"weights/{OFFICIAL_FOLDERS[dimension]}/ from {WEIGHTS_SOURCE}."
        )
    other = next(d for d in OFFICIAL_FOLDERS if d != dimension)
    if OFFICIAL_FOLDERS[other].split("/")[0] in str(folder.resolve()):
        warnings.warn(
            f"{folder} looks like the official {other} checkpoint, but it is loaded as {dimension}",
            stacklevel=2,
        )

    from transformers import AutoConfig, AutoProcessor

    check_json_files(folder)
    config = _read_pretrained(AutoConfig, folder, "config.json")
    if config.model_type != "idefics2":
        raise ValueError(f"{folder}/config.json is a {config.model_type!r} model, not idefics2")
    archs = getattr(config, "architectures", None) or []
    if archs and OFFICIAL_ARCHITECTURE not in archs:
        raise ValueError(f"{folder}/config.json declares {archs}, expected [{OFFICIAL_ARCHITECTURE!r}]")

    cls = scorer_class()
    with torch.device("meta"):
        skeleton = cls(config)
    expected = {k: tuple(v.shape) for k, v in skeleton.state_dict().items()}
    del skeleton
    check_keys(expected, checkpoint_shapes(folder), str(folder))

    kwargs: dict[str, Any] = {"dtype": dtype, "output_loading_info": True}
    if qconfig is not None:
        index = device.index if device.index is not None else torch.cuda.current_device()
        kwargs.update(quantization_config=qconfig, device_map={"": index})
    model, info = cls.from_pretrained(folder, **kwargs)
    problems = {
        k: v for k, v in info.items() if v and k in ("missing_keys", "unexpected_keys", "mismatched_keys")
    }
    if problems:
        raise ValueError(f"{folder}: transformers reported {problems}")
    if qconfig is None:
        model.to(device)
    model.eval()
    model.requires_grad_(False)
    model.name = dimension
    model.max_batch = max_batch
    model.vision_chunk = vision_chunk
    model.processor = _read_pretrained(AutoProcessor, folder, "preprocessor_config.json, tokenizer_config.json "
                                       "or tokenizer.json/tokenizer.model", use_fast=False)
    return model


# The JSON files transformers reads from a checkpoint folder (tokenizer.json may be several MB: still cheap).
JSON_FILES = ("config.json", "preprocessor_config.json", "processor_config.json", "tokenizer_config.json",
              "tokenizer.json", "special_tokens_map.json", "added_tokens.json", "generation_config.json",
              "chat_template.json")


def check_json_files(folder: Path) -> None:
    """Each JSON file the folder holds must be a JSON object; else a ValueError naming the file (transformers'
    own errors for such files range from naming nothing to an AttributeError deep inside a tokenizer)."""
    for name in JSON_FILES:
        path = folder / name
        if not path.is_file():
            continue
        try:
            data = json.loads(path.read_bytes().decode("utf-8"))
            why = None if isinstance(data, dict) else f"it holds a JSON {type(data).__name__}"
        except (OSError, UnicodeDecodeError, ValueError, RecursionError) as exc:
            why = f"{type(exc).__name__}: {str(exc)[:200]}"
        if why is not None:
            what = sniff(path) or ""  # a download gone wrong says so (LFS pointer, HTML page, empty file)
            hint = f"; it {what}" if any(k in what for k in ("LFS", "HTML", "empty")) else ""
            raise ValueError(f"unreadable: {path}: not a JSON object ({why}){hint}; fetch it again from the "
                             "official repository")


def _read_pretrained(auto: Any, folder: Path, files: str, **kwargs: Any) -> Any:
    """`auto.from_pretrained(folder)`, with any failure on the folder's files reported as a ValueError that
    names the folder and the files read (transformers raises many kinds, some naming nothing)."""
    try:
        return auto.from_pretrained(folder, **kwargs)
    except Exception as exc:
        raise ValueError(
            f"unreadable: {folder} ({files}): {type(exc).__name__}: {str(exc)[:300]}; fetch the folder's "
            "files again from the official repository"
        ) from exc
