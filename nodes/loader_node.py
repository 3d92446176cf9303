"""AnimeReward Loader and AnimeReward Weights nodes."""

from __future__ import annotations

import logging
from pathlib import Path

import comfy.model_management as mm
from comfy_api.latest import io

from ..animereward import dimensions as registry
from ..animereward.dimensions import DIMENSIONS
from ..animereward.scorer_protocol import DEFAULT_BATCH_SIZE
from . import model_folder
from .errors import NodeInputError, from_library
from .reward_handle import RewardHandle, torch_dtype
from .types import AnimeRewardType, RewardWeightsType

log = logging.getLogger("AnimeReward")

def loader_dimensions() -> tuple[str, ...]:
    """The dimensions the loader offers, in panel order: every one the registry says is implemented."""
    return registry.available()


def leading_dimensions() -> tuple[str, ...]:
    """Dimensions whose inputs and outputs sit in registry order among a node's other inputs."""
    return tuple(d for d in loader_dimensions() if not DIMENSIONS[d].appended)


def appended_dimensions() -> tuple[str, ...]:
    """Dimensions added after workflows were saved (`Dimension.appended`): their inputs come after every other
    input, optional, and their Score outputs after `json`, so saved workflows keep their meaning."""
    return tuple(d for d in loader_dimensions() if DIMENSIONS[d].appended)


def dimension_tooltip(name: str) -> str:
    dim = DIMENSIONS[name]
    reads = [w for w, on in (("the prompt", dim.needs_prompt), ("the first frame", dim.needs_first_frame)) if on]
    needs = ("no weights (computed from the frames)" if not dim.needs_weights
             else "its files (character/IP_checkpoints/...) in the folder, and a gallery of characters"
             if dim.files is not None and dim.files.kind == "parts" else "its checkpoint in the folder")
    extra = f"; reads {' and '.join(reads)}" if reads else ""
    return f"Score {dim.label} ({name}): needs {needs}{extra}."


_last_report: list[str] = []  # the last load's line, so a reload with the same outcome stays quiet


def report_skipped(node: str, root: Path | None, missing: dict[str, list[str]]) -> None:
    """One log line per load for the dimensions skipped (not one per dimension), a warning only when it says
    something new: an unchanged outcome (the same folder, the same dimensions missing) is logged at debug."""
    if not missing:
        return
    if root is None:
        line = f"{node}: no weights folder chosen, so {', '.join(missing)} are not loaded (the flow metrics need none)"
    else:
        line = f"{node}: skipping dimensions whose files are missing in {root}: " + "; ".join(
            f"{d} ({', '.join(paths)})" for d, paths in missing.items())
    log.log(logging.DEBUG if _last_report == [line] else logging.WARNING, "%s", line)
    _last_report[:] = [line]


