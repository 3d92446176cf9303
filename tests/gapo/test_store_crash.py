"""Crash safety and concurrency of the store with real processes: kill -9 at random moments, two writers at once,
and the leftovers a crash or a power loss can leave (torn index tail, stale status hint, half-written group)."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest
from animereward_testkit.store_data import group_kwargs
from animereward_testkit.store_writer import CrashReport, crash_trials, fork_context, verify, write_forever

from gapo_trainer.store import PreferenceStore


@pytest.fixture(scope="module")
def ctx():
    return fork_context()


def test_kill_9_at_random_moments_loses_nothing_committed(tmp_path: Path, ctx):
    report = crash_trials(tmp_path, "crash", trials=10, seed=8, ctx=ctx)
    assert report.lost == [] and report.problems == [], report
    assert report.trials == 10 and report.committed_reported > 10
    assert report.killed_mid_write >= 1  # some kills landed inside a group's write (about 6 in 10 do)
    # the index holds what was reported, plus at most one group per kill committed just before its log line
    assert report.committed_reported <= report.in_index <= report.committed_reported + report.trials
    assert report.leftover_tmp <= 1  # only the last writer's half-written group (cleaned by the next writer)


def test_two_writers_at_once(tmp_path: Path, ctx):
    procs = [ctx.Process(target=write_forever, args=(str(tmp_path), "both", f"t{k}", str(tmp_path / f"t{k}.log")),
                         kwargs={"max_groups": 12, "seed": k, "go_file": str(tmp_path / "go")}) for k in range(2)]
    for p in procs:
        p.start()
    deadline = time.monotonic() + 60
    while not all((tmp_path / f"t{k}.log").exists() for k in range(2)):  # both ready, then both go
        assert time.monotonic() < deadline
        time.sleep(0.01)
    (tmp_path / "go").touch()
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    report = CrashReport()
    verify(tmp_path, "both", [tmp_path / "t0.log", tmp_path / "t1.log"], report)
    assert report.lost == [] and report.problems == [], report
    assert report.committed_reported == report.in_index == 24 and report.leftover_tmp == 0
    # the writers really overlapped: their groups interleave in the index
    tags = [m.sampler["writer"] for m in PreferenceStore(tmp_path).iter_groups("both")]
    assert tags.count("t0") == tags.count("t1") == 12
    assert tags != sorted(tags)


def test_torn_index_tail_is_ignored_then_cut(tmp_path: Path):
    store = PreferenceStore(tmp_path)
    first = store.add_group("d", **group_kwargs())
    with open(tmp_path / "d" / "index.txt", "ab") as f:
        f.write(b"2026113")  # a record torn by a power loss
    assert store.count("d") == 1 and [m.group_id for m in store.iter_groups("d")] == [first.group_id]
    second = store.add_group("d", **group_kwargs(seed=1))
    assert [m.group_id for m in store.list_groups("d").groups] == [first.group_id, second.group_id]
    assert (tmp_path / "d" / "index.txt").stat().st_size == 128


def test_stale_status_hint_never_hides_an_unranked_group(tmp_path: Path):
    store = PreferenceStore(tmp_path)
    a, b = (store.add_group("d", **group_kwargs(seed=i)) for i in range(2))
    store.set_ranking("d", a.group_id, [2, 1, 0])
    # a crash between the ranking file and the hint: the ranking landed, the hint still says "not ranked"
    (tmp_path / "d" / "status.bin").write_bytes(b"u")
    assert [m.group_id for m in store.list_groups("d", unranked_only=True).groups] == [b.group_id]
    # a ranking file that was cleared while the hint says ranked cannot happen: clearing writes the hint first
    store.set_ranking("d", a.group_id, None)
    assert (tmp_path / "d" / "status.bin").read_bytes()[:1] == b"u"
    assert json.loads((tmp_path / "d" / "groups" / a.group_id / "ranking.json").read_text())["human_ranking"] is None


def test_half_written_group_of_a_dead_writer_is_invisible_and_cleaned(tmp_path: Path):
    store = PreferenceStore(tmp_path)
    store.add_group("d", **group_kwargs())
    dead = tmp_path / "d" / ".tmp" / "999999999-20260101T000000000Z-deadbeef"  # no such pid
    dead.mkdir()
    (dead / "tensors.safetensors").write_bytes(b"\0" * 10)
    live = tmp_path / "d" / ".tmp" / f"{os.getpid()}-20260101T000000000Z-0000live"
    live.mkdir()
    assert store.count("d") == 1 and len(list(store.iter_groups("d"))) == 1
    store.add_group("d", **group_kwargs(seed=1))
    assert not dead.exists() and live.exists()  # a live writer's group is left alone
    live.rmdir()


def test_a_group_renamed_but_not_indexed_is_recovered_by_the_next_writer(tmp_path: Path):
    """A kill between a group's rename and its index append leaves a complete, unindexed folder: the next
    writer (under the lock, so no live writer is in that window) indexes it; a damaged one stays out."""
    store = PreferenceStore(tmp_path)
    a, b, bad = (store.add_group("d", **group_kwargs(seed=i)) for i in range(3))
    index = tmp_path / "d" / "index.txt"
    index.write_bytes(index.read_bytes()[:64])  # only a is indexed: b and bad are orphans
    t = tmp_path / "d" / "groups" / bad.group_id / "tensors.safetensors"
    t.write_bytes(t.read_bytes()[:100])
    assert [m.group_id for m in store.iter_groups("d")] == [a.group_id]
    c = PreferenceStore(tmp_path).add_group("d", **group_kwargs(seed=4))
    assert [m.group_id for m in store.iter_groups("d")] == [a.group_id, b.group_id, c.group_id]


def test_an_error_after_the_rename_leaves_no_group_behind(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    from gapo_trainer import dataset_index

    store = PreferenceStore(tmp_path)
    store.add_group("d", **group_kwargs())

    def full_disk(*_a, **_k):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(dataset_index, "append_record", full_disk)
    with pytest.raises(OSError, match="No space"):
        store.add_group("d", **group_kwargs(seed=1))
    monkeypatch.undo()
    assert len(list((tmp_path / "d" / "groups").iterdir())) == 1
    assert not list((tmp_path / "d" / ".tmp").iterdir())
    PreferenceStore(tmp_path).add_group("d", **group_kwargs(seed=2))  # nothing to recover: the failed one is gone
    assert store.count("d") == 2
