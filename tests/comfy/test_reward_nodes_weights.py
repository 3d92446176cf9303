"""The reward nodes with real checkpoints in models/animereward: model management, missing inputs and files.

Uses the official-format checkpoints of animereward_testkit.official_weights (full-size BLIP image-video with
seeded random weights, the tiny official-format Idefics2 folder), linked into the run's models folder.
"""

from __future__ import annotations

import pytest
from animereward_testkit import official_weights as ow
from animereward_testkit.graph import Graph
from animereward_testkit.inprocess import WorkflowError
from animereward_testkit.reward_workflows import best_of_n, capture, captured, loader, score, synthetic

pytestmark = pytest.mark.comfy

DIMS = ("image_video_consistency", "visual_smoothness", "flow_smoothness")


@pytest.fixture(scope="module")
def weights_folder(comfy_base_dir):
    root = comfy_base_dir / "models" / "animereward" / "official"
    if not root.exists():
        ow.make_root(root, ("image_video_consistency", "visual_smoothness"))
    return "official"


def _graph(weights_folder, with_first_frame=False, **score_inputs):
    """Synthetic clip → Score (with the loader on `weights_folder`) → Capture of its json."""
    g = Graph()
    clips = g.add(**synthetic("clean", frames=9))
    reward = g.add(**loader(weights_folder, enabled=DIMS, skip_missing=False))
    if with_first_frame:
        first = g.add("ImageFromBatch", image=clips["images"], batch_index=0, length=1)
        score_inputs["first_frame"] = first["IMAGE"]
    s = g.add(**score(frames=clips["images"], reward=reward["reward"], **score_inputs))
    c = g.add(**capture(string=s["json"]))
    return g, reward, s, c


def test_scores_with_weights_under_model_management(comfy, weights_folder):
    import comfy.model_management as mm

    g, _, _, c = _graph(weights_folder, with_first_frame=True, prompt="a girl waves")
    import json

    data = json.loads(captured(comfy.run(g.prompt()), c)["string"])
    assert set(data["scores"]) == set(DIMS)
    assert all(0.0 <= v <= 1.0 for v in data["scores"].values())
    # the scorers with weights were loaded by ComfyUI's model management, not behind its back
    loaded = [type(getattr(lm.model.model, "scorer", lm.model.model)).__name__ for lm in mm.current_loaded_models]
    assert any("ImageVideo" in n or "Blip" in n for n in loaded), loaded
    assert any("Idefics2" in n for n in loaded), loaded


def test_missing_prompt_and_first_frame_name_the_input(comfy, weights_folder):
    """Found when the prompt is validated (the loaded dimensions are known from the Loader and its folder),
    not after the graph upstream has run."""
    with pytest.raises(WorkflowError) as err:
        comfy.run(_graph(weights_folder, prompt="")[0].prompt())
    msg = str(err.value)
    assert msg.startswith("validation failed")
    assert "AnimeReward Score" in msg and "'prompt'" in msg and "visual_smoothness" in msg and "Fix:" in msg
    with pytest.raises(WorkflowError) as err:
        comfy.run(_graph(weights_folder, prompt="a girl waves")[0].prompt())
    msg = str(err.value)
    assert msg.startswith("validation failed") and "'first_frame'" in msg and "image_video_consistency" in msg
    # Best-of-N too; without the weights folder the same graph validates and runs (nothing reads a prompt)
    g, reward, scorer, _ = _graph(weights_folder, prompt="a girl waves", with_first_frame=True)
    best = g.add(**best_of_n(scorer.inputs["frames"], 3, reward=reward["reward"], prompt="",
                             first_frame=scorer.inputs["first_frame"]))
    g.add(**capture(int=best["best_index"]))
    with pytest.raises(WorkflowError, match="validation failed") as err:
        comfy.run(g.prompt())
    assert "AnimeReward Best-of-N" in str(err.value) and "'prompt'" in str(err.value)
    reward.set(weights="none (flow metrics only)", skip_missing=True)
    comfy.run(g.prompt())


def test_skip_unusable_scores_the_rest_with_a_visible_warning(comfy, weights_folder):
    g, _, s, _ = _graph(weights_folder, prompt="", skip_unusable=True)
    comfy.run(g.prompt())
    ui = comfy.shown_scores(s.id)
    assert set(ui["clips"][0]["scores"]) == {"flow_smoothness"}
    assert any("visual_smoothness skipped" in w for w in ui["warnings"])
    assert any("image_video_consistency skipped" in w for w in ui["warnings"])


def test_partial_weights_folder_lists_every_missing_file(comfy, weights_folder):
    g, reward, _, _ = _graph(weights_folder, prompt="x")
    reward.set(**loader(weights_folder, enabled=("visual_motion", "text_video_consistency", "flow_motion"),
                        skip_missing=False)["inputs"])
    with pytest.raises(WorkflowError) as err:
        comfy.run(g.prompt())
    msg = str(err.value)
    assert "AnimeReward Loader" in msg and "'weights'" in msg
    assert "testvl-pre76-top187-rec69.pth" in msg and "checkpoint_05.pth" in msg
    assert "IndexTeam/Index-anisora" in msg


def test_quantization_without_cuda_is_a_clear_error(comfy, weights_folder):
    g, reward, _, _ = _graph(weights_folder, prompt="x", skip_unusable=True)
    reward.set(quantization="8bit")
    with pytest.raises(WorkflowError) as err:
        comfy.run(g.prompt())
    msg = str(err.value)
    assert "AnimeReward Loader" in msg and "quantization" in msg and "CUDA" in msg


def test_prefetch_thread_under_the_executor_gives_the_same_scores(comfy, weights_folder, monkeypatch):
    """ANIMEREWARD_PREFETCH=on forces the prefetch thread (auto uses it only for GPU forwards): under ComfyUI's
    executor (inference mode, model patchers) the next dimension is preprocessed on that thread, same scores."""
    import json
    import threading

    g, _, _, c = _graph(weights_folder, with_first_frame=True, prompt="a girl waves")
    runs = {}
    for mode in ("off", "on"):
        monkeypatch.setenv("ANIMEREWARD_PREFETCH", mode)
        seen_threads: set[str] = set()
        original = threading.Thread.run

        def spy(self, _orig=original, _seen=seen_threads):
            _seen.add(self.name.rsplit("_", 1)[0])
            return _orig(self)

        monkeypatch.setattr(threading.Thread, "run", spy)
        runs[mode] = (json.loads(captured(comfy.run(g.prompt()), c)["string"]), seen_threads)
        monkeypatch.setattr(threading.Thread, "run", original)
    assert runs["on"][0]["scores"] == pytest.approx(runs["off"][0]["scores"], abs=1e-6)
    assert "animereward-prefetch" in runs["on"][1] and "animereward-prefetch" not in runs["off"][1]
