"""Scoring overhead of the facade, and batched vs one-by-one scoring.

(a) overhead: end-to-end `AnimeReward.score_batch` on 8 clips x 24 frames over the five model dimensions,
    divided by their bare forwards (`scorer.forward(**inputs)`) on the same preprocessed tensors (target
    <= 1.15); with the default prefetch="auto" (on the CPU: everything one after the other, as the official
    code does) and with prefetch forced on (the next chunk is preprocessed while a forward runs, which on a
    CPU makes both fight over the same cores: this is why "auto" overlaps only forwards on an accelerator).
    The official PIL resizes alone are timed too: the floor of exact preprocessing. A second call adds the two flow metrics,
    which have no forward (their work is the DIS flow, see bench_flow), for the per-dimension table: e2e per
    dimension, time in the scorer's own preprocess and forward, and the bare forward.
(b) batched vs one-by-one: `score_batch` of the 8 clips vs 8 calls of `score`, same clips, same models.

Models: small configurations of the real classes for every weighted dimension (CPU budget): the tiny
official-format Idefics2 checkpoint of the conformance tests, and BLIP/ActionCLIP with the official module
classes but narrow, shallow towers (`small_blip`, `small_actionclip`); the flow metrics are the real ones. The preprocessing is the real, full one: the
official 24-frame sample, PIL resizes, normalisation, tokenising.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from animereward import dimensions as registry
from animereward.dimensions import DIMENSIONS
from animereward.hooks import Hooks
from animereward.reward import AnimeReward
from animereward.synthetic_clips import make_clip

from .timing import median_seconds

N_CLIPS = 8
FRAMES = 24
# Half of Wan 2.x 480p (480x832) in each direction: the CPU budget of `python -m bench` (~3 min on 2 cores).
# The scorers' preprocessing scales with the pixels, the forwards do not: pass height/width for other sizes.
HEIGHT, WIDTH = 240, 416
REPEATS = 3
PROMPT = "a girl with silver hair waves under falling cherry blossoms"  # in the tiny Idefics2 vocabulary
# The five frame-model dimensions: one batched forward over sampled frames each. Character consistency
# (detect, track, recognise per clip) is measured by its own bench, bench_character.
OWN_BENCH = ("character_consistency",)
WEIGHTED = tuple(d for d in registry.weighted() if d not in OWN_BENCH)
DIMS = tuple(d for d in registry.available() if d not in OWN_BENCH)


def _init_(module: nn.Module, seed: int) -> nn.Module:
    """Fill every parameter (some are created with torch.empty): N(0, 0.02), LayerNorm weights 1."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in module.named_parameters():
            if name.endswith("weight") and p.ndim == 1 and ("ln" in name or "norm" in name.lower()):
                p.fill_(1.0)
            else:
                p.copy_(torch.randn(p.shape, generator=gen) * 0.02)
    return module.eval().requires_grad_(False)


def small_blip(dimension: str, width: int = 64) -> nn.Module:
    """The official BLIP consistency class with a 2-layer, `width`-wide ViT/BERT."""
    from animereward import blip_consistency as bc

    cls = bc.ImageVideoConsistency if dimension == bc.IMAGE_VIDEO else bc.TextVideoConsistency
    return _init_(cls(width=width, depth=2, heads=2), 1)


def small_actionclip(width: int = 64) -> nn.Module:
    """The official ActionCLIP scorer with `width`-wide, 2-layer towers."""
    from animereward import actionclip as ac

    size = ac.ActionClipSize(embed_dim=width, vision_width=width, vision_layers=2, text_width=width, text_layers=2,
                             head_width=width // 2)
    return ac.ActionClipMotionScorer(_init_(ac.ActionClip(size), 2))


def small_builders(workdir: Path) -> dict[str, Callable[..., nn.Module]]:
    """build_scorer-like callables for every weighted dimension (small configs) plus the real flow metrics."""
    import importlib.util
    import json

    from animereward import idefics2_regression

    # By file path: once ComfyUI is loaded in this process (bench_nodes), the name `tests` is ComfyUI's.
    golden = Path(__file__).resolve().parents[1] / "tests" / "golden" / "idefics2"
    spec = importlib.util.spec_from_file_location("_bench_idefics2_tiny", golden / "tiny_checkpoint.py")
    tiny_checkpoint = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tiny_checkpoint)  # type: ignore[union-attr]
    shapes = json.loads((golden / "official_keys.json").read_text())
    folder = tiny_checkpoint.write_checkpoint(workdir / "checkpoint-final", shapes)

    def build(name: str, _weights: Path | None, **kwargs: Any) -> nn.Module:
        if name in ("visual_smoothness", "visual_appeal"):
            return idefics2_regression.build_scorer(name, folder, **kwargs)
        if name == "visual_motion":
            return small_actionclip()
        return small_blip(name)

    return dict.fromkeys(WEIGHTED, build)


