"""Scoring overhead of the facade, and batched vs one-by-one scoring.

(a) overhead: end-to-end `AnimeReward.score_batch` on 8 clips x 24 frames, per dimension and overall, divided
    by the bare forwards (`scorer.forward(**inputs)`) on the same preprocessed tensors. The scorer's own
    `preprocess` is timed too, so the table also shows end-to-end / (preprocess + forward): what the facade
    itself adds (validation, frame selection/conversion, batching, bookkeeping).
(b) batched vs one-by-one: `score_batch` of the 8 clips vs 8 calls of `score`, same clips, same models.

Models: small configurations of the real classes for every weighted dimension (CPU budget): the tiny
official-format Idefics2 checkpoint of the conformance tests, and BLIP/ActionCLIP with the official module
classes but narrow, shallow towers (their modules offer no small-config builder, see `small_blip` and
`small_actionclip`); the flow metrics are the real ones. One timing per dimension comes from a single
score_batch call (the before_forward hook marks a dimension's start, the progress callback its end).
"""

from __future__ import annotations

import contextlib
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch
from torch import nn

from animereward.dimensions import DIMENSIONS
from animereward.reward import AnimeReward
from animereward.synthetic_clips import make_clip

N_CLIPS = 8
FRAMES = 24
# Half of Wan 2.x 480p (480x832) in each direction: the CPU budget of `python -m bench` (~3 min on 2 cores).
# The scorers' preprocessing scales with the pixels, the forwards do not: pass height/width for other sizes.
HEIGHT, WIDTH = 240, 416
REPEATS = 3
PROMPT = "a girl with silver hair waves under falling cherry blossoms"  # in the tiny Idefics2 vocabulary
WEIGHTED = ("visual_smoothness", "visual_motion", "visual_appeal", "text_video_consistency",
            "image_video_consistency")
DIMS = (*WEIGHTED, "flow_smoothness", "flow_motion")


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
    """The official BLIP consistency class with a 2-layer, `width`-wide ViT/BERT (forward code unchanged)."""
    from animereward import blip_consistency as bc
    from animereward.blip_text import BertTextEncoder
    from animereward.blip_vit import VisionTransformer

    with torch.device("meta"):  # the full-size towers are never allocated
        model = bc.ImageVideoConsistency() if dimension == bc.IMAGE_VIDEO else bc.TextVideoConsistency()
    model.visual_encoder = VisionTransformer(embed_dim=width, depth=2, num_heads=2)
    model.img_proj = nn.Linear(width, width)
    model.img_key_proj = nn.Linear(width, width)
    model.head_diff = nn.Linear(2 * width, 1)
    if dimension == bc.TEXT_VIDEO:
        model.text_encoder = BertTextEncoder(hidden=width, num_heads=2, inner=2 * width, depth=2)
    return _init_(model, 1)


@contextlib.contextmanager
def _patched(module: Any, **values: Any) -> Iterator[None]:
    old = {k: getattr(module, k) for k in values}
    for k, v in values.items():
        setattr(module, k, v)
    try:
        yield
    finally:
        for k, v in old.items():
            setattr(module, k, v)


def small_actionclip(width: int = 64) -> nn.Module:
    """The official ActionCLIP scorer with `width`-wide, 2-layer towers (its classes read these sizes from
    module constants, so they are patched while the model is built; the forward code is unchanged)."""
    from animereward import actionclip as ac

    sizes = {"VISION_WIDTH": width, "VISION_LAYERS": 2, "VISION_HEADS": 2, "EMBED_DIM": width,
             "TEXT_WIDTH": width, "TEXT_LAYERS": 2, "TEXT_HEADS": 2, "ADAPTER_HEADS": 2}
    with _patched(ac, **sizes):
        model = _init_(ac.ActionClip(), 2)
        return ac.ActionClipMotionScorer(model)


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


