"""Load the character tracker (transformers' `Sam2VideoModel`) from the official SAM2.1 `.pt` or an HF folder.

The official AnimeReward pipeline ships `character/IP_checkpoints/sam2_checkpoints/sam2.1_hiera_base_plus.pt`,
the facebookresearch/sam2 format: `{"model": state_dict}` with the module names of `SAM2Base` (615 tensors for
hiera-base+, loaded there with `load_state_dict(strict=True)`). transformers names the same weights
differently; its conversion script (`convert_sam2_video_to_hf.py`, not part of the installed package) renames
them, and this module does the same renaming as code of our own, so the official file can be used as it is:

- prefixes: `image_encoder.trunk` → `vision_encoder.backbone`, `image_encoder.neck` → `vision_encoder.neck`,
  `sam_prompt_encoder` → `prompt_encoder`, `sam_mask_decoder` → `mask_decoder`, and a few renamed modules
  (`no_mem_embed` → `no_memory_embedding`, `obj_ptr_proj` → `object_pointer_proj`, `fuser` → `memory_fuser`,
  `out_proj` → `o_proj`, `norm*` → `layer_norm*`, ...);
- the official `MLP.layers[0..n-1]` becomes `proj_in`, `layers[0..n-3]`, `proj_out`;
- `nn.Sequential` indices become names (`output_upscaling.0` → `upscale_conv1`, `mask_downscaling.*`,
  `mask_downsampler.encoder.*`);
- the four `point_embeddings.i` [1,C] are stacked into `point_embed` [4,C]; the prompt encoder's random
  Fourier matrix is also the model's `shared_image_embedding` (transformers ties the two).

Loading is strict: a key of the file that maps nowhere, a key the model needs that the file lacks, a shape
that differs, or integer weights, are a `CheckpointError` naming the file and the keys. The `.pt` is read only
with `torch.load(weights_only=True)` (through `checkpoints.load_checkpoint_dict`, which also names LFS
pointers, HTML pages, empty files, and converts the file once to a `.safetensors` copy beside it).

The config of a `.pt` is built from its tensor shapes (widths, depths, stage boundaries, number of memory
frames, which SAM2.1 parts exist); what shapes cannot tell (attention heads, which Hiera blocks attend
globally, window sizes after the first stage, the 1024 input size) comes from the released variant the trunk's
width and depths identify (tiny, small, base+, large). A trunk of another size needs `config=`.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path
from typing import Any

import torch

from .checkpoints import CheckpointError, load_checkpoint_dict

log = logging.getLogger(__name__)

OFFICIAL_KEY = "model"  # the state dict's entry in a facebookresearch/sam2 `.pt`
OFFICIAL_FILE = "sam2.1_hiera_base_plus.pt"  # what the official pipeline loads (scripts/demo.py)
IMAGE_SIZE = 1024  # SAM2's input size for every released variant
# transformers saves this tied copy of `shared_image_embedding.positional_embedding` or leaves it out.
TIED_KEY = "prompt_encoder.shared_embedding.positional_embedding"
_MAX_LISTED = 40


@dataclass(frozen=True)
class HieraVariant:
    """What a released Hiera trunk's weights do not show: heads, global-attention blocks, window sizes."""

    name: str
    heads_per_stage: tuple[int, int, int, int]
    global_attention_blocks: tuple[int, ...]
    window_size_per_stage: tuple[int, int, int, int]


# Keyed by (trunk width, blocks per stage); values as in the official configs/sam2.1/*.yaml (and sam2/).
VARIANTS: dict[tuple[int, tuple[int, ...]], HieraVariant] = {
    (96, (1, 2, 7, 2)): HieraVariant("hiera-tiny", (1, 2, 4, 8), (5, 7, 9), (8, 4, 14, 7)),
    (96, (1, 2, 11, 2)): HieraVariant("hiera-small", (1, 2, 4, 8), (7, 10, 13), (8, 4, 14, 7)),
    (112, (2, 3, 16, 3)): HieraVariant("hiera-base+", (2, 4, 8, 16), (12, 16, 20), (8, 4, 14, 7)),
    (144, (2, 6, 36, 4)): HieraVariant("hiera-large", (2, 4, 8, 16), (23, 33, 43), (8, 4, 16, 8)),
}

