"""The server log stays readable (issue 12): one line per load for the skipped dimensions, not one per
dimension and run; the artist's input errors are logged as their message, without a traceback."""

from __future__ import annotations

import logging
import sys

import pytest
from animereward_testkit.graph import Graph
from animereward_testkit.inprocess import WorkflowError
from animereward_testkit.reward_workflows import best_of_n, capture, loader, score, synthetic

pytestmark = pytest.mark.comfy


def _score_graph():
    g = Graph()
    clips = g.add(**synthetic("clean", frames=5, width=64, height=48))
    reward = g.add(**loader())  # no weights folder, every dimension on
    s = g.add(**score(frames=clips["images"], reward=reward["reward"]))
    g.add(**capture(float=s["total"]))
    return g


def test_skipped_dimensions_are_one_warning_per_new_outcome(comfy, caplog):
    import nodes

    sys.modules[nodes.NODE_CLASS_MAPPINGS["AnimeRewardLoader"].__module__]._last_report.clear()
    caplog.set_level(logging.DEBUG, logger="AnimeReward")
    g = _score_graph()
    comfy.run(g.prompt())
    first = [r for r in caplog.records if r.name == "AnimeReward" and "Loader" in r.getMessage()
             and r.levelno >= logging.WARNING]
    assert len(first) == 1 and "visual_smoothness" in first[0].getMessage() and "flow" in first[0].getMessage()
    caplog.clear()
    comfy.run(g.prompt())  # each in-process run loads again: the same outcome is not repeated as a warning
    assert not [r for r in caplog.records if r.name == "AnimeReward" and r.levelno >= logging.WARNING]


def test_input_errors_are_logged_without_a_traceback(comfy, caplog):
    g = Graph()
    clips = g.add(**synthetic("clean, flicker", frames=9, width=64, height=48))
    reward = g.add(**loader())
    best = g.add(**best_of_n(clips["images"], 4, reward=reward["reward"]))
    g.add(**capture(int=best["best_index"]))
    caplog.set_level(logging.ERROR)
    with pytest.raises(WorkflowError, match="frames_per_clip"):
        comfy.run(g.prompt())
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert any("Exception during processing" in m and "frames_per_clip" in m and "Fix:" in m for m in errors)
    assert not [m for m in errors if m.startswith("Traceback")], errors


def test_other_errors_keep_their_traceback(comfy):
    # the pack's module as ComfyUI loaded it (in-process, `nodes` is ComfyUI's own module)
    (quiet_logs,) = [m for n, m in sys.modules.items() if n.endswith(".nodes.quiet_logs")]
    ExpectedUserErrors = quiet_logs.ExpectedUserErrors

    def record(text):
        return logging.LogRecord("root", logging.ERROR, __file__, 1, text, None, None)

    tb = "Traceback (most recent call last):\n  File \"x.py\", line 1, in f\n"
    keep = ExpectedUserErrors()
    assert not keep.filter(record(tb + "ComfyUI-AnimeReward.nodes.errors.NodeInputError: AnimeReward Score: ..."))
    assert not keep.filter(record(tb + "ValueError: AnimeReward Loader: folder 'x' is not there."))
    assert keep.filter(record(tb + "RuntimeError: CUDA error: out of memory"))
    assert keep.filter(record(tb + "ValueError: something else"))
