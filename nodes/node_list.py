"""Every node the pack registers, in menu order."""

from __future__ import annotations

from comfy_api.latest import io

from .best_of_n_node import AnimeRewardBestOfN
from .character_gallery_node import AnimeRewardCharacterGallery
from .collect_node import AnimeRewardCollect
from .compare_node import AnimeRewardCompareLoRA
from .loader_node import AnimeRewardLoader, AnimeRewardWeights
from .score_node import AnimeRewardOverlay, AnimeRewardScore
from .synthetic_node import AnimeRewardSyntheticClips
from .trainer_node import AnimeRewardGAPOTrainer

NODES: list[type[io.ComfyNode]] = [
    AnimeRewardLoader,
    AnimeRewardWeights,
    AnimeRewardCharacterGallery,
    AnimeRewardScore,
    AnimeRewardOverlay,
    AnimeRewardBestOfN,
    AnimeRewardCollect,
    AnimeRewardSyntheticClips,
    AnimeRewardGAPOTrainer,
    AnimeRewardCompareLoRA,
]