# ---------------------------------------------------------------- official names -> transformers names

# Whole-name-part renames, applied in this order to every key (each pattern is a regex on the full key).
_RENAMES: tuple[tuple[str, str], ...] = (
    (r"^image_encoder\.trunk\.", "vision_encoder.backbone."),
    (r"^image_encoder\.neck\.convs\.(\d+)\.conv\.", r"vision_encoder.neck.convs.\1."),
    (r"^sam_prompt_encoder\.", "prompt_encoder."),
    (r"^sam_mask_decoder\.", "mask_decoder."),
    (r"^maskmem_tpos_enc$", "memory_temporal_positional_encoding"),
    (r"^no_mem_embed$", "no_memory_embedding"),
    (r"^no_mem_pos_enc$", "no_memory_positional_encoding"),
    (r"^no_obj_ptr$", "no_object_pointer"),
    (r"^no_obj_embed_spatial$", "occlusion_spatial_embedding_parameter"),
    (r"^obj_ptr_proj\.", "object_pointer_proj."),
    (r"^obj_ptr_tpos_proj\.", "temporal_positional_encoding_projection_layer."),
    (r"\.patch_embed\.proj\.", ".patch_embed.projection."),
    (r"^prompt_encoder\.pe_layer\.positional_encoding_gaussian_matrix$",
     "prompt_encoder.shared_embedding.positional_embedding"),
    (r"^prompt_encoder\.mask_downscaling\.0\.", "prompt_encoder.mask_embed.conv1."),
    (r"^prompt_encoder\.mask_downscaling\.1\.", "prompt_encoder.mask_embed.layer_norm1."),
    (r"^prompt_encoder\.mask_downscaling\.3\.", "prompt_encoder.mask_embed.conv2."),
    (r"^prompt_encoder\.mask_downscaling\.4\.", "prompt_encoder.mask_embed.layer_norm2."),
    (r"^prompt_encoder\.mask_downscaling\.6\.", "prompt_encoder.mask_embed.conv3."),
    (r"^mask_decoder\.output_upscaling\.0\.", "mask_decoder.upscale_conv1."),
    (r"^mask_decoder\.output_upscaling\.1\.", "mask_decoder.upscale_layer_norm."),
    (r"^mask_decoder\.output_upscaling\.3\.", "mask_decoder.upscale_conv2."),
    (r"^memory_encoder\.pix_feat_proj\.", "memory_encoder.feature_projection."),
    (r"^memory_encoder\.out_proj\.", "memory_encoder.projection."),
    (r"^memory_encoder\.fuser\.", "memory_encoder.memory_fuser."),
    (r"\.dwconv\.", ".depthwise_conv."),
    (r"\.pwconv(\d)\.", r".pointwise_conv\1."),
    (r"\.gamma$", ".scale"),
    (r"\.out_proj\.", ".o_proj."),
    (r"\.norm(\d?|_final_attn)\.", r".layer_norm\1."),
)
_RENAME_RES = tuple((re.compile(p), r) for p, r in _RENAMES)

# Official `MLP` modules (a ModuleList `layers`), in transformers' names after the renames above.
_MLP = re.compile(
    r"^(vision_encoder\.backbone\.blocks\.\d+\.mlp|mask_decoder\.transformer\.layers\.\d+\.mlp"
    r"|mask_decoder\.output_hypernetworks_mlps\.\d+|mask_decoder\.iou_prediction_head"
    r"|mask_decoder\.pred_obj_score_head|object_pointer_proj)\.layers\.(\d+)\.(.+)$")
_MASK_DOWNSAMPLER = re.compile(r"^memory_encoder\.mask_downsampler\.encoder\.(\d+)\.(.+)$")
_POINT_EMBED = re.compile(r"^prompt_encoder\.point_embeddings\.(\d+)\.weight$")


