"""The score panel on small frames: it stays a bounded part of the frame and, on "auto", keeps off the
character (the synthetic clips draw a character at a known place)."""

from __future__ import annotations

import pytest
import torch

from animereward.overlay import CORNERS, MAX_PANEL_FRACTION, draw_scores
from animereward.synthetic_clips import make_clip

SCORES = {"visual_smoothness": 0.6, "visual_motion": 0.4, "visual_appeal": 0.5, "text_video_consistency": 0.7,
          "image_video_consistency": 0.3, "flow_smoothness": 0.9, "flow_motion": 0.2}


def _drawn_box(before: torch.Tensor, after: torch.Tensor) -> tuple[int, int, int, int]:
    changed = (after - before).abs().sum(dim=-1).amax(dim=0) > 1e-3
    ys, xs = changed.nonzero(as_tuple=True)
    return int(ys.min()), int(ys.max()) + 1, int(xs.min()), int(xs.max()) + 1


@pytest.mark.parametrize(("h", "w"), [(192, 320), (96, 160), (480, 832), (1080, 1920)])
def test_panel_is_a_bounded_part_of_the_frame(h, w):
    clip = torch.full((3, h, w, 3), 0.5)
    y0, y1, x0, x1 = _drawn_box(clip, draw_scores(clip, SCORES, 0.5, "top-left"))
    assert (y1 - y0) <= MAX_PANEL_FRACTION * h + 1 and (x1 - x0) <= MAX_PANEL_FRACTION * w + 1
    assert y0 > 0 and x0 > 0  # a margin from the edges, relative to the frame
    assert (y1 - y0) >= 0.2 * h or h >= 480  # small frames: still large enough to read


def test_every_corner_is_where_it_says():
    clip = torch.full((2, 192, 320, 3), 0.5)
    for corner in CORNERS:
        y0, _, x0, _ = _drawn_box(clip, draw_scores(clip, SCORES, 0.5, corner))
        assert (y0 < 96) == corner.startswith("top") and (x0 < 160) == corner.endswith("left"), corner


def test_auto_keeps_off_the_busiest_corner():
    clip = make_clip(7, frames=9, height=192, width=320)
    busy = torch.rand(9, 80, 130, 3)  # noise in the top-left corner: what "auto" must not cover
    clip[:, :80, :130] = busy
    y0, _, x0, _ = _drawn_box(clip, draw_scores(clip, SCORES, 0.5, "auto"))
    assert not (y0 < 80 and x0 < 130), (y0, x0)


def test_unknown_position_is_an_error():
    with pytest.raises(ValueError, match="position"):
        draw_scores(torch.zeros(1, 64, 64, 3), SCORES, 0.5, "middle")
