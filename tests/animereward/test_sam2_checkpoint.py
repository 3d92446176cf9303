"""The official SAM2.1 `.pt` (facebookresearch/sam2 names) loads strictly into transformers' `Sam2VideoModel`.

- The official key list of hiera-base+ (tests/golden/sam2/official_keys.json, listed from the official
  `SAM2VideoPredictor` as the official pipeline builds it, recipe in tests/golden/sam2/README.md) maps onto a
  transformers model of the config inferred from those shapes, key for key and shape for shape.
- Round trip on a small model of the real class: this test's own inverse mapping (transformers → official
  names, independent of the module's) writes an official-format `.pt`; the loader gives back the same tensors
  and the same video propagation as the original model; an HF folder (`save_pretrained`) does too.
- Refusals: a missing key, an extra key, a misshapen tensor, a pickle that is not weights-only safe, an LFS
  pointer, an HTML page, a config of another model, a trunk of unknown size: each a clear message naming the
  file and the key.
"""

from __future__ import annotations

import copy
import json
import os
import pickle
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from animereward_testkit.characters import S, draw_character, small_tracker

from animereward.checkpoints import CheckpointError
from animereward.sam2_checkpoint import (
    VARIANTS,
    HieraVariant,
    check_fits,
    load_sam2_video_model,
    official_config,
    sam2_video_processor,
    to_transformers,
)

GOLDEN = Path(__file__).resolve().parents[1] / "golden" / "sam2"
OFFICIAL = "sam2.1_hiera_base_plus.pt"

# ---------------------------------------------------------------- the test's own inverse (transformers → official)

_FIXED = {
    "no_memory_embedding": "no_mem_embed",
    "no_memory_positional_encoding": "no_mem_pos_enc",
    "memory_temporal_positional_encoding": "maskmem_tpos_enc",
    "no_object_pointer": "no_obj_ptr",
    "occlusion_spatial_embedding_parameter": "no_obj_embed_spatial",
    "prompt_encoder.shared_embedding.positional_embedding": "sam_prompt_encoder.pe_layer.positional_encoding_gaussian_matrix",
}
_SEQUENTIAL = {  # transformers module name → official nn.Sequential index
    "prompt_encoder.mask_embed.conv1": "sam_prompt_encoder.mask_downscaling.0",
    "prompt_encoder.mask_embed.layer_norm1": "sam_prompt_encoder.mask_downscaling.1",
    "prompt_encoder.mask_embed.conv2": "sam_prompt_encoder.mask_downscaling.3",
    "prompt_encoder.mask_embed.layer_norm2": "sam_prompt_encoder.mask_downscaling.4",
    "prompt_encoder.mask_embed.conv3": "sam_prompt_encoder.mask_downscaling.6",
    "mask_decoder.upscale_conv1": "sam_mask_decoder.output_upscaling.0",
    "mask_decoder.upscale_layer_norm": "sam_mask_decoder.output_upscaling.1",
    "mask_decoder.upscale_conv2": "sam_mask_decoder.output_upscaling.3",
}
_MLPS = re.compile(r"^(.*(?:\.mlp|output_hypernetworks_mlps\.\d+|iou_prediction_head|pred_obj_score_head"
                   r"|object_pointer_proj))\.(proj_in|proj_out|layers\.(\d+))\.(weight|bias)$")


