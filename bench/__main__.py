"""`python -m bench [name ...]`: run every benchmark module (bench/bench_*.py, or the named ones), each
printing its own detailed table, then one summary table of all results.

Each module exposes `run() -> list[tuple[str, str]]` (result name, value text). A module that fails is
reported in the summary and the others still run. Numbers are medians after a warm-up; on a shared or
throttled CPU they move between runs, which is why every result is a ratio measured within one run.
"""

from __future__ import annotations

import importlib
import pkgutil
import sys
import time
import traceback
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
REPO_ROOT = PACKAGE_DIR.parent


def modules(selected: list[str]) -> list[str]:
    names = sorted(m.name for m in pkgutil.iter_modules([str(PACKAGE_DIR)]) if m.name.startswith("bench_"))
    if not selected:
        return names
    wanted = [s if s.startswith("bench_") else f"bench_{s}" for s in selected]
    unknown = [w for w in wanted if w not in names]
    if unknown:
        raise SystemExit(f"unknown benchmark(s) {unknown}; available: {names}")
    return wanted


def main(argv: list[str]) -> int:
    for p in (REPO_ROOT, REPO_ROOT / "tests"):  # the library, and the test helpers some benchmarks reuse
        if str(p) not in sys.path:
            sys.path.append(str(p))
    results: list[tuple[str, str]] = []
    failed = 0
    start = time.perf_counter()
    for name in modules(argv):
        print(f"\n== {name} ==", flush=True)
        t0 = time.perf_counter()
        try:
            results += importlib.import_module(f"bench.{name}").run()
        except Exception as exc:  # one broken benchmark must not hide the others' numbers
            traceback.print_exc()
            results.append((f"{name}: FAILED", f"{type(exc).__name__}: {exc}"[:200]))
            failed += 1
        print(f"({name}: {time.perf_counter() - t0:.0f} s)", flush=True)
    width = max(len(n) for n, _ in results) if results else 10
    print(f"\n== summary ({time.perf_counter() - start:.0f} s) ==")
    print(f"{'benchmark':<{width}}  result")
    print(f"{'-' * width}  {'-' * 40}")
    for n, v in results:
        print(f"{n:<{width}}  {v}")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
