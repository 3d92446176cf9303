"""Writer processes for the store's crash and concurrency checks (the suite and bench/bench_store.py).

A writer adds groups with deterministic content (so a reader can check every byte) and ranks some of them,
and appends one line to its log after each operation has returned, i.e. once it is committed. Writers are
forked from a fork server that has already imported torch and the store, so starting one costs milliseconds
instead of a fresh interpreter's seconds, and a `kill -9` can land at any moment of a write.
"""

from __future__ import annotations

import multiprocessing
import os
import random
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from gapo_trainer.store import CandidateMeta, PreferenceStore

LATENT = (16, 4, 32, 32)  # per candidate; 2 candidates in bf16 = 256 KiB of latents per group


def expected_latents(tag: str, i: int, n: int = 2) -> torch.Tensor:
    seed = (sum(map(ord, tag)) * 100_003 + i) % (2**31)
    return torch.randn(n, *LATENT, generator=torch.Generator().manual_seed(seed)).to(torch.bfloat16)


def _group(tag: str, i: int) -> dict[str, Any]:
    lat = expected_latents(tag, i)
    ctx = torch.full((1, 64, 256), float(i))
    cond_dict = {"concat_latent_image": lat[:1].float().clone(), "tag": tag, "i": i}
    return {
        "latents": lat, "positive": [[ctx, cond_dict]], "negative": [[ctx * 0, {"i": i}]],
        "candidates": [CandidateMeta(0, i, {"a": 0.25}, 0.25), CandidateMeta(1, i + 1, {"a": 0.75}, 0.75)],
        "previews": [b"p0" * 1000, b"p1" * 1000], "preview_ext": "webp", "model_name": "writer-test",
        "model_hash": None, "sampler": {"writer": tag, "i": i},
    }


def write_forever(root: str, dataset: str, tag: str, log_path: str, max_groups: int = 10**9,
                  rank_every: int = 3, seed: int = 0, go_file: str | None = None) -> None:
    """Add groups (and rank every `rank_every`-th earlier one) until killed or `max_groups` are written.
    Log lines: 'added <id> <tag> <i>', 'ranked <id> <a>,<b>'. With `go_file`, waits for it after 'ready'."""
    torch.set_num_threads(1)
    store = PreferenceStore(root)
    rng = random.Random(seed)
    log = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.write(log, b"ready\n")
    while go_file and not os.path.exists(go_file):
        time.sleep(0.002)
    added: list[str] = []
    for i in range(max_groups):
        meta = store.add_group(dataset, **_group(tag, i))
        added.append(meta.group_id)
        os.write(log, f"added {meta.group_id} {tag} {i}\n".encode())
        if rank_every and i % rank_every == rank_every - 1:
            gid = added.pop(rng.randrange(len(added)))  # each group is ranked at most once
            order = rng.choice([[0, 1], [1, 0]])
            store.set_ranking(dataset, gid, order)
            os.write(log, f"ranked {gid} {order[0]},{order[1]}\n".encode())
    os.close(log)


def fork_context() -> multiprocessing.context.BaseContext:
    """A fork-server context whose server has torch and the store imported already."""
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(["torch", "gapo_trainer.store", "animereward_testkit.store_writer"])
    return ctx


@dataclass
class CrashReport:
    trials: int = 0
    committed_reported: int = 0  # groups the writers had reported done when killed
    in_index: int = 0
    lost: list[str] = field(default_factory=list)  # reported committed but missing or unreadable: must stay []
    problems: list[str] = field(default_factory=list)
    leftover_tmp: int = 0
    killed_mid_write: int = 0  # kills that left a half-written group behind in .tmp
    killed_after_commit: int = 0  # kills between a group's commit and its log line (indexed, not reported)
    orphans: set[str] = field(default_factory=set)  # renamed but not indexed when seen (the next writer indexes)


def _read_log(path: Path) -> tuple[list[tuple[str, str, int]], dict[str, list[int]]]:
    added, ranked = [], {}
    if path.exists():
        for line in path.read_text().splitlines():
            parts = line.split()
            if parts and parts[0] == "added":
                added.append((parts[1], parts[2], int(parts[3])))
            elif parts and parts[0] == "ranked":
                ranked[parts[1]] = [int(x) for x in parts[2].split(",")]
    return added, ranked


def _signature(group_dir: Path) -> tuple:
    """Identity of a group's immutable files (inode, size, mtime): unchanged means the same bytes."""
    return tuple(sorted((f.name, st.st_ino, st.st_size, st.st_mtime_ns) for f in group_dir.iterdir()
                        if f.name != "ranking.json" and not f.name.startswith(".")
                        for st in [f.stat()]))


