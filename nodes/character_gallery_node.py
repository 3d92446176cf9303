"""AnimeReward Character Gallery: score character_consistency against the artist's own characters.

The Loader's character_consistency compares the characters of a clip with a gallery: by default the official
gallery in the weights folder (character/videos/ with gallerys.json), or, without it, the first folder of
characters in models/animereward/characters. This node picks the gallery: a characters root (one folder per
character, `<name>/`, a few images each) or the official one. It returns the same judge (the same loaded
models, nothing is loaded again) scoring against that gallery. Embeddings of the gallery's images are computed
on the first score and cached beside them; adding a character embeds only its images.
"""

from __future__ import annotations

import dataclasses

from comfy_api.latest import io

from .characters_folder import character_roots, stamp
from .errors import NodeInputError
from .loader_node import CHARACTER, GALLERY_SETTING, has_official_gallery
from .types import AnimeRewardType

NODE = "AnimeReward Character Gallery"
OFFICIAL = "official gallery (weights folder)"


def gallery_options() -> list[str]:
    """Every characters root that holds characters (names only, never raises), then the official gallery."""
    return [*character_roots(), OFFICIAL]


class AnimeRewardCharacterGallery(io.ComfyNode):
    NODE_NAME = NODE

    @classmethod
    def define_schema(cls) -> io.Schema:
        options = gallery_options()
        return io.Schema(
            node_id="AnimeRewardCharacterGallery",
            display_name=cls.NODE_NAME,
            category="AnimeReward",
            description="Scores character consistency against your own characters: a folder per character "
                        "(models/animereward/characters/<name>/ with a few images each), or the official gallery.",
            inputs=[
                AnimeRewardType.Input("reward", tooltip="The judge from AnimeReward Loader, with "
                                                        "character_consistency switched on."),
                io.Combo.Input("characters", options=options, default=options[0],
                               tooltip="Which characters to recognise: 'characters' is models/animereward/"
                                       "characters/ (one folder per character, named after it, holding a few "
                                       "images of it; refresh the page after adding one); other entries are "
                                       "the places an animereward_characters: entry of extra_model_paths.yaml "
                                       "adds; or the official gallery of the weights folder."),
            ],
            outputs=[AnimeRewardType.Output("gallery_reward", display_name="reward",
                                            tooltip="The same judge (same loaded models), scoring "
                                                    "character_consistency against this gallery: connect it to "
                                                    "AnimeReward Score or Best-of-N.")],
        )

    @classmethod
    def validate_inputs(cls, characters: object = None) -> bool | str:
        """A name the list offers (0.3.75 does not check V3 combos itself); reads names only."""
        if characters is None or characters in gallery_options():
            return True
        return (f"{cls.NODE_NAME}: input 'characters': {characters!r} is not a folder of characters. Fix: add a "
                "folder per character (a few images each) to models/animereward/characters/, refresh the page "
                "(R) and pick it.")

    @classmethod
    def fingerprint_inputs(cls, characters: str, **_: object) -> str:
        """Re-run when characters or images are added or removed (the scores change with the gallery)."""
        root = character_roots().get(characters) if isinstance(characters, str) else None
        return f"{characters}:{stamp(root)}"

    @classmethod
    def execute(cls, reward, characters: str) -> io.NodeOutput:
        if CHARACTER not in reward.dimensions:
            why = (f"its files were not loaded: {'; '.join(reward.skipped[CHARACTER])}" if CHARACTER in reward.skipped
                   else "it is switched off in the AnimeReward Loader")
            raise NodeInputError(cls.NODE_NAME, "reward", f"{CHARACTER} is not enabled: {why}.",
                                 f"switch {CHARACTER} on in the Loader and put its files in the weights folder "
                                 "(character/IP_checkpoints/...).")
        if characters == OFFICIAL:
            if not has_official_gallery(reward.root):
                raise NodeInputError(cls.NODE_NAME, "characters", "the weights folder has no official gallery "
                                     "(character/videos/ with gallerys.json).",
                                     "pick a folder of your characters, or add the official gallery.")
            setting = None
        else:
            root = character_roots().get(characters)
            if root is None:
                raise NodeInputError(cls.NODE_NAME, "characters", f"{characters!r} holds no characters now.",
                                     "add a folder per character with a few images each, then refresh (R).")
            setting = root
        handle = dataclasses.replace(reward, reward=reward.reward.with_settings(**{GALLERY_SETTING: setting}))
        return io.NodeOutput(handle)
