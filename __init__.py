"""ComfyUI-AnimeReward: AnimeReward scoring, overlays and best-of-N reranking, preference collection and
GAPO LoRA training, as ComfyUI nodes.

Registered through the V3 API only (ComfyUI ignores `comfy_entrypoint` when NODE_CLASS_MAPPINGS exists).
Nothing heavy is imported here: node modules are imported when ComfyUI asks for the node list, and models,
OpenCV and peft only when a node first runs.
"""

WEB_DIRECTORY = "./web"


async def comfy_entrypoint():
    from .nodes.extension import AnimeRewardExtension

    return AnimeRewardExtension()