class AnimeRewardLoader(io.ComfyNode):
    NODE_NAME = "AnimeReward Loader"

    @classmethod
    def define_schema(cls) -> io.Schema:
        roots = [model_folder.NO_WEIGHTS, *model_folder.weight_roots()]
        return io.Schema(
            node_id="AnimeRewardLoader",
            display_name=cls.NODE_NAME,
            category="AnimeReward",
            description="Loads AnimeReward from a folder in models/animereward (official layout or flat). "
                        "Weights load lazily on first use and are managed by ComfyUI like any model.",
            inputs=[
                io.Combo.Input("weights", options=roots, default=model_folder.NO_WEIGHTS,
                               tooltip="A folder in models/animereward holding the official reward weights. "
                                       "'none' scores with the weight-free flow metrics only."),
                *[io.Boolean.Input(name, default=True, tooltip=dimension_tooltip(name)) for name in leading_dimensions()],
                io.Boolean.Input("skip_missing", default=True,
                                 tooltip="Skip enabled dimensions whose files are missing (listed on the node). "
                                         "Off: missing files are an error listing each one."),
                io.Combo.Input("dtype", options=["auto", "fp32", "fp16", "bf16"], default="auto",
                               tooltip="Precision of the reward models. auto follows ComfyUI: bf16/fp16 on a GPU, "
                                       "fp32 on the CPU. fp32 only if a GPU run gives NaN scores."),
                io.Combo.Input("quantization", options=["none", *(q for q in registry.QUANTIZATIONS if q)],
                               default="none", tooltip="8/4-bit loading of the models that take it ("
                               + ", ".join(d for d in loader_dimensions() if DIMENSIONS[d].quantizations)
                               + "; CUDA + bitsandbytes only)."),
                io.Int.Input("batch_size", default=DEFAULT_BATCH_SIZE, min=1, max=64, optional=True,
                             tooltip="Clips per forward when scoring several (Best-of-N). Larger is faster on a "
                                     "big GPU and needs more VRAM; lower it if scoring runs out of memory. "
                                     "See docs/batch-size.md."),
                # off by default: a workflow saved before the dimension existed scores what it scored then
                *[io.Boolean.Input(name, default=False, optional=True,
                                   tooltip=dimension_tooltip(name) + " Off by default (new in this version).")
                  for name in appended_dimensions()],
            ],
            outputs=[AnimeRewardType.Output("reward", display_name="reward",
                                            tooltip="The judge, for AnimeReward Score and Best-of-N. Its models "
                                                    "load on first use, under ComfyUI's model management.")],
            is_output_node=False,
        )

    @classmethod
    def validate_inputs(cls, weights: object = None) -> bool | str:
        """At validation, so an API prompt gets the error before anything runs: `weights` must be a name the
        list offers (0.3.75 does not check V3 combos itself). Reads no file (model_folder lists names only).
        None: the input is wired from another node, checked when the Loader runs."""
        if weights is None:
            return True
        problem = _weights_problem(weights)
        return True if problem is None else f"{cls.NODE_NAME}: input 'weights': {problem[0]} Fix: {problem[1]}"

    @classmethod
    def fingerprint_inputs(cls, weights: str, **_: object) -> str:
        """Re-run when files appear in or vanish from the chosen folder, not only when inputs change."""
        from ..animereward.weights_layout import scan

        root = model_folder.weight_roots().get(weights) if isinstance(weights, str) else None
        if root is None:
            return f"{weights!r}"
        found, problems = scan(root)
        from .characters_folder import character_roots, stamp

        # the default gallery of character_consistency may be the characters folder (character_gallery_default)
        characters = [f"{k}={stamp(v)}" for k, v in character_roots().items()] if found.get(CHARACTER) else []
        return f"{root}:{sorted(found.items())}:{sorted(problems.items())}:{characters}"

    @classmethod
    def execute(cls, weights: str, skip_missing: bool, dtype: str, quantization: str,
                batch_size: int = DEFAULT_BATCH_SIZE, **toggles: bool) -> io.NodeOutput:
        from ..animereward import AnimeReward
        from ..animereward.weights_layout import missing_files, missing_message, scan

        enabled = [d for d in loader_dimensions() if toggles.get(d, False)]
        if not enabled:
            raise NodeInputError(cls.NODE_NAME, "dimensions", "every dimension is switched off.",
                                 "switch on at least one dimension.")
        root: Path | None = None
        problem = _weights_problem(weights)
        if problem is not None:
            raise NodeInputError(cls.NODE_NAME, "weights", *problem)
        if weights != model_folder.NO_WEIGHTS:
            root = model_folder.weight_roots()[weights]
        wanted = [d for d in enabled if DIMENSIONS[d].needs_weights]
        missing: dict[str, list[str]] = {}
        if wanted and root is None:
            if not skip_missing:
                raise NodeInputError(cls.NODE_NAME, "weights", f"no weights folder is chosen, but {', '.join(wanted)} "
                                     "need their checkpoints.", "pick a folder in models/animereward, switch "
                                     "those dimensions off, or turn on skip_missing.")
            missing = {d: ["(no weights folder chosen)"] for d in wanted}
        elif wanted:
            broken = {d: why for d, why in scan(root)[1].items() if d in wanted}
            if broken and not skip_missing:
                raise NodeInputError(cls.NODE_NAME, "weights", "files in the chosen folder cannot be used:\n"
                                     + "\n".join(f"  {d}: {why}" for d, why in broken.items()),
                                     "fetch those files again, switch those dimensions off, or turn on skip_missing.")
            missing = {d: [why] for d, why in broken.items()}
            found = missing_files(root, [d for d in wanted if d not in broken])
            if any(found.values()) and not skip_missing:
                raise NodeInputError(cls.NODE_NAME, "weights", missing_message(root, found),
                                     "add the files, switch those dimensions off, or turn on skip_missing.")
            missing |= {d: [str(p) for p in ps] for d, ps in found.items() if ps}
        settings: dict[str, object] = {}
        if CHARACTER in enabled and CHARACTER not in missing and root is not None:
            gallery, why = character_gallery_default(root)
            if why is not None:
                if not skip_missing:
                    raise NodeInputError(cls.NODE_NAME, CHARACTER, why, "add a gallery, or switch it off.")
                missing[CHARACTER] = [why]
            elif gallery is not None:
                settings[GALLERY_SETTING] = gallery
        dims = [d for d in enabled if d not in missing]
        if CHARACTER in dims:
            check_character_models(cls.NODE_NAME)
        if not dims:
            raise NodeInputError(cls.NODE_NAME, "weights", f"no enabled dimension has its files: {missing}.",
                                 "put the official files in the folder, or enable the flow metrics.")
        report_skipped(cls.NODE_NAME, root, missing)
        quant = None if quantization == "none" else quantization
        # bitsandbytes weights cannot be moved between devices, so quantised models are built on the GPU
        # and left out of model management's load/offload (the rest still goes through it).
        unmanaged = frozenset(d for d in dims if quant and quant in DIMENSIONS[d].quantizations)
        device = mm.get_torch_device() if unmanaged else "cpu"
        with from_library(cls.NODE_NAME):
            reward = AnimeReward.from_folder(root, dims, dtype=torch_dtype(dtype), device=device, quantization=quant,
                                             settings=settings)
        return io.NodeOutput(RewardHandle(reward=reward, root=root, skipped=missing, unmanaged=unmanaged,
                                          batch_size=int(batch_size)))


