"""Results of scoring: `RewardScores` (one clip), the weighting behind its total, and the ranking of clips.

Totals: a weighted mean of the scored dimensions. Weights are relative (normalised to sum 1); a dimension left
out of a user mapping keeps the default weight 1.0. Ranking: best total first, ties in generation order (the
order Best-of-N shows and the preference pairs follow); a clip without a total comes last.

A dimension may have no score for a clip (character_consistency when no character is found): it is then
absent from that clip's `scores` and its reason is in `unscored`; it is never given a made-up number. The
totals of one scoring call (`weighted_totals`) count the dimensions scored on every clip of the call, with
their weights renormalised to sum 1, so that candidates ranked against each other are compared on the same
dimensions (and the reward gap GAPO trains on compares like with like). When no dimension with a weight is
scored on every clip, each clip's total counts its own scored dimensions, and a clip with none has no total.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from .dimensions import DIMENSIONS

SCHEMA_VERSION = 1


class ScoresFormatError(ValueError):
    """Scores JSON that cannot be read back; `arg` is the argument at fault ("text", "data" or "clip_index"),
    `problem` and `fix` the two halves of the message."""

    def __init__(self, arg: str, problem: str, fix: str) -> None:
        super().__init__(f"{arg}: {problem} Fix: {fix}")
        self.arg, self.problem, self.fix = arg, problem, fix


_FIX_NUMBER = "give every score (and the total) as a finite number in 0..1, as RewardScores.to_json writes them."
_FIX_SHAPE = "pass what RewardScores.to_json (one clip) or a ranking's json ({'clips': [...]}) wrote."


def _number(arg: str, what: str, value: object) -> float:
    """A finite number (JSON written by hand or by another program may hold strings, null or NaN)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ScoresFormatError(arg, f"the {what} is {value!r}, not a number.", _FIX_NUMBER)
    return float(value)


@dataclass
class RewardScores:
    """Scores of one clip.

    JSON schema (`to_dict`/`to_json`, version 1; keys always present, dimensions in DIMENSIONS order):
      {"total": float | null,                   weighted mean of "scores" with "weights" (null: no dimension
                                                 with a weight has a score)
       "scores": {our dimension name: float},   each in [0, 1]; only the dimensions that have a score
       "weights": {our dimension name: float},  normalised: they sum to 1; the dimensions counted in the total
                                                 (the scored ones, or those scored on every clip of a call)
       "unscored": {our dimension name: str},   why an enabled dimension has no score for this clip
       "official": {official key: float},       the scores under reward_infer.py's key names (no flow metrics)
       "extras": {our dimension name: {name: float}}}  optional per-dimension details, e.g.
                 visual_smoothness/visual_appeal: {"raw_score"} (unclamped logit / 100); a scorer whose
                 `stats` input has named columns (`stats_names`) adds them (finite values only)
    `total` is None when no dimension with a weight has a score, and for scores read back (`from_dict`) from
    JSON that had none.
    """

    scores: dict[str, float]
    weights: dict[str, float]
    total: float | None
    extras: dict[str, dict[str, float]] = field(default_factory=dict)
    unscored: dict[str, str] = field(default_factory=dict)

    def official(self) -> dict[str, float]:
        """Scores under the official `reward_infer.py` key names (the official dimensions only)."""
        return {DIMENSIONS[d].official_key: s for d, s in self.scores.items()  # type: ignore[misc]
                if d in DIMENSIONS and DIMENSIONS[d].official_key}

    def to_dict(self) -> dict[str, Any]:
        return {
            "total": None if self.total is None else float(self.total),
            "scores": {d: float(s) for d, s in self.scores.items()},
            "weights": {d: float(w) for d, w in self.weights.items()},
            "official": self.official(),
            "extras": {d: dict(e) for d, e in self.extras.items()},
            "unscored": dict(self.unscored),
        }

    def to_json(self, indent: int | None = None) -> str:
        return json.dumps(self.to_dict(), indent=indent, allow_nan=False)

    @classmethod
    def from_dict(cls, data: Any, arg: str = "data") -> RewardScores:
        """Inverse of `to_dict` (the `official` view is derived, so it is not read back). Also reads JSON
        written by hand or by other programs: only "scores" is required; every value must be a finite number.
        Errors are `ScoresFormatError`s naming the value at fault."""
        if not isinstance(data, Mapping) or not isinstance(data.get("scores"), Mapping):
            raise ScoresFormatError(arg, "has no 'scores' object.", _FIX_SHAPE)
        scores = {str(k): _number(arg, f"score of {k!r}", v) for k, v in data["scores"].items()}
        weights = data.get("weights") or {}
        extras = data.get("extras") or {}
        unscored = data.get("unscored") or {}
        if not isinstance(weights, Mapping) or not isinstance(extras, Mapping) or not isinstance(unscored, Mapping):
            raise ScoresFormatError(arg, "'weights', 'extras' and 'unscored' must be objects.", _FIX_SHAPE)
        total = data.get("total")
        return cls(
            scores=scores,
            weights={str(k): _number(arg, f"weight of {k!r}", v) for k, v in weights.items()},
            total=None if total is None else _number(arg, "total", total),
            extras={str(k): {str(a): _number(arg, f"extra {k!r}/{a!r}", b) for a, b in v.items()}
                    for k, v in extras.items() if isinstance(v, Mapping)},
            unscored={str(k): str(v) for k, v in unscored.items()},
        )

    @classmethod
    def from_json(cls, text: str, clip_index: int = 0, arg: str = "text") -> RewardScores:
        """One clip's scores from `to_json` output, or clip `clip_index` of a ranking's json ({"clips": [...]},
        what Best-of-N writes)."""
        try:
            data = json.loads(text)
        except (TypeError, ValueError) as e:
            raise ScoresFormatError(arg, f"not JSON ({e}).", _FIX_SHAPE) from e
        if isinstance(data, dict) and "clips" in data:
            clips = data["clips"]
            if not isinstance(clips, list):
                raise ScoresFormatError(arg, "'clips' is not a list.", _FIX_SHAPE)
            if not 0 <= clip_index < len(clips):
                raise ScoresFormatError("clip_index", f"{clip_index} is out of range for {len(clips)} clips.",
                                        f"use 0..{len(clips) - 1}.")
            data = clips[clip_index]
        return cls.from_dict(data, arg)


