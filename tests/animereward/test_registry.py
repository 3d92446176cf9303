"""The registry of dimensions (animereward.dimensions) is the one place that says what a dimension is.

Library side: a dimension registered in a test is offered, built, scored, weighted, labelled and drawn with
no other change. (The ComfyUI side, loader inputs to the page, is tests/comfy/test_registry_dimension.py.)
"""

from __future__ import annotations

import pytest
import torch
from animereward_testkit.dummy_dimension import DEFAULT_WEIGHT, DIMENSION, SHORT_LABEL, dummy_dimension

from animereward import dimensions as registry
from animereward.dimensions import DIMENSIONS, Dimension, WeightsEntry
from animereward.reward import AnimeReward, RewardScores


def test_built_in_facts_are_declared_once() -> None:
    assert registry.available() == ("visual_smoothness", "visual_motion", "visual_appeal", "text_video_consistency",
                                    "image_video_consistency", "character_consistency", "flow_smoothness",
                                    "flow_motion")
    assert registry.weighted() == registry.available()[:6]
    assert [d for d in DIMENSIONS if DIMENSIONS[d].quantizations] == ["visual_smoothness", "visual_appeal"]
    assert registry.QUANTIZATIONS == (None, "8bit", "4bit")
    assert [d for d in DIMENSIONS if DIMENSIONS[d].needs_prompt] == [
        "visual_smoothness", "visual_appeal", "text_video_consistency"]
    assert DIMENSIONS["character_consistency"].files.kind == "parts"  # several files (weights_layout)
    assert [d for d in DIMENSIONS if DIMENSIONS[d].appended] == ["character_consistency"]  # after saved inputs
    assert set(registry.labels()) == set(DIMENSIONS) and len(set(registry.labels().values())) == len(DIMENSIONS)


def test_registration_is_checked_and_undone() -> None:
    with pytest.raises(ValueError, match="exists already"):
        registry.register(DIMENSIONS["flow_motion"])
    with pytest.raises(ValueError, match="names no files"):
        registry.register(Dimension("x_model", None, "appearance", "X", "x", scorer=".actionclip"))
    with registry.registered(Dimension("x_model", None, "appearance", "X", "x", scorer=".actionclip",
                                       files=WeightsEntry("x.pth", "file"))):
        assert registry.official_files()["x_model"].relpath == "x.pth"
        assert "x_model" in registry.ANIMEREWARD_DIMENSIONS
    assert "x_model" not in DIMENSIONS and "x_model" not in registry.ANIMEREWARD_DIMENSIONS


def test_a_registered_dimension_is_scored_weighted_and_labelled() -> None:
    from animereward.overlay import render_panel, short_label

    with registry.registered(dummy_dimension(Dimension)):
        reward = AnimeReward.from_folder(None)  # every available weight-free dimension
        assert reward.dimensions == ("flow_smoothness", "flow_motion", DIMENSION)
        frames = torch.full((9, 64, 96, 3), 0.25)
        frames[:, :, :48] = 0.75
        result = reward.score(frames, weights={d: DIMENSIONS[d].default_weight for d in reward.dimensions})
        assert result.scores[DIMENSION] == pytest.approx(0.5, abs=1e-6)
        assert result.weights[DIMENSION] == pytest.approx(DEFAULT_WEIGHT / (DEFAULT_WEIGHT + 2))
        data = result.to_dict()
        assert DIMENSION in data["scores"] and DIMENSION not in data["official"]  # no official key
        assert RewardScores.from_dict(data).scores == result.scores
        assert short_label(DIMENSION) == SHORT_LABEL
        assert render_panel(result.scores, result.total).shape[-1] == 4
    assert DIMENSION not in DIMENSIONS