def to_official(hf: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """transformers `Sam2VideoModel` state dict → the facebookresearch/sam2 `SAM2Base` state dict."""
    hidden = {}  # MLP module → number of hidden `layers`
    for k in hf:
        if (m := _MLPS.match(k)) and m[3] is not None:
            hidden[m[1]] = max(hidden.get(m[1], 0), int(m[3]) + 1)
    n_down = 1 + max(int(m[1]) for k in hf if (m := re.match(r"^memory_encoder\.mask_downsampler\.layers\.(\d+)\.", k)))
    out: dict[str, torch.Tensor] = {}
    for key, t in hf.items():
        if key == "shared_image_embedding.positional_embedding":
            continue  # the tied copy of the prompt encoder's matrix
        if key == "prompt_encoder.point_embed.weight":
            for i in range(t.shape[0]):
                out[f"sam_prompt_encoder.point_embeddings.{i}.weight"] = t[i:i + 1].clone()
            continue
        if key in _FIXED:
            out[_FIXED[key]] = t
            continue
        mod, _, leaf = key.rpartition(".")
        if mod in _SEQUENTIAL:
            out[f"{_SEQUENTIAL[mod]}.{leaf}"] = t
            continue
        if m := _MLPS.match(key):
            idx = 0 if m[2] == "proj_in" else hidden.get(m[1], 0) + 1 if m[2] == "proj_out" else int(m[3]) + 1
            key = f"{m[1]}.layers.{idx}.{m[4]}"
        if m := re.match(r"^memory_encoder\.mask_downsampler\.layers\.(\d+)\.(conv|layer_norm)\.(.+)$", key):
            key = f"memory_encoder.mask_downsampler.encoder.{3 * int(m[1]) + (m[2] == 'layer_norm')}.{m[3]}"
        key = key.replace("memory_encoder.mask_downsampler.final_conv.", f"memory_encoder.mask_downsampler.encoder.{3 * n_down}.")
        key = re.sub(r"^vision_encoder\.neck\.convs\.(\d+)\.", r"image_encoder.neck.convs.\1.conv.", key)
        key = re.sub(r"^vision_encoder\.backbone\.", "image_encoder.trunk.", key)
        key = re.sub(r"^prompt_encoder\.", "sam_prompt_encoder.", key)
        key = re.sub(r"^mask_decoder\.", "sam_mask_decoder.", key)
        key = re.sub(r"^object_pointer_proj\.", "obj_ptr_proj.", key)
        key = re.sub(r"^temporal_positional_encoding_projection_layer\.", "obj_ptr_tpos_proj.", key)
        key = key.replace(".patch_embed.projection.", ".patch_embed.proj.")
        key = key.replace("memory_encoder.feature_projection.", "memory_encoder.pix_feat_proj.")
        key = key.replace("memory_encoder.projection.", "memory_encoder.out_proj.")
        key = key.replace("memory_encoder.memory_fuser.", "memory_encoder.fuser.")
        key = key.replace(".depthwise_conv.", ".dwconv.").replace(".pointwise_conv", ".pwconv")
        key = re.sub(r"\.scale$", ".gamma", key)
        key = key.replace(".o_proj.", ".out_proj.")
        key = re.sub(r"\.layer_norm(\d?|_final_attn)\.", r".norm\1.", key)
        out[key] = t
    return out


# ---------------------------------------------------------------- the official key list (hiera-base+)


def official_meta_state() -> dict[str, torch.Tensor]:
    rows = json.loads((GOLDEN / "official_keys.json").read_text())
    with torch.device("meta"):
        return {k: torch.empty(shape, dtype=getattr(torch, dtype)) for k, shape, dtype in rows}


def test_official_hiera_base_plus_keys_fit_transformers_model_of_the_inferred_config():
    state = official_meta_state()
    assert len(state) == 615 and sum(t.numel() for t in state.values()) == 80_850_434
    config = official_config(state, Path(OFFICIAL))
    bb = config.vision_config.backbone_config
    assert (bb.hidden_size, list(bb.blocks_per_stage), list(bb.embed_dim_per_stage)) == (112, [2, 3, 16, 3],
                                                                                         [112, 224, 448, 896])
    assert list(bb.num_attention_heads_per_stage) == [2, 4, 8, 16] and list(bb.global_attention_blocks) == [12, 16, 20]
    assert list(bb.window_size_per_stage) == [8, 4, 14, 7]
    assert list(bb.window_positional_embedding_background_size) == [14, 14]
    assert config.num_maskmem == 7 and config.image_size == 1024 and config.memory_attention_num_layers == 4
    assert config.enable_occlusion_spatial_embedding and config.enable_temporal_pos_encoding_for_object_pointers
    assert config.mask_downsampler_total_stride == 16 and config.memory_encoder_output_channels == 64
    mapped, origin = to_transformers(state)
    check_fits(mapped, origin, config, "official hiera-base+ key list")  # raises on any difference
    # the test's inverse gives back exactly the official list: the round trips below use official names
    from transformers import Sam2VideoModel

    with torch.device("meta"):
        hf = Sam2VideoModel(config).state_dict()
    back = to_official(hf)
    assert {k: tuple(v.shape) for k, v in back.items()} == {k: tuple(v.shape) for k, v in state.items()}


def test_unknown_trunk_size_is_refused_with_the_released_sizes():
    state = official_meta_state()
    state = {k: v for k, v in state.items() if not k.startswith("image_encoder.trunk.blocks.23.")}
    with pytest.raises(CheckpointError) as err:
        official_config(state, Path("/x/odd.pt"))
    msg = str(err.value)
    assert "/x/odd.pt" in msg and "[2, 3, 16, 2]" in msg and "hiera-base+" in msg and "config.json" in msg


# ---------------------------------------------------------------- golden: the official predictor's outputs


def test_official_predictor_outputs_are_reproduced_from_the_official_format_pt(tmp_path):
    """expected.json: the official SAM2VideoPredictor (small SAM2.1 config, recipe weights, box on frame 0,
    4 frames) run once outside the repo (tests/golden/sam2/README.md). Ours: the same weights written as an
    official `.pt`, loaded by `load_sam2_video_model`, propagated by transformers on the same pixels."""
    from transformers.models.sam2_video.modeling_sam2_video import Sam2VideoInferenceSession

    from tests.golden.sam2 import recipe

    rows = json.loads((GOLDEN / "small_official_keys.json").read_text())
    weights = recipe.official_weights({k: shape for k, shape, _ in rows})
    path = tmp_path / "sam2.1_small_golden.pt"
    torch.save({"model": weights}, path)
    variant = HieraVariant("golden-small", recipe.HEADS, recipe.GLOBAL_BLOCKS, recipe.WINDOWS)
    config = official_config(weights, path, variant=variant, image_size=recipe.IMAGE_SIZE)
    with torch.device("meta"):  # the test's inverse names agree with the official small model too
        from transformers import Sam2VideoModel

        hf_names = to_official(Sam2VideoModel(config).state_dict())
    assert {k: list(v.shape) for k, v in hf_names.items()} == {k: shape for k, shape, _ in rows}
    model = load_sam2_video_model(path, config=config)
    processor = sam2_video_processor(image_size=recipe.IMAGE_SIZE)
    frames = recipe.clip()
    h, w = frames.shape[1:3]
    expected = json.loads((GOLDEN / "expected.json").read_text())["frames"]
    session = Sam2VideoInferenceSession(video=recipe.pixel_values(frames), video_height=h, video_width=w,
                                        dtype=torch.float32)
    seen = []
    with torch.inference_mode():
        processor.add_inputs_to_inference_session(session, frame_idx=0, obj_ids=[1], input_boxes=[[list(recipe.BOX)]])
        for out in model.propagate_in_video_iterator(session, start_frame_idx=0):
            exp = expected[str(out.frame_idx)]
            want = torch.tensor(exp["low_res_masks"]).view(exp["low_res_shape"])
            got = out.pred_masks.float()
            assert got.shape == want.shape
            assert torch.allclose(got, want, atol=5e-5, rtol=0), (out.frame_idx, (got - want).abs().max())
            video = processor.post_process_masks([out.pred_masks], original_sizes=[[h, w]], binarize=False)[0]
            assert int((video > 0).sum()) == exp["video_res_positive_pixels"]
            seen.append(out.frame_idx)
    assert seen == list(range(recipe.N_FRAMES))
    # the golden is not trivial: the object is present and the mask has an inside and an outside
    assert all(expected[str(t)]["object_score_logit"] > 0 for t in seen)
    assert 0 < expected["1"]["video_res_positive_pixels"] < h * w


# ---------------------------------------------------------------- round trip on a small model of the real class

SMALL_VARIANT = HieraVariant("test-small", (1, 1, 1, 1), (3,), (4, 4, 4, 4))


@pytest.fixture(scope="module")
def small():
    """The test kit's small tracker with SAM2's size-independent constants (8 mask-decoder heads, 16 object
    pointers: the official values, which a `.pt` does not record) and every tensor re-drawn (distinct values,
    so a swap would show)."""
    from transformers import Sam2VideoModel

    kit, processor = small_tracker()
    config = copy.deepcopy(kit.config)
    config.mask_decoder_config.num_attention_heads = 8
    config.max_object_pointers_in_encoder = 16
    model = Sam2VideoModel(config).eval()
    gen = torch.Generator().manual_seed(7)
    with torch.no_grad():
        for name, p in model.state_dict().items():
            if p.is_floating_point() and name != "prompt_encoder.shared_embedding.positional_embedding":
                base = 1.0 if re.search(r"(layer_norm\w*|norm)\.weight$", name) else 0.0
                p.copy_(base + 0.05 * torch.randn(p.shape, generator=gen))
    return model, processor


def plain(config) -> dict:
    """A config as plain JSON values, without the records of loading (dtype, source)."""
    def strip(d):
        return {k: strip(v) if isinstance(v, dict) else v for k, v in d.items() if k not in ("dtype", "torch_dtype", "_name_or_path")}
    return strip(json.loads(json.dumps(config.to_dict())))


def write_official(path: Path, model, edit=None) -> Path:
    state = {k: v.clone() for k, v in to_official(model.state_dict()).items()}
    if edit is not None:
        edit(state)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"model": state}, path)
    return path


