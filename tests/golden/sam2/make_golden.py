"""Produce expected.json and small_official_keys.json by running the OFFICIAL SAM2 video predictor.

Run outside the repository's tests, against an official checkout (nothing of it is committed here):

    python tests/golden/sam2/make_golden.py /work/scratch/sam2/fb tests/golden/sam2

Builds `recipe.OFFICIAL_MODEL` as `build_sam2_video_predictor` does (SAM2VideoPredictor + its post-processing
overrides; the hole filling needs SAM2's CUDA extension and is skipped on CPU, as the official code does
when the extension is missing), writes the recipe's weights as an official `.pt` and loads it as the official
`build_sam._load_checkpoint` does (its "model" dict, strict; here read weights_only; build_sam itself needs
hydra), gives it `recipe.pixel_values(recipe.clip())` in place of its JPEG loader, adds `recipe.BOX` on frame 0 and propagates forward. Records, per frame, the low-resolution mask
logits the predictor stores (the ones its memory encoder and our `pred_masks` see) and the object score.
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[3]


def main(checkout: str, out_dir: str) -> None:
    sys.path.append(str(REPO))
    from tests.golden.sam2 import recipe
    from tests.golden.sam2.list_official_keys import STUBS, instantiate

    stubs = Path(tempfile.mkdtemp())
    for rel, text in STUBS.items():
        (stubs / rel).parent.mkdir(parents=True, exist_ok=True)
        (stubs / rel).write_text(text)
    sys.path[:0] = [str(stubs), checkout]
    import sam2.sam2_video_predictor as svp

    cfg = json.loads(json.dumps(recipe.OFFICIAL_MODEL))
    cfg["_target_"] = "sam2.sam2_video_predictor.SAM2VideoPredictor"
    cfg["sam_mask_decoder_extra_args"] = {"dynamic_multimask_via_stability": True,
                                          "dynamic_multimask_stability_delta": 0.05,
                                          "dynamic_multimask_stability_thresh": 0.98}
    cfg.update(binarize_mask_from_pts_for_mem_enc=True, fill_hole_area=8)
    torch.manual_seed(0)
    model = instantiate(cfg)
    shapes = {k: list(v.shape) for k, v in model.state_dict().items()}
    weights = recipe.official_weights(shapes)
    pt = Path(tempfile.mkdtemp()) / "sam2.1_small_golden.pt"
    torch.save({"model": weights}, pt)
    model.load_state_dict(torch.load(pt, map_location="cpu", weights_only=True)["model"])  # as _load_checkpoint
    assert all(torch.equal(model.state_dict()[k], weights[k]) for k in weights)
    model = model.to("cpu").eval()

    frames = recipe.clip()
    images = recipe.pixel_values(frames)
    h, w = frames.shape[1:3]
    svp.load_video_frames = lambda **kwargs: (images, h, w)
    with torch.inference_mode():
        state = model.init_state(video_path="(recipe frames)")
        model.add_new_points_or_box(state, frame_idx=0, obj_id=1, box=torch.tensor(recipe.BOX))
        per_frame = {}
        for t, _, video_res in model.propagate_in_video(state):
            out = state["output_dict_per_obj"][0]
            entry = out["cond_frame_outputs"].get(t) or out["non_cond_frame_outputs"][t]
            low = entry["pred_masks"].float().cpu()
            per_frame[t] = {
                "low_res_masks": [float(f"{v:.8g}") for v in low.flatten().tolist()],
                "low_res_shape": list(low.shape),
                "object_score_logit": float(entry["object_score_logits"].flatten()[0]),
                "video_res_positive_pixels": int((video_res > 0).sum()),
            }
    result = {
        "source": "facebookresearch/sam2 SAM2VideoPredictor on CPU, float32, inference_mode",
        "torch": torch.__version__,
        "frames": {str(t): v for t, v in sorted(per_frame.items())},
    }
    Path(out_dir, "expected.json").write_text(json.dumps(result))
    rows = [[k, list(v.shape), str(v.dtype).replace("torch.", "")] for k, v in model.state_dict().items()]
    Path(out_dir, "small_official_keys.json").write_text(json.dumps(rows, indent=0))
    for t, v in sorted(per_frame.items()):
        print(t, v["low_res_shape"], "object score", round(v["object_score_logit"], 4),
              "positive video pixels", v["video_res_positive_pixels"])


if __name__ == "__main__":
    main(*sys.argv[1:3])