CHARACTER = "character_consistency"
GALLERY_SETTING = "character_gallery"  # animereward.character_scorer.GALLERY_SETTING (not imported: torch)


def character_gallery_default(root: Path) -> tuple[Path | None, str | None]:
    """The gallery character_consistency scores against by default: (None, None) for the official gallery
    in the weights folder; else (the artist's characters folder, None) when it holds characters; else
    (None, why there is none)."""
    from .characters_folder import character_roots

    if has_official_gallery(root):
        return None, None
    for path in character_roots().values():
        return path, None
    return None, ("no gallery of characters to compare with: neither the official gallery (character/videos/ "
                  "with gallerys.json) in the weights folder nor any character in models/animereward/characters/ "
                  "(a folder per character, <name>/, with a few images each).")


def has_official_gallery(root: Path | None) -> bool:
    """Whether the weights folder holds the official gallery (character/videos/ with gallerys.json)."""
    from ..animereward.weights_layout import locate, locate_parts

    if root is None:
        return False
    try:
        return locate_parts(locate(root, CHARACTER), CHARACTER).get("gallery") is not None
    except (OSError, ValueError):
        return False


def check_character_models(node: str) -> None:
    """An older transformers lacks the detector and tracker classes: say which version, naming the toggle."""
    from ..animereward.character_tracking import CharacterModelsUnavailable, transformers_classes

    try:
        transformers_classes()
    except CharacterModelsUnavailable as exc:
        raise NodeInputError(node, CHARACTER, str(exc), f"update transformers, or switch {CHARACTER} off "
                             "(the other dimensions work without it).") from exc


def _weights_problem(weights: object) -> tuple[str, str] | None:
    """(problem, fix) when `weights` is not a folder the Loader offers, else None."""
    if not isinstance(weights, str):
        return (f"{weights!r} is a {type(weights).__name__}, not a folder name.",
                f"give the name of a folder in models/animereward, or '{model_folder.NO_WEIGHTS}'.")
    if weights != model_folder.NO_WEIGHTS and weights not in model_folder.weight_roots():
        return (f"folder '{weights}' is not in models/animereward (or holds none of the reward's files).",
                "refresh the page (R) and pick an existing folder.")
    return None


def weight_input(d: str, optional: bool = False) -> io.Float.Input:
    return io.Float.Input(d, default=DIMENSIONS[d].default_weight, min=0.0, max=10.0, step=0.05, optional=optional,
                          tooltip=f"How much {DIMENSIONS[d].label} counts in the total, 0 to 10 (1 = as much as the "
                                  "others, 0 = shown but left out of the total). A clip with no score for it (e.g. "
                                  "no character found) is totalled over the other dimensions.")


class AnimeRewardWeights(io.ComfyNode):
    """Per-dimension weights for the total; one node can feed Score and Best-of-N alike."""

    NODE_NAME = "AnimeReward Weights"

    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="AnimeRewardWeights",
            display_name=cls.NODE_NAME,
            category="AnimeReward",
            description="Weights of each dimension in the total score (only enabled dimensions count; "
                        "the total is the weighted mean).",
            inputs=[*[weight_input(d) for d in leading_dimensions()],
                    *[weight_input(d, optional=True) for d in appended_dimensions()]],
            outputs=[RewardWeightsType.Output("weights", display_name="weights",
                                              tooltip="Connect to the weights input of AnimeReward Score or "
                                                      "Best-of-N.")],
        )

    @classmethod
    def execute(cls, **weights: float) -> io.NodeOutput:
        if not any(w > 0 for w in weights.values()):
            raise NodeInputError(cls.NODE_NAME, "weights", "all weights are 0.", "give one a weight above 0.")
        return io.NodeOutput(dict(weights))