def clip(n: int = 3) -> np.ndarray:
    return np.stack([draw_character("Akane", size=96, jitter=i - 1)[0] for i in range(n)])


@torch.no_grad()
def propagate(model, processor, frames: np.ndarray) -> list[torch.Tensor]:
    session = processor.init_video_session(video=list(frames), inference_device="cpu", dtype=torch.float32)
    processor.add_inputs_to_inference_session(session, frame_idx=0, obj_ids=[1], input_boxes=[[[20.0, 20.0, 76.0, 76.0]]])
    return [out.pred_masks.clone() for out in model.propagate_in_video_iterator(session, start_frame_idx=0)]


def test_official_pt_round_trip_loads_strictly_and_tracks_identically(small, tmp_path):
    model, processor = small
    path = write_official(tmp_path / "sam2_checkpoints" / OFFICIAL, model)
    official = torch.load(path, weights_only=True)["model"]
    config = official_config(official, path, variant=SMALL_VARIANT, image_size=S)
    loaded = load_sam2_video_model(path, config=config)
    assert plain(loaded.config) == plain(model.config)  # the inferred config: every setting, not only shapes
    ref = model.state_dict()
    got = loaded.state_dict()
    assert got.keys() == ref.keys()
    assert all(torch.equal(got[k], ref[k]) for k in ref)
    assert not loaded.training and not any(p.requires_grad for p in loaded.parameters())
    frames = clip()
    a, b = propagate(model, processor, frames), propagate(loaded, sam2_video_processor(image_size=S), frames)
    assert len(a) == len(frames) and all(torch.equal(x, y) for x, y in zip(a, b, strict=True))
    assert a[0].abs().max() > 0
    # converted once beside the .pt (official names, no pickle); later loads read the copy
    assert path.with_suffix(".safetensors").is_file()
    path.unlink()
    again = load_sam2_video_model(path, config=config, dtype=torch.bfloat16)
    assert again.dtype == torch.bfloat16
    assert torch.equal(again.mask_decoder.iou_token.weight.float(), ref["mask_decoder.iou_token.weight"].bfloat16().float())