def rank(totals: Sequence[float | None]) -> list[int]:
    """Indices of `totals`, best first; ties keep generation order (a stable sort); clips without a total
    (None) come last, in generation order."""
    return sorted(range(len(totals)), key=lambda i: (totals[i] is None, -(totals[i] or 0.0)))


def weighted_totals(scores: Sequence[Mapping[str, float]], weights: Mapping[str, float]
                    ) -> list[tuple[float | None, dict[str, float]]]:
    """(total, the weights it used) per clip of one call; `weights` are the call's normalised weights.

    See the module docstring: the dimensions with a weight > 0 scored on every clip, renormalised; when there
    are none, each clip's own scored dimensions; None when a clip has none either."""
    common = [d for d in weights if all(d in s for s in scores)]
    if sum(weights[d] for d in common) > 0:
        used = _renormalised(weights, common)
        total = [float(sum(used[d] * s[d] for d in used)) for s in scores]
        return [(t, dict(used)) for t in total]
    out: list[tuple[float | None, dict[str, float]]] = []
    for s in scores:
        own = [d for d in weights if d in s]
        if sum(weights[d] for d in own) > 0:
            used = _renormalised(weights, own)
            out.append((float(sum(used[d] * s[d] for d in used)), used))
        else:
            out.append((None, {}))
    return out


def _renormalised(weights: Mapping[str, float], dims: Sequence[str]) -> dict[str, float]:
    total = sum(weights[d] for d in dims)
    return {d: weights[d] / total for d in dims}


def resolve_weights(
    user: Mapping[str, float] | None, scored: Sequence[str], arg: str = "weights"
) -> dict[str, float]:
    """Normalised weights over `scored`; errors name unknown, not-scored, negative and all-zero weights."""
    if user is None:
        raw = dict.fromkeys(scored, 1.0)
    else:
        if not isinstance(user, Mapping):
            raise ValueError(f"{arg}: expected a mapping of dimension name to weight, got {type(user).__name__}")
        unknown = [k for k in user if k not in DIMENSIONS]
        if unknown:
            raise ValueError(f"{arg}: unknown dimension name(s) {unknown}; known: {list(DIMENSIONS)}")
        outside = [k for k in user if k not in scored]
        if outside:
            raise ValueError(
                f"{arg}: weights given for dimension(s) {outside} that are not enabled/scored here; "
                f"scored: {list(scored)}"
            )
        raw = {}
        for d in scored:
            w = user.get(d, 1.0)
            try:
                w = float(w)
            except (TypeError, ValueError):
                raise ValueError(f"{arg}[{d!r}]: a weight must be a number, got {w!r}") from None
            if not math.isfinite(w) or w < 0:
                raise ValueError(f"{arg}[{d!r}]: a weight must be a finite number >= 0, got {w}")
            raw[d] = w
    total = sum(raw.values())
    if total <= 0:
        raise ValueError(f"{arg}: all weights are 0 for the scored dimensions {list(scored)}; give one a weight > 0")
    return {d: w / total for d, w in raw.items()}
