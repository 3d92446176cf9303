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
    "synthetic_collect_rankings": "AnimeReward collect synthetic candidates for ranking (needs the Wan 2.1 VAE)",
    "collect_rankings": "AnimeReward Wan 2.1 best of 4, collected for ranking (needs the Wan 2.1 files)",
    "train_gapo_lora": "AnimeReward train a GAPO LoRA on your rankings (needs the Wan 2.1 model and a dataset)",
    "compare_lora": "AnimeReward Wan 2.1 with and without your LoRA, scored (needs the Wan 2.1 files)",
}
# Examples that run on any machine: their template thumbnail is made from their own output.
RUNNABLE = frozenset({"synthetic_best_of_n", "score_video_overlay"})
TEMPLATE_DIR = REPO_ROOT / "example_workflows"