def test_hf_folder_loads_strictly(small, tmp_path):
    model, processor = small
    folder = tmp_path / "sam2.1-hiera-small-test"
    model.save_pretrained(folder)
    loaded = load_sam2_video_model(folder, device="cpu")
    ref = model.state_dict()
    assert all(torch.equal(loaded.state_dict()[k], ref[k]) for k in ref)
    assert loaded.shared_image_embedding.positional_embedding.data_ptr() == \
        loaded.prompt_encoder.shared_embedding.positional_embedding.data_ptr()
    # the folder's own processor files are used; broken ones are named
    processor.save_pretrained(folder)
    assert sam2_video_processor(folder).image_processor.size == processor.image_processor.size
    assert sam2_video_processor(tmp_path / "x.pt", image_size=S).target_size == S
    (folder / "preprocessor_config.json").write_text("<html>")
    with pytest.raises(CheckpointError, match="cannot read the SAM2 processor files"):
        sam2_video_processor(folder)
    # a folder holding only the official file is read as that file
    only_pt = write_official(tmp_path / "pt_only" / OFFICIAL, model)
    with pytest.raises(CheckpointError, match="not a released SAM2 size"):
        load_sam2_video_model(only_pt.parent)


# ---------------------------------------------------------------- refusals


def _drop(key):
    return lambda s: s.pop(key)


def _extra(s):
    s["memory_attention.layers.0.extra_proj.weight"] = torch.zeros(2, 2)


def _misshapen(s):
    s["sam_mask_decoder.iou_token.weight"] = torch.zeros(1, 3)


def _ints(s):
    s["no_mem_embed"] = s["no_mem_embed"].to(torch.int32)


BROKEN = [
    ("missing key", _drop("memory_encoder.fuser.layers.1.pwconv2.weight"),
     ["missing keys", "memory_encoder.memory_fuser.layers.1.pointwise_conv2.weight"]),
    ("extra key", _extra, ["unexpected keys", "memory_attention.layers.0.extra_proj.weight"]),
    ("misshapen tensor", _misshapen, ["shape mismatches", "sam_mask_decoder.iou_token.weight: checkpoint (1, 3)"]),
    ("integer weights", _ints, ["integer tensors", "no_mem_embed: int32"]),
]


