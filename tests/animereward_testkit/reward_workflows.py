"""API-format nodes for the reward-node tests (small builders; the shipped examples live in workflows/).

Each builder returns {"class_type", "inputs"}: put it in a dict prompt, or in a `graph.Graph` with
`g.add(**builder(...))` and address outputs by name. `reward` defaults to ["10", 0] (a loader with id "10")
for the dict-style tests written before the Graph builder.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from animereward import dimensions as registry
from animereward_testkit.comfy_paths import REPO_ROOT

# The loader's dimensions, read off the registry as the loader does (dimensions registered later: pass them).
FLOW_DIMS = tuple(d for d in registry.available() if not registry.DIMENSIONS[d].needs_weights)
WEIGHTED_DIMS = registry.weighted()


def example(name: str) -> dict[str, Any]:
    return json.loads((REPO_ROOT / "workflows" / "api" / f"{name}.json").read_text())


def loader(weights: str = "none (flow metrics only)", enabled: tuple[str, ...] = (*WEIGHTED_DIMS, *FLOW_DIMS),
           skip_missing: bool = True) -> dict[str, Any]:
    inputs: dict[str, Any] = {"weights": weights, "skip_missing": skip_missing, "dtype": "fp32",
                              "quantization": "none"}
    inputs |= {d: d in enabled for d in (*WEIGHTED_DIMS, *FLOW_DIMS)}
    return {"class_type": "AnimeRewardLoader", "inputs": inputs}


def synthetic(defects: str, frames: int = 13, seed: int = 0, width: int = 160, height: int = 96) -> dict[str, Any]:
    return {"class_type": "AnimeRewardSyntheticClips",
            "inputs": {"defects": defects, "frames": frames, "width": width, "height": height, "seed": seed}}


def capture(**links: Any) -> dict[str, Any]:
    return {"class_type": "AnimeRewardTestCapture", "inputs": links}


def best_of_n(images: Any, frames_per_clip: Any, reward: Any = ("10", 0), **extra: Any) -> dict[str, Any]:
    inputs = {"reward": list(reward), "images": images, "frames_per_clip": frames_per_clip, "prompt": "",
              "top_k": 2, "sheet_frames": 3, "skip_unusable": False} | extra
    return {"class_type": "AnimeRewardBestOfN", "inputs": inputs}


def captured(outputs: dict[str, Any], node: Any) -> dict[str, Any]:
    """What a Capture node received (`node`: its id, or the graph.Node)."""
    return outputs[getattr(node, "id", node)]["captured"][0]


def saved(outputs: dict[str, Any], node: Any, base: Path) -> list[Path]:
    return [base / "output" / i["subfolder"] / i["filename"] for i in outputs[getattr(node, "id", node)]["images"]]


def example_node(prompt: dict[str, Any], class_type: str, index: int = 0) -> str:
    """The id of the `index`-th node of `class_type` in a shipped example (tests name nodes by what they are)."""
    ids = sorted((i for i, n in prompt.items() if n["class_type"] == class_type), key=lambda i: (len(i), i))
    return ids[index]


def score(frames: Any = None, video: Any = None, prompt: str = "", skip_unusable: bool = False,
          reward: Any = ("10", 0), **extra: Any) -> dict[str, Any]:
    inputs: dict[str, Any] = {"reward": list(reward), "prompt": prompt, "skip_unusable": skip_unusable} | extra
    if frames is not None:
        inputs["frames"] = frames
    if video is not None:
        inputs["video"] = video
    return {"class_type": "AnimeRewardScore", "inputs": inputs}