def _renamed(key: str) -> str:
    for pattern, repl in _RENAME_RES:
        key = pattern.sub(repl, key)
    return key


def to_transformers(state: Mapping[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Official SAM2 keys → transformers `Sam2VideoModel` keys. Returns (state, origin: new key → official key).

    Keys no rule knows pass through under their renamed name, so the strict check reports them as unexpected.
    """
    renamed = {_renamed(k): (k, v) for k, v in state.items()}
    mlp_depth: dict[str, int] = {}
    downsampler_last = -1
    for key in renamed:
        if m := _MLP.match(key):
            mlp_depth[m[1]] = max(mlp_depth.get(m[1], 0), int(m[2]) + 1)
        if m := _MASK_DOWNSAMPLER.match(key):
            downsampler_last = max(downsampler_last, int(m[1]))
    out: dict[str, torch.Tensor] = {}
    origin: dict[str, str] = {}
    points: dict[int, tuple[str, torch.Tensor]] = {}
    for key, (official, tensor) in renamed.items():
        if m := _MLP.match(key):
            i, last = int(m[2]), mlp_depth[m[1]] - 1
            part = "proj_in" if i == 0 else "proj_out" if i == last else f"layers.{i - 1}"
            key = f"{m[1]}.{part}.{m[3]}"
        elif m := _MASK_DOWNSAMPLER.match(key):
            # Sequential of (conv, LayerNorm2d, GELU) × n, then the final 1×1 conv.
            i = int(m[1])
            if i == downsampler_last:
                part = "final_conv"
            elif i % 3 == 0:
                part = f"layers.{i // 3}.conv"
            elif i % 3 == 1:
                part = f"layers.{i // 3}.layer_norm"
            else:
                part = f"encoder.{i}"  # a GELU has no weights: anything here is unexpected
            key = f"memory_encoder.mask_downsampler.{part}.{m[2]}"
        elif m := _POINT_EMBED.match(key):
            points[int(m[1])] = (official, tensor)
            continue
        if key in out:
            raise CheckpointError(f"two checkpoint keys map to {key}: {origin[key]} and {official}")
        out[key] = tensor
        origin[key] = official
    if points:
        order = sorted(points)
        if order == list(range(len(order))) and len({points[i][1].shape for i in order}) == 1:
            out["prompt_encoder.point_embed.weight"] = torch.cat([points[i][1] for i in order], dim=0)
            origin["prompt_encoder.point_embed.weight"] = "sam_prompt_encoder.point_embeddings.*.weight"
        else:  # gaps or odd shapes: keep them apart so the check names them
            for i in order:
                out[f"prompt_encoder.point_embeddings.{i}.weight"] = points[i][1]
                origin[f"prompt_encoder.point_embeddings.{i}.weight"] = points[i][0]
    if TIED_KEY in out:
        out["shared_image_embedding.positional_embedding"] = out[TIED_KEY]
        origin["shared_image_embedding.positional_embedding"] = origin[TIED_KEY]
    return out, origin


# ---------------------------------------------------------------- config from shapes


def _need(state: Mapping[str, torch.Tensor], key: str, source: Path) -> torch.Tensor:
    if key not in state:
        if any(k.startswith("vision_encoder.backbone.") for k in state):
            raise CheckpointError(
                f"{source} holds transformers' names (vision_encoder.*), not the official ones: pass the folder "
                "that holds it together with its config.json (transformers' layout)")
        raise CheckpointError(
            f"{source} is not a SAM2 checkpoint of the official format: it has no {key!r} "
            f"({len(state)} tensors, e.g. {sorted(state)[:5]}); use the official {OFFICIAL_FILE} or a "
            "transformers folder (config.json + model.safetensors)")
    return state[key]


def _count(state: Mapping[str, torch.Tensor], pattern: str) -> int:
    rx = re.compile(pattern)
    return len({m[1] for k in state if (m := rx.match(k))})


def official_config(state: Mapping[str, torch.Tensor], source: Path, *, variant: HieraVariant | None = None,
                    image_size: int = IMAGE_SIZE) -> Any:
    """The `Sam2VideoConfig` of an official SAM2/SAM2.1 state dict, from its shapes (see the module docstring).

    `variant` gives the trunk's heads/global blocks/window sizes when it is not a released size (tests)."""
    from transformers import Sam2VideoConfig

    patch = _need(state, "image_encoder.trunk.patch_embed.proj.weight", source)
    hidden = int(patch.shape[0])
    n_blocks = _count(state, r"^image_encoder\.trunk\.blocks\.(\d+)\.")
    starts = sorted(int(m[1]) for k in state
                    if (m := re.match(r"^image_encoder\.trunk\.blocks\.(\d+)\.proj\.weight$", k)))
    bounds = [0, *starts, n_blocks]
    blocks_per_stage = tuple(b - a for a, b in pairwise(bounds))
    dims = [hidden, *(int(state[f"image_encoder.trunk.blocks.{s}.proj.weight"].shape[0]) for s in starts)]
    if variant is None:
        variant = VARIANTS.get((hidden, blocks_per_stage))
        if variant is None:
            known = ", ".join(f"{v.name} (width {w}, blocks {list(b)})" for (w, b), v in VARIANTS.items())
            raise CheckpointError(
                f"{source}: a Hiera trunk of width {hidden} with blocks per stage {list(blocks_per_stage)} is not "
                f"a released SAM2 size ({known}); its attention heads cannot be read from the weights. Use a "
                "transformers folder (config.json + model.safetensors) for it")
    if len(blocks_per_stage) != 4:
        raise CheckpointError(f"{source}: the Hiera trunk has {len(blocks_per_stage)} stages, SAM2 has 4")
    pos = _need(state, "image_encoder.trunk.pos_embed", source)
    pos_window = _need(state, "image_encoder.trunk.pos_embed_window", source)
    windows = [int(pos_window.shape[-1]), *variant.window_size_per_stage[1:]]
    fpn = int(_need(state, "image_encoder.neck.convs.0.conv.weight", source).shape[0])
    s = image_size
    vision = {
        "model_type": "sam2_vision_model",
        "backbone_config": {
            "model_type": "sam2_hiera_det_model", "hidden_size": hidden, "image_size": [s, s],
            "blocks_per_stage": list(blocks_per_stage), "embed_dim_per_stage": dims,
            "num_attention_heads_per_stage": list(variant.heads_per_stage),
            "global_attention_blocks": list(variant.global_attention_blocks), "window_size_per_stage": windows,
            "window_positional_embedding_background_size": [int(pos.shape[-2]), int(pos.shape[-1])]},
        "backbone_channel_list": dims[::-1],
        "backbone_feature_sizes": [[s // 4, s // 4], [s // 8, s // 8], [s // 16, s // 16]],
        "fpn_hidden_size": fpn,
    }
    no_mask = _need(state, "sam_prompt_encoder.no_mask_embed.weight", source)
    prompt = {"hidden_size": int(no_mask.shape[1]), "image_size": s, "patch_size": 16,
              "mask_input_channels": int(_need(state, "sam_prompt_encoder.mask_downscaling.3.weight",
                                               source).shape[0]),
              "num_point_embeddings": _count(state, r"^sam_prompt_encoder\.point_embeddings\.(\d+)\.")}
    dec = "sam_mask_decoder."
    dec_hidden = int(_need(state, dec + "iou_token.weight", source).shape[1])
    decoder = {
        "hidden_size": dec_hidden,
        "mlp_dim": int(_need(state, dec + "transformer.layers.0.mlp.layers.0.weight", source).shape[0]),
        "num_hidden_layers": _count(state, r"^sam_mask_decoder\.transformer\.layers\.(\d+)\."),
        "attention_downsample_rate": dec_hidden // int(
            _need(state, dec + "transformer.layers.0.cross_attn_token_to_image.q_proj.weight", source).shape[0]),
        "num_multimask_outputs": int(_need(state, dec + "mask_tokens.weight", source).shape[0]) - 1,
        "iou_head_depth": _count(state, r"^sam_mask_decoder\.iou_prediction_head\.layers\.(\d+)\."),
        "iou_head_hidden_dim": int(_need(state, dec + "iou_prediction_head.layers.0.weight", source).shape[0]),
    }
    att = "memory_attention.layers.0."
    mem_q = _need(state, att + "self_attn.q_proj.weight", source)  # [width / downsample rate, width]
    mem_hidden = int(mem_q.shape[1])
    downsampler = [int(m[1]) for k in state
                   if (m := re.match(r"^memory_encoder\.mask_downsampler\.encoder\.(\d+)\.weight$", k))]
    if not downsampler:
        _need(state, "memory_encoder.mask_downsampler.encoder.0.weight", source)
    # (conv, LayerNorm2d, GELU) per stride-2 step, then a 1×1 conv: the steps are the other convs.
    n_down = sum(1 for i in downsampler if i % 3 == 0 and i != max(downsampler))
    fuser_dw = _need(state, "memory_encoder.fuser.layers.0.dwconv.weight", source)
    return Sam2VideoConfig(
        vision_config=vision, prompt_encoder_config=prompt, mask_decoder_config=decoder, image_size=s,
        num_maskmem=int(_need(state, "maskmem_tpos_enc", source).shape[0]),
        memory_attention_hidden_size=mem_hidden,
        memory_attention_num_layers=_count(state, r"^memory_attention\.layers\.(\d+)\."),
        memory_attention_downsample_rate=mem_hidden // int(mem_q.shape[0]),
        memory_attention_feed_forward_hidden_size=int(_need(state, att + "linear1.weight", source).shape[0]),
        memory_attention_rope_feat_sizes=[s // 16, s // 16],
        memory_encoder_hidden_size=int(_need(state, "memory_encoder.pix_feat_proj.weight", source).shape[0]),
        memory_encoder_output_channels=int(_need(state, "memory_encoder.out_proj.weight", source).shape[0]),
        mask_downsampler_embed_dim=int(state[f"memory_encoder.mask_downsampler.encoder.{max(downsampler)}.weight"]
                                       .shape[0]),
        mask_downsampler_total_stride=2 ** n_down,
        memory_fuser_embed_dim=int(fuser_dw.shape[0]),
        memory_fuser_intermediate_dim=int(_need(state, "memory_encoder.fuser.layers.0.pwconv1.weight",
                                                source).shape[0]),
        memory_fuser_kernel_size=int(fuser_dw.shape[-1]), memory_fuser_padding=int(fuser_dw.shape[-1]) // 2,
        memory_fuser_num_layers=_count(state, r"^memory_encoder\.fuser\.layers\.(\d+)\."),
        enable_occlusion_spatial_embedding="no_obj_embed_spatial" in state,
        enable_temporal_pos_encoding_for_object_pointers="obj_ptr_tpos_proj.weight" in state,
    )


# ---------------------------------------------------------------- strict check


def _listing(keys: list[str]) -> str:
    keys = sorted(keys)
    more = f"\n  ... and {len(keys) - _MAX_LISTED} more" if len(keys) > _MAX_LISTED else ""
    return "  " + "\n  ".join(keys[:_MAX_LISTED]) + more


def _expected(config: Any) -> dict[str, torch.Size]:
    """Names and shapes of a `Sam2VideoModel(config)`'s state dict (built on the meta device: no memory)."""
    from contextlib import nullcontext

    from transformers import Sam2VideoModel

    try:  # skips the random init, which costs more than the build even on the meta device (10×, b+)
        from transformers.modeling_utils import no_init_weights
    except ImportError:  # pragma: no cover - a transformers without it: slower, same result
        no_init_weights = nullcontext
    with no_init_weights(), torch.device("meta"):
        model = Sam2VideoModel(config)
    return {k: v.shape for k, v in model.state_dict().items()}


def check_fits(state: Mapping[str, torch.Tensor], origin: Mapping[str, str], config: Any, what: str) -> None:
    """Every key of `state` (transformers names) is a tensor of that shape in `Sam2VideoModel(config)` and
    every model tensor is there (the tied copy may be absent); else `CheckpointError` naming `what` and keys."""
    expected = _expected(config)
    missing = [k for k in expected if k not in state and k != TIED_KEY]
    unexpected = [origin.get(k, k) for k in state if k not in expected]
    shapes = [f"{origin.get(k, k)}: checkpoint {tuple(v.shape)} vs model {tuple(expected[k])}"
              for k, v in state.items() if k in expected and tuple(v.shape) != tuple(expected[k])]
    ints = [f"{origin.get(k, k)}: {str(v.dtype).replace('torch.', '')}"
            for k, v in state.items() if k in expected and not v.is_floating_point()]
    problems = []
    if missing:
        problems.append(f"missing keys (transformers' names of weights the file lacks):\n{_listing(missing)}")
    if unexpected:
        problems.append(f"unexpected keys (in the file, not in the model):\n{_listing(unexpected)}")
    if shapes:
        problems.append(f"shape mismatches:\n{_listing(shapes)}")
    if ints:
        problems.append(f"integer tensors where the model has floating-point weights:\n{_listing(ints)}")
    if problems:
        raise CheckpointError(f"{what}: checkpoint does not fit the SAM2 video model.\n" + "\n".join(problems)
                              + "\nFetch the file again, or use the official " + OFFICIAL_FILE)


# ---------------------------------------------------------------- loading


def _build(config: Any, state: dict[str, torch.Tensor], source: Path, dtype: torch.dtype,
           device: str | torch.device) -> Any:
    """The model from a checked state dict; transformers' own loader (meta init, tied weights, dtype)."""
    from transformers import Sam2VideoModel

    model = Sam2VideoModel.from_pretrained(None, config=config, state_dict=state, dtype=dtype)
    model.config._name_or_path = str(source)
    return model.to(device=device).eval().requires_grad_(False)


def _load_official(path: Path, config: Any | None, dtype: torch.dtype, device: str | torch.device) -> Any:
    found: dict[str, Any] = {}

    def check(official: dict[str, torch.Tensor]) -> None:
        cfg = config if config is not None else official_config(official, path)
        state, origin = to_transformers(official)
        check_fits(state, origin, cfg, f"SAM2 checkpoint {path}")
        found.update(config=cfg, state=state)

    load_checkpoint_dict(path, OFFICIAL_KEY, check=check)
    return _build(found["config"], found["state"], path, dtype, device)


def _hf_weight_files(folder: Path) -> list[Path]:
    index = folder / "model.safetensors.index.json"
    if index.is_file():
        try:
            shards = sorted(set(json.loads(index.read_text(encoding="utf-8"))["weight_map"].values()))
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            raise CheckpointError(f"cannot read {index} ({type(exc).__name__}: {exc}); fetch it again") from exc
        odd = [s for s in shards if not isinstance(s, str) or Path(s).name != s]
        if odd:  # shards live beside the index; a path elsewhere is not read
            raise CheckpointError(f"{index} names weight files outside its folder: {odd[:3]}; fetch it again")
        return [folder / s for s in shards]
    single = folder / "model.safetensors"
    if single.is_file():
        return [single]
    others = sorted(p.name for p in folder.iterdir() if p.suffix in (".bin", ".pt", ".pth"))
    raise CheckpointError(
        f"{folder} has a config.json but no model.safetensors" + (f" (it has {', '.join(others)})" if others else "")
        + ": download the folder's model.safetensors (transformers' layout), or pass the official "
        f"{OFFICIAL_FILE} file itself")


def _load_hf_folder(folder: Path, dtype: torch.dtype, device: str | torch.device) -> Any:
    from transformers import Sam2VideoConfig

    cfg_file = folder / "config.json"
    try:
        raw = json.loads(cfg_file.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"cannot read {cfg_file} ({type(exc).__name__}: {exc}); fetch it again") from exc
    if not isinstance(raw, dict) or raw.get("model_type") != "sam2_video":
        kind = raw.get("model_type") if isinstance(raw, dict) else type(raw).__name__
        raise CheckpointError(
            f"{cfg_file} is a {kind!r} config, not 'sam2_video': the character tracker needs the SAM2 video model "
            "(e.g. the hub folder facebook/sam2.1-hiera-base-plus) or the official " + OFFICIAL_FILE)
    try:
        config = Sam2VideoConfig.from_dict(raw)
    except (TypeError, ValueError, KeyError, AttributeError) as exc:
        raise CheckpointError(f"{cfg_file} is not a valid SAM2 video config ({type(exc).__name__}: {exc})") from exc
    state: dict[str, torch.Tensor] = {}
    for file in _hf_weight_files(folder):
        if not file.is_file():
            raise CheckpointError(f"{file} (named by {folder.name}'s index) is missing: fetch it")
        state.update(load_checkpoint_dict(file, None))
    check_fits(state, {}, config, f"SAM2 folder {folder}")
    return _build(config, state, folder, dtype, device)


def load_sam2_video_model(path: Path, *, dtype: torch.dtype = torch.float32, device: str | torch.device = "cpu",
                          config: Any | None = None) -> Any:
    """transformers `Sam2VideoModel` (eval, no grad) from the official SAM2.1 `.pt` or an HF folder, strictly.

    `path`: the official `sam2.1_hiera_base_plus.pt` (or its converted `.safetensors` copy), a folder with
    `config.json` + `model.safetensors` (as `from_pretrained` reads it), or a folder holding one `.pt`.
    `config`: a `Sam2VideoConfig` for an official file of a size no released variant has (tests); by default
    the config comes from the file's shapes. Errors (`CheckpointError`, `FileNotFoundError`) name the file.
    """
    path = Path(path)
    if path.is_dir():
        if (path / "config.json").is_file():
            if config is not None:
                raise ValueError(f"config= is for official .pt files; {path} has its own config.json")
            return _load_hf_folder(path, dtype, device)
        pts = sorted(path.glob("*.pt"))
        if len(pts) != 1:
            raise CheckpointError(
                f"{path} holds neither a config.json (transformers' layout) nor exactly one .pt "
                f"({len(pts)} found): pass the official {OFFICIAL_FILE} itself, or the folder of "
                "facebook/sam2.1-hiera-base-plus")
        path = pts[0]
    if not path.exists() and not path.with_suffix(".safetensors").is_file():
        raise FileNotFoundError(f"SAM2 checkpoint not found: {path}")
    return _load_official(path, config, dtype, device)


def sam2_video_processor(path: Path | None = None, *, image_size: int = IMAGE_SIZE) -> Any:
    """The `Sam2VideoProcessor` for a model from `load_sam2_video_model`: the folder's own processor files
    when `path` is an HF folder that has them, else SAM2's preprocessing (resize to image_size², ImageNet
    mean/std, masks at a quarter of that), as transformers' conversion of the official files sets it."""
    from transformers import Sam2ImageProcessorFast, Sam2VideoProcessor
    from transformers.models.sam2_video.video_processing_sam2_video import Sam2VideoVideoProcessor

    if path is not None and Path(path).is_dir() and (Path(path) / "preprocessor_config.json").is_file():
        try:
            return Sam2VideoProcessor.from_pretrained(str(path))
        except Exception as exc:  # a broken or foreign processor file: name the folder, not transformers' internals
            raise CheckpointError(f"cannot read the SAM2 processor files of {path} ({type(exc).__name__}: "
                                  f"{str(exc)[:300]}); fetch the folder's *_config.json files again") from exc
    size = {"height": image_size, "width": image_size}
    return Sam2VideoProcessor(
        image_processor=Sam2ImageProcessorFast(size=size, mask_size={"height": image_size // 4,
                                                                     "width": image_size // 4}),
        video_processor=Sam2VideoVideoProcessor(size=size))