@pytest.mark.parametrize(("case", "edit", "says"), BROKEN, ids=[b[0] for b in BROKEN])
def test_a_checkpoint_that_does_not_fit_is_refused_by_key(small, tmp_path, case, edit, says):
    model, _ = small
    path = write_official(tmp_path / OFFICIAL, model, edit)
    config = model.config
    with pytest.raises(CheckpointError) as err:
        load_sam2_video_model(path, config=config)
    msg = str(err.value)
    assert str(path) in msg and all(s in msg for s in says), msg
    assert not path.with_suffix(".safetensors").exists()  # a broken file leaves no converted copy


class _Evil:
    def __reduce__(self):
        return (os.system, ("echo should-never-run",))


HOSTILE = [
    ("pickle that runs code", pickle.dumps({"model": {"w": _Evil()}}, protocol=2), "could run code"),
    ("Git LFS pointer", b"version https://git-lfs.github.com/spec/v1\noid sha256:ab12\nsize 323606802\n",
     "Git LFS pointer"),
    ("HTML page", b"<!DOCTYPE html>\n<html><head><title>Sign in</title></head></html>", "HTML page"),
    ("empty file", b"", "empty file"),
]


@pytest.mark.parametrize(("case", "content", "says"), HOSTILE, ids=[h[0] for h in HOSTILE])
def test_files_that_are_not_the_checkpoint_are_named(tmp_path, case, content, says):
    path = tmp_path / OFFICIAL
    path.write_bytes(content)
    with pytest.raises(CheckpointError) as err:
        load_sam2_video_model(path)
    assert str(path) in str(err.value) and says in str(err.value), str(err.value)


def test_other_layouts_are_refused_with_the_fix(small, tmp_path):
    model, _ = small
    # no "model" entry (e.g. a state dict saved flat)
    flat = tmp_path / "flat.pt"
    torch.save(to_official(model.state_dict()), flat)
    with pytest.raises(CheckpointError, match="has no entry 'model'"):
        load_sam2_video_model(flat, config=model.config)
    # an HF folder of another model
    other = tmp_path / "sam2-image"
    other.mkdir()
    (other / "config.json").write_text(json.dumps({"model_type": "sam2"}))
    with pytest.raises(CheckpointError, match="'sam2' config, not 'sam2_video'"):
        load_sam2_video_model(other)
    # an HF folder whose weights are an LFS pointer
    folder = tmp_path / "lfs"
    model.save_pretrained(folder)
    (folder / "model.safetensors").write_bytes(b"version https://git-lfs.github.com/spec/v1\noid sha256:ab\nsize 9\n")
    with pytest.raises(CheckpointError, match="Git LFS pointer"):
        load_sam2_video_model(folder)
    # transformers' weights file without its folder, and a config for a folder that has one
    hf = tmp_path / "hf"
    model.save_pretrained(hf)
    with pytest.raises(CheckpointError, match="holds transformers' names"):
        load_sam2_video_model(hf / "model.safetensors")
    with pytest.raises(ValueError, match=r"has its own config\.json"):
        load_sam2_video_model(hf, config=model.config)
    # a sharded folder whose index points outside the folder
    (hf / "model.safetensors.index.json").write_text(json.dumps({"weight_map": {"a": "../flat.pt"}}))
    with pytest.raises(CheckpointError, match="outside its folder"):
        load_sam2_video_model(hf)
    # an HF folder missing a tensor
    short = tmp_path / "short"
    model.save_pretrained(short)
    from safetensors.torch import load_file, save_file

    tensors = load_file(short / "model.safetensors")
    tensors.pop("mask_decoder.iou_token.weight")
    save_file(tensors, short / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(CheckpointError, match=r"(?s)missing keys.*mask_decoder\.iou_token\.weight"):
        load_sam2_video_model(short)
    with pytest.raises(FileNotFoundError, match=r"nothing\.pt"):
        load_sam2_video_model(tmp_path / "nothing.pt")
    empty = tmp_path / "empty_dir"
    empty.mkdir()
    with pytest.raises(CheckpointError, match=r"neither a config\.json"):
        load_sam2_video_model(empty)


def test_released_variants_table_is_keyed_by_trunk_shape():
    assert VARIANTS[(112, (2, 3, 16, 3))].name == "hiera-base+"
    assert len({v.name for v in VARIANTS.values()}) == 4