def _median(fn: Callable[[], Any], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def _clear_flow_cache() -> None:
    """The flow scorers keep stats of the last clips by content; repeats must measure the flow, not the cache."""
    from animereward import flow_metrics

    items = getattr(getattr(flow_metrics, "_CACHE", None), "items", None)
    if isinstance(items, dict):
        items.clear()


class _Probe:
    """Timestamps inside one score_batch call, with no extra work on the path being measured:
    before_forward marks a dimension's start, progress its end, and each scorer's preprocess/forward is
    wrapped (once) to add up the time spent in the scorer's own code."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.start: dict[str, float] = {}
        self.end: dict[str, float] = {}
        self.pre: dict[str, float] = dict.fromkeys(DIMS, 0.0)
        self.fwd: dict[str, float] = dict.fromkeys(DIMS, 0.0)

    def before_forward(self, name: str, module: nn.Module) -> None:
        self.start.setdefault(name, time.perf_counter())
        if not getattr(module, "_bench_probe", False):
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
            module._bench_probe = True

    def progress(self, name: str, done: int, total: int) -> None:
        self.end[name] = time.perf_counter()


def run(repeats: int = REPEATS, height: int = HEIGHT, width: int = WIDTH) -> list[tuple[str, str]]:
    """Each repeat runs the three things side by side (score_batch, the bare forwards, 8 x score), so that a
    busy CPU slows all of them alike; ratios are taken per repeat, then the median."""
    from animereward.scorer_protocol import ClipBatch

    torch.manual_seed(0)
    with tempfile.TemporaryDirectory(prefix="bench-scoring-") as tmp:
        probe = _Probe()
        reward = AnimeReward(list(DIMS), builders=small_builders(Path(tmp)), before_forward=probe.before_forward)
        clips = _clips(height, width)
        firsts = [c[0] for c in clips]

        def batched() -> None:
            _clear_flow_cache()
            reward.score_batch(clips, prompts=PROMPT, first_frames=firsts, batch_size=N_CLIPS,
                               progress=probe.progress)

        def one_by_one() -> None:
            for c, f in zip(clips, firsts, strict=True):
                _clear_flow_cache()
                reward.score(c, prompt=PROMPT, first_frame=f)

        # Warm-up (builds every scorer, pays first-call costs) and the preprocessed tensors of the bare
        # forwards: one batch of the same 8 clips per dimension.
        batch = ClipBatch(frames=clips, prompts=[PROMPT] * N_CLIPS, first_frames=firsts)
        inputs = {}
        with torch.no_grad():
            for d in DIMS:
                _clear_flow_cache()
                inputs[d] = reward.scorer(d).preprocess(batch)
                reward.scorer(d)(**inputs[d])

        per: dict[str, dict[str, list[float]]] = {d: {"e2e": [], "pre": [], "fwd": [], "bare": []} for d in DIMS}
        calls, singles, leads = [], [], []
        for _ in range(repeats):
            probe.reset()
            t0 = time.perf_counter()
            batched()
            calls.append(time.perf_counter() - t0)
            leads.append(probe.start[DIMS[0]] - t0)  # validation and frame selection, before any scorer
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
                    per[d]["bare"].append(_median(lambda m=module, i=inputs[d]: m(**i), 3))
            t0 = time.perf_counter()
            one_by_one()
            singles.append(time.perf_counter() - t0)

    return _report(per, calls, leads, singles, repeats, height, width)


def _row(label: str, e2e: float, pre: float, fwd: float, bare: float | None) -> str:
    ratio = f"{e2e / bare:>10.1f}" if bare else f"{'n/a':>10}"
    return f"{label:<26}{e2e:>8.3f}{pre:>8.3f}{fwd:>9.4f}{(bare or 0):>9.4f}{ratio}{e2e / (pre + fwd):>12.3f}"


def _report(per: dict[str, dict[str, list[float]]], calls: list[float], leads: list[float], singles: list[float],
            repeats: int, height: int, width: int) -> list[tuple[str, str]]:
    med = statistics.median
    weighted = [d for d in DIMS if DIMENSIONS[d].needs_weights]

    def total(dims: list[str] | tuple[str, ...], key: str, r: int) -> float:
        return sum(per[d][key][r] for d in dims)

    rng = range(repeats)
    ratio_all = med(calls[r] / total(DIMS, "bare", r) for r in rng)
    ratio_weighted = med(total(weighted, "e2e", r) / total(weighted, "bare", r) for r in rng)
    ratio_inside = med(calls[r] / (total(DIMS, "pre", r) + total(DIMS, "fwd", r)) for r in rng)
    own_share = med((calls[r] - total(DIMS, "pre", r) - total(DIMS, "fwd", r)) / calls[r] for r in rng)
    batched_gain = med(singles[r] / calls[r] for r in rng)

    lines = [
        f"(a) scoring overhead: score_batch of {N_CLIPS} clips x {FRAMES} frames {height}x{width}, small models, "
        f"CPU ({torch.get_num_threads()} threads); medians of {repeats} side-by-side repeats",
        f"{'dimension':<26}{'e2e s':>8}{'prep s':>8}{'fwd s':>9}{'bare fwd':>9}{'e2e/bare':>10}{'e2e/(p+f)':>12}",
    ]
    for d in DIMS:
        m = {k: med(v) for k, v in per[d].items()}
        flow = not DIMENSIONS[d].needs_weights  # the flow measurement runs in preprocess: no bare-forward ratio
        r_bare = f"{'n/a':>10}" if flow else f"{med(a / b for a, b in zip(per[d]['e2e'], per[d]['bare'], strict=True)):>10.1f}"
        r_in = med(e / (p + f) for e, p, f in zip(per[d]["e2e"], per[d]["pre"], per[d]["fwd"], strict=True))
        lines.append(f"{d:<26}{m['e2e']:>8.3f}{m['pre']:>8.3f}{m['fwd']:>9.4f}{m['bare']:>9.4f}{r_bare}{r_in:>12.3f}")
    for label, dims, whole in (("weighted dimensions (5)", weighted, None), ("whole call (7)", DIMS, calls)):
        e2e = med(whole) if whole else med(total(dims, "e2e", r) for r in rng)
        pre, fwd, bare = (med(total(dims, k, r) for r in rng) for k in ("pre", "fwd", "bare"))
        r_bare = ratio_all if whole else ratio_weighted
        lines.append(f"{label:<26}{e2e:>8.3f}{pre:>8.3f}{fwd:>9.4f}{bare:>9.4f}{r_bare:>10.1f}{e2e / (pre + fwd):>12.3f}")
    lines.append(f"facade's own time (whole call - time inside the scorers' preprocess/forward): {own_share:.2%} of "
                 f"the call (validation/frame selection before the first scorer: {med(leads):.3f} s)")
    lines.append("")
    lines.append(f"(b) batched vs one-by-one, same {N_CLIPS} clips: score_batch {med(calls):.3f} s, {N_CLIPS} x score "
                 f"{med(singles):.3f} s; one-by-one / batched = {batched_gain:.2f}")
    print("\n".join(lines), flush=True)
    size = f"{N_CLIPS} clips x {FRAMES} frames {width}x{height}, small models"
    return [
        (f"Scoring: score_batch / bare forwards ({size})",
         f"{ratio_all:.1f}  (weighted dims {ratio_weighted:.1f}; target <= 1.15)"),
        ("Scoring: score_batch / time inside the scorers", f"{ratio_inside:.3f}  (facade's own time {own_share:.2%})"),
        ("Scoring: 8 x score / score_batch of 8", f"{batched_gain:.2f}"),
    ]

if __name__ == "__main__":
    run()