def verify(root: Path, dataset: str, logs: list[Path], report: CrashReport,
           checked: dict[str, tuple] | None = None) -> None:
    """Check the dataset against what the writers reported: every reported group indexed and bit-exact, every
    reported ranking present, no duplicate or unreadable index record, status hints consistent.
    `checked` remembers the groups already compared bit for bit; one whose files have not changed since (same
    inode, size and mtime) is not loaded again, which keeps many trials affordable."""
    store = PreferenceStore(root)
    added: list[tuple[str, str, int]] = []
    ranked: dict[str, list[int]] = {}
    for log in logs:
        a, r = _read_log(log)
        added += a
        ranked |= r
    exists = (root / dataset / "dataset.json").exists()  # not before the first commit
    items = list(store.iter_groups(dataset)) if exists else []
    metas = {}
    for x in items:
        if isinstance(x, Exception):
            report.problems.append(f"unreadable: {x}")
        else:
            metas[x.group_id] = x
    report.in_index = len(items)
    if len(metas) != len(items) - len([x for x in items if isinstance(x, Exception)]):
        report.problems.append("duplicate index records")
    report.committed_reported = len(added)
    for gid, tag, i in added:
        if gid not in metas:
            report.lost.append(gid)
            continue
        sig = _signature(root / dataset / "groups" / gid)
        if checked is not None and checked.get(gid) == sig:
            continue
        try:
            g = store.load_group(dataset, gid)
        except Exception as e:
            report.lost.append(f"{gid}: {e}")
            continue
        if not torch.equal(g.latents.view(torch.int16), expected_latents(tag, i).view(torch.int16)):
            report.lost.append(f"{gid}: latents differ")
        elif g.positive[0][1].get("i") != i or not torch.equal(g.positive[0][0], torch.full((1, 64, 256), float(i))):
            report.lost.append(f"{gid}: conditioning differs")
        elif checked is not None:
            checked[gid] = sig
    for gid, order in ranked.items():
        if gid in metas and metas[gid].human_ranking != order:
            report.problems.append(f"{gid}: ranking {metas[gid].human_ranking} != reported {order}")
    unranked = {m.group_id for m in metas.values() if not m.ranked}
    listed, cursor = set(), None
    while exists:
        page = store.list_groups(dataset, cursor=cursor, limit=200, unranked_only=True)
        listed |= {m.group_id for m in page.groups}
        cursor = page.next_cursor
        if cursor is None:
            break
    if metas and listed != unranked:
        report.problems.append(f"unranked listing {len(listed)} != {len(unranked)} unranked groups")
    tmp = root / dataset / ".tmp"
    report.leftover_tmp = len(list(tmp.iterdir())) if tmp.exists() else 0
    groups = root / dataset / "groups"
    if groups.exists():
        indexed = {x.group_id for x in items if not isinstance(x, Exception)}
        report.orphans |= {p.name for p in groups.iterdir()} - indexed


def crash_trials(root: Path, dataset: str, trials: int, seed: int = 0, max_delay_s: float = 0.4,
                 ctx: Any = None) -> CrashReport:
    """`trials` times: fork a writer onto the same dataset, kill -9 it after a random delay, verify."""
    ctx = ctx or fork_context()
    root.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    report = CrashReport()
    logs: list[Path] = []
    checked: dict[str, tuple] = {}
    for t in range(trials):
        log = root / f"writer{t}.log"
        logs.append(log)
        p = ctx.Process(target=write_forever, args=(str(root), dataset, f"w{t}", str(log)),
                        kwargs={"seed": seed + t}, daemon=True)
        p.start()
        deadline = time.monotonic() + 60
        while not (log.exists() and log.read_bytes().startswith(b"ready")):
            if time.monotonic() > deadline or not p.is_alive():
                raise RuntimeError(f"writer {t} did not start (exit code {p.exitcode})")
            time.sleep(0.005)
        time.sleep(rng.uniform(0.0, max_delay_s))
        os.kill(p.pid, signal.SIGKILL)
        p.join()
        report.trials += 1
        tmp = root / dataset / ".tmp"
        report.killed_mid_write += bool(tmp.exists() and any(tmp.iterdir()))
        verify(root, dataset, logs, now := CrashReport(), checked)  # after every kill, earlier groups too
        report.lost += [x for x in now.lost if x not in report.lost]
        report.problems += [x for x in now.problems if x not in report.problems]
        report.killed_after_commit += (now.in_index - report.in_index) - (now.committed_reported
                                                                          - report.committed_reported)
        report.committed_reported, report.in_index = now.committed_reported, now.in_index
        report.leftover_tmp = now.leftover_tmp
        report.orphans |= now.orphans
    verify(root, dataset, logs, final := CrashReport())  # at the end, every group bit for bit once more
    report.lost += [x for x in final.lost if x not in report.lost]
    report.problems += [x for x in final.problems if x not in report.problems]
    return report
