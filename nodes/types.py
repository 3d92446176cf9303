"""Custom wire types of the pack."""

from comfy_api.latest import io

AnimeRewardType = io.Custom("ANIMEREWARD")
RewardWeightsType = io.Custom("ANIMEREWARD_WEIGHTS")
