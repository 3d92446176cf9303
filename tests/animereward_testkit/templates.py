"""The shipped examples as ComfyUI's template browser shows them.

Frontend 1.32 shows a pack's template with its file name as title and (with '-' and '_' as spaces) as
description, and `<file name>.jpg` as thumbnail: so each example's template file is named by its title.
workflows/ui/<name>.json is the same file under its short name (what tests and scripts use).
"""

from __future__ import annotations

from .comfy_paths import REPO_ROOT

TEMPLATE_TITLES = {
    "synthetic_best_of_n": "AnimeReward best of N on synthetic clips (no model needed)",
    "score_video_overlay": "AnimeReward score a video and draw the scores on it (no model needed)",
    "wan_i2v_best_of_n": "AnimeReward Wan 2.1 image to video, best of 4 (needs the Wan 2.1 files)",
}
TEMPLATE_DIR = REPO_ROOT / "example_workflows"
