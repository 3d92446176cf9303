"""Preference store: write/read cost of a Wan-480p group against bare safetensors, listing at 10,000 groups,
and kill -9 trials.

- Group write and read: one group of N=4 Wan 2.1 480p candidates (latents [4,16,21,60,104] bf16) with Wan
  image-to-video conditioning (text context [1,512,4096] positive and negative, `concat_latent_image`
  [1,16,21,60,104], `concat_mask` [1,4,21,60,104], a clip-vision output with [1,257,1280] hidden states),
  against `safetensors.torch.save_file` / `load_file` of the same tensors in the same run, alternating.
  The store fsyncs every file and its folders (durability is its job); the bare save does not, so a second
  baseline adds one fsync to the bare save. Each bare save goes to a new file, as each group does (rewriting
  one file reuses its freed pages and is several times faster on a busy machine). Reads load the group back
  (`load_group`) against `load_file` of the fsynced bare file: files in the same page-cache state (a dirty,
  never-flushed file reads faster than a clean one here, which would compare the cache, not the format).
  "Open" is the lazy load alone (safetensors maps the file); "every byte" also copies every tensor once.
  Target: store / bare safetensors at most 1.2 (write and read).
- Listing: a dataset of 10,000 groups (9,000 ranked, the 1,000 unranked at the end: the worst case for
  `unranked_only`): the first page, a middle page through a cursor, the first unranked page, each of 50
  groups. Target: under 200 ms. The groups are written once by `add_group` and then copied with new ids
  (hard links for tensors and previews, a new meta.json): the same files `add_group` writes, made faster.
- kill -9: writers forked onto one dataset and killed at random moments (`tests/animereward_testkit/
  store_writer.py`); after every kill every group the writers had reported committed is loaded and compared
  bit for bit, rankings and the unranked listing are checked. Target: nothing lost.
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

from .timing import median_seconds

REPO_ROOT = Path(__file__).resolve().parents[1]
for _p in (REPO_ROOT, REPO_ROOT / "tests"):
    if str(_p) not in sys.path:
        sys.path.append(str(_p))

REPEATS = 5
LIST_GROUPS = 10_000
KILL_TRIALS = 100


def wan_480p_group() -> dict:
    from animereward_testkit.store_data import group_kwargs, wan_i2v_conditioning

    kw = group_kwargs(n=4, latent=(16, 21, 60, 104), totals=[0.41, 0.55, 0.38, 0.62])
    pos, neg = wan_i2v_conditioning((16, 21, 60, 104), text_tokens=512, text_dim=4096, clip_tokens=257,
                                    clip_dim=1280, seed=1)
    pos[0][1]["clip_vision_output"].fields["image_embeds"] = torch.randn(1, 1024)
    kw.update(positive=pos, negative=neg, previews=[os.urandom(300_000) for _ in range(4)])
    return kw


def _flat_tensors(kw: dict) -> dict[str, torch.Tensor]:
    """The same tensors the store writes (each distinct tensor once), for the bare safetensors baseline."""
    from gapo_trainer.conditioning_codec import TensorTable, encode_conditioning

    table = TensorTable()
    encode_conditioning(kw["positive"], "positive", table)
    encode_conditioning(kw["negative"], "negative", table)
    return {"latents": kw["latents"], **{k: v.contiguous() for k, v in table.tensors.items()}}


def _group_tensors(g) -> list[torch.Tensor]:
    out = [g.latents, g.positive[0][0], g.negative[0][0]]
    d = g.positive[0][1]
    out += [d["concat_latent_image"], d["concat_mask"]]
    out += [v for v in d["clip_vision_output"].fields.values() if isinstance(v, torch.Tensor)]
    return out


def _touch(tensors) -> int:
    """Read every byte (a copy): safetensors maps the file, so a bare load reads nothing until used."""
    return sum(t.clone().numel() for t in tensors)


def bench_group_io(work: Path, repeats: int = REPEATS) -> dict[str, float]:
    from safetensors.torch import load_file, save_file

    from gapo_trainer.store import PreferenceStore

    kw = wan_480p_group()
    flat = _flat_tensors(kw)
    mb = sum(t.numel() * t.element_size() for t in flat.values()) / 2**20
    store = PreferenceStore(work / "io")
    bare = synced = work / "bare0.safetensors"
    count = 0
    times: dict[str, list[float]] = {k: [] for k in ("w_store", "w_bare", "w_bare_sync", "r_store", "r_bare",
                                                     "rt_store", "rt_bare")}
    gid = ""

    def w_store() -> None:
        nonlocal gid
        gid = store.add_group("wan480p", **kw).group_id

    def w_bare() -> None:  # a new file each time, as the store writes one per group
        nonlocal bare, count
        count += 1
        bare = work / f"bare{count}.safetensors"
        save_file(flat, str(bare))

    def w_bare_sync() -> None:
        nonlocal synced
        w_bare()
        fd = os.open(bare, os.O_RDONLY)
        os.fsync(fd)
        os.close(fd)
        synced = bare

    steps = {
        "w_store": w_store, "w_bare": w_bare, "w_bare_sync": w_bare_sync,
        # reads compare files in the same state: both fsynced (clean in the page cache), as the store's are
        "r_store": lambda: store.load_group("wan480p", gid), "r_bare": lambda: load_file(str(synced)),
        "rt_store": lambda: _touch(_group_tensors(store.load_group("wan480p", gid))),
        "rt_bare": lambda: _touch(load_file(str(synced)).values()),
    }
    for rep in range(repeats + 1):  # round 0 warms up; the order alternates so neither side always goes first
        order = ["w_store", "w_bare_sync", "w_bare"] if rep % 2 else ["w_bare", "w_bare_sync", "w_store"]
        order += ["r_store", "r_bare", "rt_store", "rt_bare"] if rep % 2 else ["r_bare", "r_store", "rt_bare",
                                                                            "rt_store"]
        for k in order:
            t0 = time.perf_counter()
            steps[k]()
            if rep:
                times[k].append(time.perf_counter() - t0)
    m = {k: statistics.median(v) for k, v in times.items()}
    return {"group_mb": mb, **m, "write_ratio": m["w_store"] / m["w_bare"],
            "write_ratio_vs_fsync": m["w_store"] / m["w_bare_sync"], "read_ratio": m["r_store"] / m["r_bare"],
            "read_touch_ratio": m["rt_store"] / m["rt_bare"]}


def fill_dataset(root: Path, name: str, groups: int, ranked: int) -> list[str]:
    """`groups` groups in `name` (the first `ranked` of them ranked), by copying one real group."""
    from animereward_testkit.store_data import group_kwargs

    from gapo_trainer import store as st

    store = st.PreferenceStore(root)
    proto = store.add_group(name, **group_kwargs(n=4, latent=(16, 1, 2, 2)))
    ds = root / name
    src = ds / st.GROUPS_DIR / proto.group_id
    meta = json.loads((src / st.META_FILE).read_text())
    ids = [proto.group_id] + [f"20260101T000000000Z-{k:08x}" for k in range(1, groups)]
    for gid in ids[1:]:
        d = ds / st.GROUPS_DIR / gid
        d.mkdir()
        for f in src.iterdir():
            if f.name != st.META_FILE:
                os.link(f, d / f.name)
        (d / st.META_FILE).write_text(json.dumps(meta | {"group_id": gid}))
    with open(ds / st.INDEX_FILE, "ab") as f:
        f.write(b"".join(g.ljust(st.RECORD_SIZE - 1).encode() + b"\n" for g in ids[1:]))
    ranking = json.dumps({"format_version": 1, "human_ranking": [3, 2, 1, 0], "skipped": False,
                          "ranked_at": time.time()})
    for gid in ids[:ranked]:
        (ds / st.GROUPS_DIR / gid / st.RANKING_FILE).write_text(ranking)
    (ds / st.STATUS_FILE).write_bytes(b"r" * ranked)
    return ids


def bench_listing(work: Path) -> dict[str, float]:
    from gapo_trainer.store import PreferenceStore

    t0 = time.perf_counter()
    ids = fill_dataset(work / "list", "big", LIST_GROUPS, ranked=LIST_GROUPS - 1000)
    fill_s = time.perf_counter() - t0
    store = PreferenceStore(work / "list")
    assert store.count("big") == LIST_GROUPS
    first = store.list_groups("big", limit=50)
    mid = store.list_groups("big", cursor=str(LIST_GROUPS // 2), limit=50)
    unranked = store.list_groups("big", limit=50, unranked_only=True)
    assert [m.group_id for m in first.groups] == ids[:50] and not first.errors
    assert [m.group_id for m in mid.groups] == ids[LIST_GROUPS // 2:LIST_GROUPS // 2 + 50]
    assert [m.group_id for m in unranked.groups] == ids[-1000:-950] and unranked.total == 1000
    out = {
        "first_page_ms": 1e3 * median_seconds(lambda: store.list_groups("big", limit=50), 9, warmup=True),
        "middle_page_ms": 1e3 * median_seconds(
            lambda: store.list_groups("big", cursor=str(LIST_GROUPS // 2), limit=50), 9, warmup=True),
        "unranked_first_page_ms": 1e3 * median_seconds(
            lambda: store.list_groups("big", limit=50, unranked_only=True), 9, warmup=True),
        "unranked_next_page_ms": 1e3 * median_seconds(
            lambda: store.list_groups("big", limit=50, unranked_only=True, cursor=unranked.next_cursor), 9),
        "set_ranking_ms": 1e3 * median_seconds(lambda: store.set_ranking("big", ids[-1], [0, 1, 2, 3]), 5),
        "fill_s": fill_s,
    }
    t0 = time.perf_counter()
    n = sum(1 for _ in store.iter_groups("big"))
    out["full_scan_ms"] = 1e3 * (time.perf_counter() - t0)  # what paging avoids: every group's files
    assert n == LIST_GROUPS
    return out


def bench_kill_trials(work: Path, trials: int = KILL_TRIALS) -> dict[str, float]:
    from animereward_testkit.store_writer import crash_trials

    t0 = time.perf_counter()
    report = crash_trials(work / "crash", "crash", trials, seed=2026)
    return {"trials": report.trials, "groups_committed": report.in_index,
            "groups_reported": report.committed_reported, "killed_mid_write": report.killed_mid_write,
            "killed_after_commit": report.killed_after_commit, "orphans": len(report.orphans),
            "lost": len(report.lost),
            "problems": len(report.problems), "seconds": time.perf_counter() - t0,
            "lost_list": report.lost[:5], "problem_list": report.problems[:5]}


def run() -> list[tuple[str, str]]:
    work = Path(tempfile.mkdtemp(prefix="animereward-bench-store-", dir=os.environ.get("BENCH_STORE_DIR")))
    try:
        io = bench_group_io(work)
        shutil.rmtree(work / "io", ignore_errors=True)
        print(f"group of {io['group_mb']:.1f} MiB: write store {io['w_store'] * 1e3:.0f} ms, bare save_file "
              f"{io['w_bare'] * 1e3:.0f} ms, save_file+fsync {io['w_bare_sync'] * 1e3:.0f} ms; open store "
              f"{io['r_store'] * 1e3:.1f} ms, bare load_file {io['r_bare'] * 1e3:.1f} ms; open and read every "
              f"byte: store {io['rt_store'] * 1e3:.0f} ms, bare {io['rt_bare'] * 1e3:.0f} ms")
        ls = bench_listing(work)
        shutil.rmtree(work / "list", ignore_errors=True)
        print(f"10,000 groups (filled in {ls['fill_s']:.0f} s): first page {ls['first_page_ms']:.1f} ms, middle "
              f"{ls['middle_page_ms']:.1f} ms, unranked first {ls['unranked_first_page_ms']:.1f} ms, unranked "
              f"next {ls['unranked_next_page_ms']:.1f} ms, set_ranking {ls['set_ranking_ms']:.1f} ms; "
              f"full scan {ls['full_scan_ms']:.0f} ms")
        kill = bench_kill_trials(work)
        print(f"kill -9: {kill['trials']} trials, {kill['groups_committed']} groups committed, "
              f"{kill['killed_mid_write']} kills mid-group, {kill['killed_after_commit']} between commit and "
              f"report, {kill['orphans']} between rename and index (re-indexed by the next writer); "
              f"lost {kill['lost']} {kill['lost_list']}, problems {kill['problems']} {kill['problem_list']} "
              f"({kill['seconds']:.0f} s)")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return [
        ("store: write Wan-480p group / bare save_file (target <= 1.2)", f"{io['write_ratio']:.2f}"),
        ("store: write / bare save_file + fsync", f"{io['write_ratio_vs_fsync']:.2f}"),
        ("store: read Wan-480p group, every byte / bare load_file (<= 1.2)", f"{io['read_touch_ratio']:.2f}"),
        ("store: open Wan-480p group (mmap, lazy) / bare load_file",
         f"{io['read_ratio']:.2f} ({io['r_store'] * 1e3:.1f} vs {io['r_bare'] * 1e3:.1f} ms)"),
        ("store: list 10k groups, first / middle / unranked page (< 200 ms)",
         f"{ls['first_page_ms']:.1f} / {ls['middle_page_ms']:.1f} / {ls['unranked_first_page_ms']:.1f} ms"),
        ("store: kill -9 trials, groups lost (target 0)", f"{kill['trials']}, {kill['lost']} lost, "
         f"{kill['problems']} problems"),
    ]
