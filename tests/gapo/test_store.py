"""The preference store on real files: round trips, listing, ranking, validation of damaged and foreign groups,
and names that must never leave the datasets root."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from animereward_testkit.store_data import assert_same, group_kwargs, wan_i2v_conditioning

from gapo_trainer.store import (
    FORMAT_VERSION,
    CandidateMeta,
    ObjectRecord,
    PreferenceStore,
    StoreError,
    StoreNotFound,
    check_conditioning,
)


@pytest.fixture
def store(tmp_path: Path) -> PreferenceStore:
    return PreferenceStore(tmp_path / "datasets")


def test_group_round_trip_is_exact(store: PreferenceStore):
    kw = group_kwargs(n=3, seed=1)
    pos = kw["positive"]
    # everything a conditioning dict may hold: scalars, tuples vs lists, nested dicts, NaN, several dtypes
    pos[0][1].update({"strength": 0.75, "steps": 3, "flag": True, "name": "wan", "area": (8, 8, 0, 0),
                      "nested": {"a": [1, (2.5, None)], "b": {"c": torch.arange(5, dtype=torch.int64)}},
                      "nan": float("nan"), "fp16": torch.randn(2, 3).half(), "mask": torch.rand(4) > 0.5})
    pos.append((torch.randn(1, 3, 32), {"start_percent": 0.0}))  # a tuple pair stays a tuple
    meta = store.add_group("wan-run_1", **kw)
    assert meta.n == 3 and meta.latent_shape == [16, 2, 4, 6] and meta.latent_dtype == "bfloat16"
    g = store.load_group("wan-run_1", meta.group_id)
    assert_same(g.latents, kw["latents"])
    assert_same(g.positive, kw["positive"], "positive")
    assert_same(g.negative, kw["negative"], "negative")
    # one concat_latent_image and one clip-vision object shared by both, as ComfyUI builds them
    assert g.positive[0][1]["concat_latent_image"] is g.negative[0][1]["concat_latent_image"]
    assert g.meta == store.read_meta("wan-run_1", meta.group_id) == meta
    assert [c.total for c in g.meta.candidates] == [c.total for c in kw["candidates"]]
    assert g.meta.prompt == kw["prompt"] and g.meta.sampler == kw["sampler"]
    for i in range(3):
        assert store.preview_path("wan-run_1", meta.group_id, i).read_bytes() == kw["previews"][i]
    assert store.datasets() == ["wan-run_1"] and store.count("wan-run_1") == 1


def test_noise_mask_round_trip_and_older_groups(store: PreferenceStore):
    """The sampled LATENT's noise mask is kept (float32, batch 1 or N); groups written without one read back
    with none, as every group of a dataset written before masks were kept."""
    mask = torch.ones(1, 1, 2, 4, 6, dtype=torch.float16)
    mask[:, :, 0] = 0
    meta = store.add_group("masked", **group_kwargs(n=2), noise_mask=mask)
    g = store.load_group("masked", meta.group_id)
    assert g.noise_mask.dtype == torch.float32 and torch.equal(g.noise_mask, mask.float())
    assert store.load_group("masked", store.add_group("masked", **group_kwargs(n=2)).group_id).noise_mask is None
    for bad in (torch.ones(3, 1, 2, 4, 6), torch.ones(1, 1, 2, 4, 6, dtype=torch.int64), torch.tensor([1.0]),
                torch.full((1, 1, 2, 4, 6), float("nan"))):
        with pytest.raises(StoreError, match="noise_mask"):
            store.add_group("masked", **group_kwargs(n=2), noise_mask=bad)
    assert store.count("masked") == 2


def test_tensors_are_plain_safetensors(store: PreferenceStore):
    from safetensors.torch import load_file

    meta = store.add_group("d", **group_kwargs(n=2))
    tensors = load_file(store.dataset_path("d") / "groups" / meta.group_id / "tensors.safetensors")
    assert tensors["latents"].shape == (2, 16, 2, 4, 6) and tensors["latents"].dtype == torch.bfloat16


@pytest.mark.parametrize(("value", "where"), [
    (object(), "positive[0]['bad']"),
    (np.float32(1.0), "positive[0]['bad']"),
    ({"ok": 1, "deep": [1, {"x": b"bytes"}]}, "positive[0]['bad']['deep'][1]['x']"),
    ({3: "int key"}, "positive[0]['bad']"),
    (ObjectRecord("Output", {"f": object()}), "positive[0]['bad'].f"),
    (torch.randn(2, 2).to_sparse(), "positive[0]['bad']"),
])
def test_unstorable_conditioning_is_refused_by_path_before_any_write(store: PreferenceStore, value, where):
    kw = group_kwargs()
    kw["positive"][0][1]["bad"] = value
    with pytest.raises(StoreError) as e:
        check_conditioning(kw["positive"], "positive")
    assert where in str(e.value)
    with pytest.raises(StoreError) as e:
        store.add_group("d", **kw)
    assert where in str(e.value) and "dataset 'd'" in str(e.value)
    assert not store.dataset_path("d").exists()


def test_bad_conditioning_shapes_are_refused():
    with pytest.raises(StoreError, match="list of"):
        check_conditioning((torch.zeros(1), {}), "positive")
    with pytest.raises(StoreError, match=r"positive\[0\]: the first element must be a tensor"):
        check_conditioning([["text", {}]], "positive")
    with pytest.raises(StoreError, match=r"negative\[1\]: each CONDITIONING entry"):
        check_conditioning([[torch.zeros(1), {}], [torch.zeros(1)]], "negative")


def test_inputs_that_disagree_are_refused_and_nothing_is_written(store: PreferenceStore):
    bad = [
        {"previews": [b"x"]},  # 1 preview for 3 candidates
        {"candidates": group_kwargs()["candidates"][:2]},
        {"preview_ext": "../webp"},
        {"sampler": {"x": object()}},
        {"latents": torch.zeros(3, 16)},
    ]
    for change in bad:
        kw = group_kwargs() | change
        with pytest.raises(StoreError):
            store.add_group("d", **kw)
    assert not store.dataset_path("d").exists()


def test_non_finite_scores_are_stored_as_unknown(store: PreferenceStore):
    kw = group_kwargs(n=2, totals=[float("nan"), 0.5])
    meta = store.add_group("d", **kw)
    assert [c.total for c in store.read_meta("d", meta.group_id).candidates] == [None, 0.5]


def test_paging_with_cursor_and_unranked_only(store: PreferenceStore):
    ids = [store.add_group("d", **group_kwargs(n=2, latent=(16, 1, 2, 2), seed=i)).group_id for i in range(7)]
    page = store.list_groups("d", limit=3)
    assert [m.group_id for m in page.groups] == ids[:3] and page.total == 7
    page2 = store.list_groups("d", cursor=page.next_cursor, limit=3)
    page3 = store.list_groups("d", cursor=page2.next_cursor, limit=3)
    assert [m.group_id for m in page2.groups + page3.groups] == ids[3:] and page3.next_cursor is None
    store.set_ranking("d", ids[0], [1, 0])
    store.set_ranking("d", ids[2], None, skipped=True)
    store.set_ranking("d", ids[3], [0, 1])
    first = store.list_groups("d", limit=2, unranked_only=True)
    assert [m.group_id for m in first.groups] == [ids[1], ids[4]] and first.total == 4
    rest = store.list_groups("d", limit=10, unranked_only=True, cursor=first.next_cursor)
    assert [m.group_id for m in rest.groups] == ids[5:] and rest.next_cursor is None
    store.set_ranking("d", ids[3], None)  # cleared: unranked again
    again = store.list_groups("d", limit=10, unranked_only=True)
    assert [m.group_id for m in again.groups] == [ids[1], ids[3], *ids[4:]]
    for bad in ("abc", "-1", "1e3", "9" * 40):
        with pytest.raises(StoreError, match="cursor"):
            store.list_groups("d", cursor=bad)
    with pytest.raises(StoreNotFound):
        store.list_groups("nope")


def test_ranking_is_atomic_metadata_that_leaves_tensors_alone(store: PreferenceStore):
    meta = store.add_group("d", **group_kwargs(n=4))
    tensors = store.dataset_path("d") / "groups" / meta.group_id / "tensors.safetensors"
    before = os.stat(tensors)
    ranked = store.set_ranking("d", meta.group_id, [3, 1, 0, 2])
    assert ranked.human_ranking == [3, 1, 0, 2] and not ranked.skipped and ranked.ranked_at is not None
    again = store.read_meta("d", meta.group_id)
    assert again.human_ranking == [3, 1, 0, 2] and again.ranked_at == ranked.ranked_at
    after = os.stat(tensors)
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)
    for bad in ([0, 1, 2], [0, 1, 2, 2], [0, 1, 2, 4], [True, 1, 2, 3], ["0", 1, 2, 3]):
        with pytest.raises(StoreError, match="permutation"):
            store.set_ranking("d", meta.group_id, bad)
    with pytest.raises(StoreError, match="either"):
        store.set_ranking("d", meta.group_id, [0, 1, 2, 3], skipped=True)
    skipped = store.set_ranking("d", meta.group_id, None, skipped=True)
    assert skipped.skipped and skipped.human_ranking is None
    assert store.read_meta("d", meta.group_id).skipped
    with pytest.raises(StoreNotFound):
        store.set_ranking("d", "20990101T000000000Z-00000000", [0, 1, 2, 3])
    assert not [p for p in tensors.parent.iterdir() if p.name.endswith(".tmp")]


@pytest.mark.parametrize("name", ["..", ".", "../x", "a/b", "a\\b", "/etc", "%2e%2e", "%2e%2e%2f", "",
                                  " a", "a.b", "é", "x" * 64, "-x", "a\x00"])
def test_dataset_names_and_group_ids_follow_a_strict_pattern(store: PreferenceStore, name: str):
    with pytest.raises(StoreError, match="not allowed"):
        store.dataset_path(name)
    with pytest.raises(StoreError, match="not allowed"):
        store.add_group(name, **group_kwargs())
    store.add_group("d", **group_kwargs())
    with pytest.raises(StoreError, match="not allowed"):
        store.read_meta("d", name)
    with pytest.raises(StoreError, match="not allowed"):
        store.set_ranking("d", name, [0, 1, 2])


def test_links_leaving_the_root_are_not_followed(store: PreferenceStore, tmp_path: Path):
    outside = tmp_path / "outside"
    PreferenceStore(outside).add_group("victim", **group_kwargs())
    store.root.mkdir(parents=True)
    (store.root / "evil").symlink_to(outside / "victim")
    with pytest.raises(StoreError, match="leaves the datasets root"):
        store.list_groups("evil")
    assert "evil" not in store.datasets()
    meta = store.add_group("d", **group_kwargs())
    (store.dataset_path("d") / "groups" / meta.group_id / "preview_0.webp").unlink()
    (store.dataset_path("d") / "groups" / meta.group_id / "preview_0.webp").symlink_to("/etc/hostname")
    with pytest.raises(StoreNotFound):
        store.preview_path("d", meta.group_id, 0)


@pytest.mark.parametrize("name", [".lock", "index.txt", "status.bin"])
def test_a_planted_link_is_never_written_through(store: PreferenceStore, tmp_path: Path, name: str):
    """A dataset's lock, index and status files planted as links (an extracted archive can hold links): adding,
    ranking and listing refuse them by name and the file they point to is never touched; with the real
    file back, everything collected is still there."""
    first = store.add_group("d", **group_kwargs(seed=0))
    store.set_ranking("d", first.group_id, [2, 0, 1])
    victim = tmp_path / "victim.txt"
    victim.write_bytes(b"precious")
    real = store.dataset_path("d") / name
    aside = tmp_path / "aside"
    real.rename(aside)
    real.symlink_to(victim)
    uses = {  # what reads or writes the file
        "add_group": (".lock", "index.txt"), "set_ranking": (".lock", "index.txt", "status.bin"),
        "list_groups": ("index.txt", "status.bin"),
    }
    calls = {"add_group": lambda: store.add_group("d", **group_kwargs(seed=1)),
             "set_ranking": lambda: store.set_ranking("d", first.group_id, [0, 1, 2]),
             "list_groups": lambda: store.list_groups("d", unranked_only=True)}
    for call in (calls[k] for k, files in uses.items() if name in files):
        with pytest.raises(StoreError, match=f"{name} is a link"):
            call()
    assert victim.read_bytes() == b"precious"
    real.unlink()
    aside.rename(real)
    kept = store.read_meta("d", first.group_id)
    assert kept.human_ranking == [2, 0, 1]
    assert first.group_id in [g.group_id for g in store.list_groups("d").groups]


def _group_dir(store: PreferenceStore, dataset: str, gid: str) -> Path:
    return store.dataset_path(dataset) / "groups" / gid


def test_damaged_and_foreign_groups_are_named_and_the_rest_stays_usable(store: PreferenceStore):
    ids = [store.add_group("d", **group_kwargs(seed=i)).group_id for i in range(6)]
    # 1: truncated tensors; 2: bad JSON; 3: unknown format version; 4: another model's latents (4 channels)
    t = _group_dir(store, "d", ids[1]) / "tensors.safetensors"
    t.write_bytes(t.read_bytes()[: t.stat().st_size // 2])
    (_group_dir(store, "d", ids[2]) / "meta.json").write_text('{"format_version": 1, "n": ')
    meta_path = _group_dir(store, "d", ids[3]) / "meta.json"
    meta = json.loads(meta_path.read_text())
    meta_path.write_text(json.dumps(meta | {"format_version": FORMAT_VERSION + 1}))
    foreign = PreferenceStore(store.root.parent / "other").add_group("d", **group_kwargs(latent=(4, 2, 4, 6)))
    _group_dir(store, "d", ids[4]).rename(_group_dir(store, "d", ids[4]).with_name("gone"))
    _group_dir(PreferenceStore(store.root.parent / "other"), "d", foreign.group_id).rename(
        _group_dir(store, "d", ids[4]))
    (_group_dir(store, "d", ids[4]) / "meta.json").write_text(
        (_group_dir(store, "d", ids[4]) / "meta.json").read_text().replace(foreign.group_id, ids[4]))

    items = list(store.iter_groups("d"))
    assert len(items) == 6
    assert [type(x).__name__ for x in items] == ["GroupMeta", "StoreError", "StoreError", "StoreError",
                                                  "StoreError", "GroupMeta"]
    for k, needle in ((1, "truncated"), (2, "meta.json is unreadable"), (3, "format version"),
                      (4, "another model")):
        assert f"group '{ids[k]}'" in str(items[k]) and needle in str(items[k]), str(items[k])
        with pytest.raises(StoreError, match=needle):
            store.load_group("d", ids[k])
    page = store.list_groups("d")
    assert [m.group_id for m in page.groups] == [ids[0], ids[5]] and len(page.errors) == 4
    store.load_group("d", ids[0])
    store.load_group("d", ids[5])
    # writing another model's latents into the dataset is refused up front
    with pytest.raises(StoreError, match="another model"):
        store.add_group("d", **group_kwargs(latent=(48, 2, 4, 6)))
    assert store.count("d") == 6


def test_two_conditionings_keep_their_own_tensors(store: PreferenceStore):
    pos, neg = wan_i2v_conditioning(seed=3, dtype=torch.bfloat16)
    kw = group_kwargs() | {"positive": pos, "negative": neg}
    g = store.load_group("d", store.add_group("d", **kw).group_id)
    assert not torch.equal(g.positive[0][0].float(), g.negative[0][0].float())
    assert g.positive[0][1]["clip_vision_output"].fields["image_sizes"] == [(224, 224)]
    assert g.positive[0][0].dtype == torch.bfloat16


def test_candidate_records_must_be_in_generation_order(store: PreferenceStore):
    kw = group_kwargs(n=2)
    kw["candidates"] = [CandidateMeta(index=1), CandidateMeta(index=0)]
    with pytest.raises(StoreError, match="candidate 0"):
        store.add_group("d", **kw)


def test_inference_mode_tensors_and_views_are_stored(store: PreferenceStore):
    """The executor runs nodes under torch.inference_mode(); views and non-contiguous tensors are common."""
    with torch.inference_mode():
        kw = group_kwargs()
        kw["latents"] = kw["latents"] * 1
        kw["positive"][0][1]["view"] = torch.randn(3, 4)[:, 1:]
        kw["positive"][0][1]["transposed"] = torch.randn(3, 4).t()
        meta = store.add_group("d", **kw)
    g = store.load_group("d", meta.group_id)
    assert_same(g.positive, kw["positive"])
    assert_same(g.latents, kw["latents"])
    assert not g.latents.is_inference()  # usable in autograd by the trainer


def test_a_forked_child_can_write_after_the_parent_did(store: PreferenceStore):
    """The fsync thread pool does not survive a fork; a child (a DataLoader worker, a forked writer) makes its own."""
    store.add_group("d", **group_kwargs())
    pid = os.fork()
    if pid == 0:  # child: write one group and leave without running pytest's teardown
        try:
            store.add_group("d", **group_kwargs(seed=1))
            os._exit(0)
        except BaseException:
            os._exit(1)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert store.count("d") == 2


def test_a_page_reads_only_its_own_groups(store: PreferenceStore, monkeypatch: pytest.MonkeyPatch):
    """No full scan per request: a page opens the files of the groups it returns and no others, also when
    `unranked_only` has to skip ranked groups (it reads their status byte instead)."""
    ids = [store.add_group("d", **group_kwargs(n=2, latent=(16, 1, 2, 2), seed=i)).group_id for i in range(24)]
    for gid in ids[:20]:
        store.set_ranking("d", gid, [1, 0])
    opened: list[str] = []
    real = PreferenceStore._read_meta_raw

    def counting(self, dataset, group_id, *args, **kwargs):
        opened.append(group_id)
        return real(self, dataset, group_id, *args, **kwargs)

    monkeypatch.setattr(PreferenceStore, "_read_meta_raw", counting)
    page = store.list_groups("d", cursor="10", limit=5)
    assert [m.group_id for m in page.groups] == opened == ids[10:15] and page.next_cursor == "15"
    opened.clear()
    page = store.list_groups("d", limit=3, unranked_only=True)
    assert [m.group_id for m in page.groups] == opened == ids[20:23] and page.total == 4
