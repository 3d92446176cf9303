"""Produce golden.json and official_keys.json with the OFFICIAL Mantis Idefics2ForSequenceClassification.

Runs outside the repo's venv, in a scratch venv with the transformers version the Mantis fork was written for
(see README.md for the exact commands). It imports the official class from a scratch copy of
`reward/mantis/models/idefics2/modeling_idefics2.py` (never committed here) and the official prompt text from a
scratch copy of `reward/reward_infer.py` (read with `ast`, nothing executed), then runs the official inference
steps of `reward_infer.py` (frame indices, prompt + "<image> " per frame, processor call, logits[0,0]/100) on the
tiny checkpoint of `tiny_checkpoint.py`.

usage: python make_golden.py MANTIS_SRC_DIR OFFICIAL_REWARD_INFER_PY OUT_DIR
"""

from __future__ import annotations

import ast
import hashlib
import importlib.util
import json
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent


def _load(name: str, path: Path):
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def official_prompt(reward_infer: Path) -> str:
    tree = ast.parse(reward_infer.read_text())
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(
            getattr(t, "id", "") == "REGRESSION_QUERY_PROMPT" for t in node.targets
        ):
            return ast.literal_eval(node.value)
    raise SystemExit("REGRESSION_QUERY_PROMPT not found")


def official_indices(total_frames: int) -> np.ndarray:
    # reward_infer.py: MAX_NUM_FRAMES=24, MAX_LENGTH=144
    if total_frames > 24:
        return np.arange(0, min(total_frames, 144), min(total_frames, 144) / 24).astype(int)
    return np.arange(total_frames)


def main(mantis_src: Path, reward_infer: Path, out_dir: Path) -> None:
    import transformers
    from PIL import Image
    from transformers import AutoProcessor, Idefics2Config

    sys.path.insert(0, str(mantis_src))
    from mantis_idefics2 import Idefics2ForSequenceClassification  # the official class, scratch copy

    tiny = _load("tiny_checkpoint", HERE / "tiny_checkpoint.py")
    torch.manual_seed(0)
    prompt_template = official_prompt(reward_infer)

    # 1. Official key names and shapes: what the Mantis class holds and what its save_pretrained writes.
    tok = tiny.build_tokenizer()
    cfg = Idefics2Config(**tiny.config_dict(len(tok), tok.convert_tokens_to_ids("<image>")))
    skeleton = Idefics2ForSequenceClassification(cfg)
    shapes = {k: list(v.shape) for k, v in skeleton.state_dict().items()}
    with tempfile.TemporaryDirectory() as tmp:
        skeleton.save_pretrained(tmp, safe_serialization=True)
        from safetensors import safe_open

        with safe_open(str(Path(tmp) / "model.safetensors"), framework="pt") as f:
            saved = sorted(f.keys())
    assert saved == sorted(shapes), "save_pretrained wrote other keys than state_dict holds"
    (out_dir / "official_keys.json").write_text(json.dumps(dict(sorted(shapes.items())), indent=1) + "\n")

    # 2. The tiny checkpoint folder, loaded by the official class exactly as reward_infer.py does.
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = tiny.write_checkpoint(Path(tmp) / "checkpoint-final", shapes)
        processor = AutoProcessor.from_pretrained(str(folder), torch_dtype=torch.float32)
        model, info = Idefics2ForSequenceClassification.from_pretrained(
            str(folder), torch_dtype=torch.float32, output_loading_info=True
        )
        assert not any(info[k] for k in ("missing_keys", "unexpected_keys", "mismatched_keys")), info
        model.eval()
        for clip, text_prompt in zip(tiny.golden_clips(), tiny.PROMPTS, strict=True):
            indices = official_indices(clip.shape[0])
            frames = [Image.fromarray(clip[i]) for i in indices]
            eval_prompt = prompt_template.format(text_prompt=text_prompt)
            num_image_token = eval_prompt.count("<image>")
            if num_image_token < len(frames):
                eval_prompt += "<image> " * (len(frames) - num_image_token)
            inputs = processor(text=eval_prompt, images=frames, return_tensors="pt")
            with torch.no_grad():
                logits = model(**inputs).logits
            logit = float(logits[0, 0])
            results.append(
                {
                    "frames": int(clip.shape[0]),
                    "size": list(clip.shape[1:3]),
                    "indices": indices.tolist(),
                    "prompt": text_prompt,
                    "input_ids": inputs["input_ids"][0].tolist(),
                    "pixel_values_shape": list(inputs["pixel_values"].shape),
                    "pixel_values_sum": float(inputs["pixel_values"].double().sum()),
                    "logit": logit,
                    "score": logit / 100,
                    "official_rounded_score": round(logit, 3) / 100,
                }
            )
    golden = {
        "made_with": {
            "transformers": transformers.__version__,
            "torch": torch.__version__,
            "numpy": np.__version__,
            "mantis_class": "reward/mantis/models/idefics2/modeling_idefics2.py::Idefics2ForSequenceClassification",
            "official_commit": "171fe63",
        },
        "dtype": "float32",
        "prompt_sha256": hashlib.sha256(prompt_template.encode()).hexdigest(),
        "seed": tiny.SEED,
        "clips": results,
    }
    text = json.dumps({k: v for k, v in golden.items() if k != "clips"}, indent=1)[:-2]
    clips = ",\n  ".join(json.dumps(r) for r in results)  # one line per clip
    (out_dir / "golden.json").write_text(f'{text},\n "clips": [\n  {clips}\n ]\n}}\n')
    for r in results:
        print(r["size"], r["frames"], "logit", r["logit"], "score", r["score"])


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3]))