def _clips(height: int, width: int) -> list[torch.Tensor]:
    return [make_clip(s, frames=FRAMES, height=height, width=width) for s in range(N_CLIPS)]


class _Probe(Hooks):
    """Timestamps inside one score_batch call: each scorer's preprocess/forward is wrapped once (before any
    timing) to add up the time spent in the scorer's own code, from whichever thread calls it; progress marks
    a dimension's end, before_forward the first dimension's start."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.start: dict[str, float] = {}
        self.end: dict[str, float] = {}
        self.pre: dict[str, float] = dict.fromkeys(DIMS, 0.0)
        self.fwd: dict[str, float] = dict.fromkeys(DIMS, 0.0)

    def wrap(self, name: str, module: nn.Module) -> None:
        pre, fwd = module.preprocess, module.forward

        def timed_pre(batch: Any) -> Any:
            t0 = time.perf_counter()
            out = pre(batch)
            self.pre[name] += time.perf_counter() - t0
            return out

        def timed_fwd(**inputs: Any) -> Any:
            t0 = time.perf_counter()
            out = fwd(**inputs)
            self.fwd[name] += time.perf_counter() - t0
            return out

        module.preprocess, module.forward = timed_pre, timed_fwd

    def before_forward(self, name: str, module: nn.Module, shape: Any = None) -> None:
        self.start.setdefault(name, time.perf_counter())

    def progress(self, name: str, done: int, total: int) -> None:
        self.end[name] = time.perf_counter()


def run(repeats: int = REPEATS, height: int = HEIGHT, width: int = WIDTH) -> list[tuple[str, str]]:
    """Each repeat runs every variant side by side (so a busy CPU slows all of them alike); ratios are taken
    per repeat, then the median."""
    from animereward.scorer_protocol import ClipBatch

    torch.manual_seed(0)
    with tempfile.TemporaryDirectory(prefix="bench-scoring-") as tmp:
        probe = _Probe()
        reward = AnimeReward(list(DIMS), builders=small_builders(Path(tmp)))
        clips = _clips(height, width)
        firsts = [c[0] for c in clips]

        def batched(dims: tuple[str, ...], prefetch: bool | str) -> float:
            reward.prefetch = prefetch
            t0 = time.perf_counter()
            reward.score_batch(clips, prompts=PROMPT, first_frames=firsts, batch_size=N_CLIPS,
                               hooks=probe, dimensions=list(dims))
            return time.perf_counter() - t0

        def one_by_one() -> float:
            reward.prefetch = "auto"
            t0 = time.perf_counter()
            for c, f in zip(clips, firsts, strict=True):
                reward.score(c, prompt=PROMPT, first_frame=f)
            return time.perf_counter() - t0

        # Warm-up (builds every scorer, pays first-call costs) and the preprocessed tensors of the bare
        # forwards: one batch of the same 8 clips per dimension.
        batch = ClipBatch(frames=clips, prompts=[PROMPT] * N_CLIPS, first_frames=firsts)
        inputs = {}
        with torch.no_grad():
            for d in DIMS:
                inputs[d] = reward.scorer(d).preprocess(batch)
                reward.scorer(d)(**inputs[d])
                probe.wrap(d, reward.scorer(d))
        batched(DIMS, "auto")

        per: dict[str, dict[str, list[float]]] = {d: {"e2e": [], "pre": [], "fwd": [], "bare": []} for d in DIMS}
        runs: dict[str, list[float]] = {"all": [], "models": [], "models_forced": [], "singles": [], "leads": [],
                                        "pil": []}
        for _ in range(repeats):
            runs["models"].append(batched(WEIGHTED, "auto"))
            runs["models_forced"].append(batched(WEIGHTED, True))
            probe.reset()
            t0 = time.perf_counter()
            runs["all"].append(batched(DIMS, "auto"))
            runs["leads"].append(probe.start[DIMS[0]] - t0)  # validation and frame selection, before any scorer
            prev = probe.start[DIMS[0]]
            for d in DIMS:  # a dimension runs from the previous one's last progress call to its own
                per[d]["e2e"].append(probe.end[d] - prev)
                prev = probe.end[d]
                per[d]["pre"].append(probe.pre[d])
                per[d]["fwd"].append(probe.fwd[d])
            with torch.no_grad():
                for d in DIMS:
                    module = reward.scorer(d)
                    # back-to-back median of 3: a first call right after OpenCV/PIL work is sometimes
                    # several times slower on a 2-core machine (thread wake-up/contention), not the model
                    per[d]["bare"].append(median_seconds(lambda m=module, i=inputs[d]: m(**i), 3))
            runs["singles"].append(one_by_one())
            runs["pil"].append(_pil_resizes(reward, clips))

    return _report(per, runs, repeats, height, width)


def _pil_resizes(reward: AnimeReward, clips: list[torch.Tensor]) -> float:
    """Seconds of the official PIL resizes alone for these clips (img_all bicubic 224, and the Idefics2
    processor's bilinear size), on the same threads the preprocessing uses: the floor of exact preprocessing."""
    from animereward.idefics2_regression import pixel_recipe
    from animereward.preprocess import resize_uint8, sample_frame_indices, to_uint8

    recipe = pixel_recipe(reward.scorer("visual_smoothness").processor.image_processor)
    frames = [to_uint8(c, sample_frame_indices(c.shape[0])) for c in clips]
    t0 = time.perf_counter()
    for u8 in frames:
        resize_uint8(u8)
        resize_uint8(u8, recipe.output_size(*u8.shape[1:3]), recipe.resample)
    return time.perf_counter() - t0


def _row(label: str, e2e: float, pre: float, fwd: float, bare: float | None) -> str:
    ratio = f"{e2e / bare:>10.1f}" if bare else f"{'n/a':>10}"
    return f"{label:<26}{e2e:>8.3f}{pre:>8.3f}{fwd:>9.4f}{(bare or 0):>9.4f}{ratio}{e2e / (pre + fwd):>12.3f}"


def _report(per: dict[str, dict[str, list[float]]], runs: dict[str, list[float]], repeats: int, height: int,
            width: int) -> list[tuple[str, str]]:
    med = statistics.median
    rng = range(repeats)

    def bare(dims: tuple[str, ...], r: int) -> float:
        return sum(per[d]["bare"][r] for d in dims)

    models = med(runs["models"][r] / bare(WEIGHTED, r) for r in rng)
    forced = med(runs["models_forced"][r] / bare(WEIGHTED, r) for r in rng)
    whole = med(runs["all"][r] / bare(DIMS, r) for r in rng)
    inside = [sum(per[d]["pre"][r] + per[d]["fwd"][r] for d in DIMS) for r in rng]
    batched_gain = med(runs["singles"][r] / runs["all"][r] for r in rng)
    floor = med(1 + runs["pil"][r] / bare(WEIGHTED, r) for r in rng)

    lines = [
        f"(a) scoring overhead: score_batch of {N_CLIPS} clips x {FRAMES} frames {height}x{width}, small models, "
        f"CPU ({torch.get_num_threads()} threads); medians of {repeats} side-by-side repeats",
        f"  five model dimensions: score_batch {med(runs['models']):.3f} s, bare forwards "
        f"{med(bare(WEIGHTED, r) for r in rng):.3f} s: e2e / bare = {models:.2f} (target <= 1.15); with the "
        f"prefetch forced on the CPU {med(runs['models_forced']):.3f} s = {forced:.2f}",
        f"  the official PIL resizes alone (exact, threaded) take {med(runs['pil']):.3f} s: exact preprocessing "
        f"cannot bring e2e / bare below {floor:.2f} with these models on this CPU",
        "  all seven (+ flow metrics), per dimension: e2e = from the previous dimension's end to its "
        "own; prep/fwd = time in the scorer's preprocess/forward",
        f"{'dimension':<26}{'e2e s':>8}{'prep s':>8}{'fwd s':>9}{'bare fwd':>9}{'e2e/bare':>10}",
    ]
    for d in DIMS:
        m = {k: med(v) for k, v in per[d].items()}
        flow = not DIMENSIONS[d].needs_weights  # the flow measurement runs in preprocess: no bare-forward ratio
        r_bare = f"{'n/a':>10}" if flow else f"{med(a / b for a, b in zip(per[d]['e2e'], per[d]['bare'], strict=True)):>10.2f}"
        lines.append(f"{d:<26}{m['e2e']:>8.3f}{m['pre']:>8.3f}{m['fwd']:>9.4f}{m['bare']:>9.4f}{r_bare}")
    lines.append(f"{'whole call (7)':<26}{med(runs['all']):>8.3f}{'':>8}{'':>9}{med(bare(DIMS, r) for r in rng):>9.4f}"
                 f"{whole:>10.2f}")
    lines.append(f"time in the scorers' preprocess + forward / whole call: {med(inside[r] / runs['all'][r] for r in rng):.3f}"
                 f"; validation/frame selection before the first scorer: {med(runs['leads']):.3f} s")
    lines.append("")
    lines.append(f"(b) batched vs one-by-one, same {N_CLIPS} clips, all seven: score_batch {med(runs['all']):.3f} s, "
                 f"{N_CLIPS} x score {med(runs['singles']):.3f} s; one-by-one / batched = {batched_gain:.2f}")
    print("\n".join(lines), flush=True)
    size = f"{N_CLIPS} clips x {FRAMES} frames {width}x{height}, small models"
    return [
        (f"Scoring: score_batch / bare forwards, five model dims ({size})",
         f"{models:.2f}  (PIL-resize floor {floor:.2f}; prefetch forced {forced:.2f}; target <= 1.15)"),
        ("Scoring: whole call with the flow metrics / bare forwards", f"{whole:.2f}  (flow has no forward)"),
        ("Scoring: 8 x score / score_batch of 8", f"{batched_gain:.2f}"),
    ]


if __name__ == "__main__":
    run()
