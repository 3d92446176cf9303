"""The preference store: groups of N candidates generated under one conditioning, with their reward scores and
the artist's ranking, kept crash-safe on disk for the GAPO trainer.

Layout (docs/dataset.md has the full format):

    <root>/<dataset>/dataset.json          format version, latent channels and rank (written once)
    <root>/<dataset>/index.txt             append-only, one 64-byte record per committed group
    <root>/<dataset>/status.bin            one byte per index record: ranked / skipped / not (a listing hint)
    <root>/<dataset>/.lock                 fcntl lock for the index append and ranking updates
    <root>/<dataset>/.tmp/<pid>-<id>/      a group being written (invisible until committed)
    <root>/<dataset>/groups/<id>/          meta.json, tensors.safetensors, preview_<i>.<ext>, ranking.json

A group is written whole into `.tmp/`, fsynced, renamed into `groups/` and then appended to the index under the
lock: the index record is the commit point. A `kill -9` at any moment loses at most the group being written.
The ranking lives in its own small file, replaced atomically, so ranking never rewrites tensors.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import time
from collections.abc import Iterator, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

from . import dataset_index
from .atomic_io import atomic_write_bytes, file_lock, fsync_all, fsync_dir, write_durable
from .conditioning_codec import (
    Conditioning,
    ObjectRecord,
    TensorTable,
    check_conditioning,
    decode_conditioning,
    encode_conditioning,
)
from .dataset_index import INDEX_FILE, RANKED, RECORD_SIZE, SKIPPED, STATUS_FILE, UNRANKED
from .group_meta import (
    FORMAT_VERSION,
    META_FILE,
    PREVIEW_EXT_PATTERN,
    RANKING_FILE,
    CandidateMeta,
    Group,
    GroupMeta,
    GroupPage,
    candidate_records,
    meta_from_json,
)
from .safetensors_io import dtype_code, read_header, write_safetensors
from .store_errors import StoreError, StoreNotFound

__all__ = [  # the layout names are exported for the routes and the benchmark
    "DATASET_FILE",
    "FORMAT_VERSION",
    "GROUPS_DIR",
    "INDEX_FILE",
    "META_FILE",
    "RANKING_FILE",
    "RECORD_SIZE",
    "STATUS_FILE",
    "TENSORS_FILE",
    "CandidateMeta",
    "Conditioning",
    "Group",
    "GroupMeta",
    "GroupPage",
    "ObjectRecord",
    "PreferenceStore",
    "StoreError",
    "StoreNotFound",
    "check_conditioning",
]

NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,62}")
"""Dataset names and group ids: letters, digits, '_' and '-', at most 63, no dots, no separators."""
MAX_PAGE = 1000

DATASET_FILE, LOCK_FILE = "dataset.json", ".lock"
GROUPS_DIR, TMP_DIR = "groups", ".tmp"
TENSORS_FILE = "tensors.safetensors"
LATENTS_KEY = "latents"
NOISE_MASK_KEY = "noise_mask"
"""The LATENT's `noise_mask` (which elements the sampler denoised, e.g. all but the first frame for Wan 2.2
image-to-video), when it had one; groups without it (and datasets written before it existed) have none."""


def _dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


def _latent_dtype(meta: GroupMeta) -> torch.dtype | None:
    dtype = getattr(torch, meta.latent_dtype, None)
    return dtype if isinstance(dtype, torch.dtype) else None


def _latents_mismatch(meta: GroupMeta) -> str:
    return (f"{TENSORS_FILE} latents do not match {META_FILE} (expected {meta.latent_dtype} "
            f"{[meta.n, *meta.latent_shape]})")


def _new_group_id() -> str:
    t = time.time()
    return f"{time.strftime('%Y%m%dT%H%M%S', time.gmtime(t))}{int(t * 1000) % 1000:03d}Z-{secrets.token_hex(4)}"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _read_small(path: Path) -> bytes:
    """Read a store file without following a symlink (nothing outside the root is ever read)."""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    try:
        with os.fdopen(fd, "rb", closefd=False) as f:
            return f.read()
    finally:
        os.close(fd)


class PreferenceStore:
    """Datasets of candidate groups under one root folder. Safe for several processes at once."""

    def __init__(self, root: Path | str) -> None:
        self.root = Path(root)
        self._recovered: set[str] = set()  # datasets whose orphaned groups this instance has re-indexed

    # ---- names and paths -------------------------------------------------------------------------------

    def dataset_path(self, name: str) -> Path:
        """The dataset's folder; the name must match the strict pattern and the folder stay inside root."""
        if not isinstance(name, str) or not NAME_PATTERN.fullmatch(name):
            raise StoreError(f"dataset name {str(name)[:80]!r} is not allowed: use 1-63 letters, digits, "
                             "'_' or '-', starting with a letter or digit")
        path = self.root / name
        if path.is_symlink() and path.resolve().parent != self.root.resolve():
            raise StoreError("the dataset folder is a link that leaves the datasets root", dataset=name)
        return path

    def _check_group_id(self, dataset: str, group_id: str) -> None:
        if not isinstance(group_id, str) or not NAME_PATTERN.fullmatch(group_id):
            raise StoreError(f"group id {str(group_id)[:80]!r} is not allowed", dataset=dataset)

    def _group_dir(self, dataset: str, group_id: str) -> Path:
        self._check_group_id(dataset, group_id)
        d = self.dataset_path(dataset) / GROUPS_DIR / group_id
        if d.is_symlink():
            raise StoreError("the group folder is a link; refusing to follow it", dataset=dataset,
                             group_id=group_id)
        return d

    def datasets(self) -> list[str]:
        """Names of the datasets under root (folders with a dataset.json), sorted."""
        if not self.root.is_dir():
            return []
        return sorted(p.name for p in self.root.iterdir()
                      if NAME_PATTERN.fullmatch(p.name) and not p.is_symlink() and (p / DATASET_FILE).is_file())

    # ---- dataset header --------------------------------------------------------------------------------

    def _dataset_info(self, dataset: str, *, must_exist: bool = True) -> dict[str, Any] | None:
        path = self.dataset_path(dataset) / DATASET_FILE
        try:
            raw = _read_small(path)
        except FileNotFoundError:
            if must_exist:
                raise StoreNotFound("no such dataset", dataset=dataset) from None
            return None
        except OSError as e:
            raise StoreError(f"{DATASET_FILE} unreadable ({e})", dataset=dataset) from None
        try:
            info = json.loads(raw)
            version = info["format_version"]
            int(info["latent_channels"]), int(info["latent_ndim"])
        except (ValueError, KeyError, TypeError):
            raise StoreError(f"{DATASET_FILE} is damaged", dataset=dataset) from None
        if not isinstance(version, int) or not 1 <= version <= FORMAT_VERSION:
            raise StoreError(f"dataset format version {version!r} is not one this store reads "
                             f"(1..{FORMAT_VERSION}); update the pack", dataset=dataset)
        return info

    @staticmethod
    def _check_compatible(info: dict[str, Any], latent_shape: Sequence[int], dataset: str,
                          group_id: str | None, model_name: str | None) -> None:
        channels, ndim = int(info["latent_channels"]), int(info["latent_ndim"])
        if len(latent_shape) != ndim or latent_shape[0] != channels:
            raise StoreError(
                f"latents of shape {list(latent_shape)} (per candidate) come from another model: this dataset "
                f"holds {channels}-channel latents of {ndim} dimensions (model '{info.get('model_name')}'), "
                f"this group's model is '{model_name}'. Use another dataset for this model.",
                dataset=dataset, group_id=group_id)

    # ---- writing ---------------------------------------------------------------------------------------

    def add_group(self, dataset: str, *, latents: torch.Tensor, positive: Conditioning,
                  negative: Conditioning, candidates: list[CandidateMeta], previews: list[bytes],
                  preview_ext: str, model_name: str, model_hash: str | None, prompt: str | None = None,
                  negative_prompt: str | None = None, sampler: dict[str, Any] | None = None,
                  noise_mask: torch.Tensor | None = None) -> GroupMeta:
        """Write one group atomically (creating the dataset on first use) and return its metadata.

        `noise_mask`: the sampled LATENT's noise mask (batch 1 or N, any shape ComfyUI's sampler accepts),
        stored as float32 so training replays what the sampler denoised.

        Everything is validated before the first byte is written; on failure nothing stays behind.
        """
        ds_path = self.dataset_path(dataset)
        if not isinstance(latents, torch.Tensor) or latents.ndim < 3:
            raise StoreError("latents must be a tensor [N, C, ...] of the N candidates", dataset=dataset)
        n, latent_shape = int(latents.shape[0]), [int(s) for s in latents.shape[1:]]
        if n < 1:
            raise StoreError("a group needs at least one candidate", dataset=dataset)
        if dtype_code(latents.dtype) is None or latents.layout != torch.strided:
            raise StoreError(f"latents of dtype {latents.dtype} cannot be stored", dataset=dataset)
        cands = candidate_records(candidates, n, dataset)
        if len(previews) not in (0, n):
            raise StoreError(f"{len(previews)} previews for {n} candidates (give one per candidate, or none)",
                             dataset=dataset)
        if not all(isinstance(p, (bytes, bytearray, memoryview)) for p in previews):
            raise StoreError("previews must be bytes", dataset=dataset)
        if not isinstance(preview_ext, str) or not PREVIEW_EXT_PATTERN.fullmatch(preview_ext.lower().lstrip(".")):
            raise StoreError(f"preview extension {str(preview_ext)[:20]!r} is not allowed", dataset=dataset)
        ext = preview_ext.lower().lstrip(".")
        if not isinstance(model_name, str) or not model_name:
            raise StoreError("model_name must be a non-empty str", dataset=dataset)
        for what, v in (("model_hash", model_hash), ("prompt", prompt), ("negative_prompt", negative_prompt)):
            if v is not None and not isinstance(v, str):
                raise StoreError(f"{what} must be a str or None", dataset=dataset)
        sampler = dict(sampler or {})
        try:
            json.dumps(sampler, allow_nan=False)
        except (TypeError, ValueError) as e:
            raise StoreError(f"sampler settings must be plain JSON values ({e})", dataset=dataset) from None
        extra: dict[str, torch.Tensor] = {}
        if noise_mask is not None:
            if (not isinstance(noise_mask, torch.Tensor) or noise_mask.ndim < 2 or noise_mask.shape[0] not in (1, n)
                    or not noise_mask.is_floating_point() or not bool(torch.isfinite(noise_mask).all())):
                raise StoreError(f"noise_mask must be a finite float tensor of batch 1 or {n}", dataset=dataset)
            extra[NOISE_MASK_KEY] = noise_mask.detach().to("cpu", torch.float32).contiguous()
        table = TensorTable()
        try:
            structure = {"positive": encode_conditioning(positive, "positive", table),
                         "negative": encode_conditioning(negative, "negative", table)}
        except StoreError as e:
            raise StoreError(str(e), dataset=dataset) from None
        info = self._dataset_info(dataset, must_exist=False)
        if info is not None:
            self._check_compatible(info, latent_shape, dataset, None, model_name)

        group_id = _new_group_id()
        created = time.time()
        preview_files = [f"preview_{i}.{ext}" for i in range(len(previews))]
        meta = {
            "format": "animereward-group", "format_version": FORMAT_VERSION, "group_id": group_id,
            "dataset": dataset, "created": created, "n": n, "latent_shape": latent_shape,
            "latent_dtype": _dtype_name(latents.dtype), "model_name": model_name, "model_hash": model_hash,
            "prompt": prompt, "negative_prompt": negative_prompt, "sampler": sampler, "candidates": cands,
            "preview_files": preview_files, "conditioning": structure,
        }
        if extra:
            meta["noise_mask_shape"] = list(extra[NOISE_MASK_KEY].shape)
        tmp_root = ds_path / TMP_DIR
        groups = ds_path / GROUPS_DIR
        for d in (ds_path, groups, tmp_root):
            d.mkdir(parents=d is ds_path, exist_ok=True)
        self._clean_tmp(tmp_root)
        tmp = tmp_root / f"{os.getpid()}-{group_id}"
        tmp.mkdir()
        renamed = False
        try:
            write_safetensors(tmp / TENSORS_FILE, {LATENTS_KEY: latents, **extra, **table.tensors},
                              {"format": "animereward-group", "format_version": str(FORMAT_VERSION)}, fsync=False)
            for name, data in zip(preview_files, previews, strict=True):
                write_durable(tmp / name, data, fsync=False)
            write_durable(tmp / META_FILE, json.dumps(meta, indent=1).encode(), fsync=False)
            # every file and the folder durable before the rename makes the group visible
            fsync_all([tmp / TENSORS_FILE, *(tmp / name for name in preview_files), tmp / META_FILE, tmp])
            with file_lock(ds_path / LOCK_FILE):
                info = self._dataset_info(dataset, must_exist=False)
                if info is None:
                    info = {"format": "animereward-preferences", "format_version": FORMAT_VERSION,
                            "created": created, "latent_channels": latent_shape[0],
                            "latent_ndim": len(latent_shape), "model_name": model_name}
                    atomic_write_bytes(ds_path / DATASET_FILE, json.dumps(info, indent=1).encode())
                else:
                    self._check_compatible(info, latent_shape, dataset, None, model_name)
                if dataset not in self._recovered:
                    self._recover_orphans(dataset, ds_path, info)
                    self._recovered.add(dataset)
                os.rename(tmp, groups / group_id)
                renamed = True
                fsync_dir(groups)
                dataset_index.append_record(ds_path, group_id)
        except BaseException:
            # an error (not a kill) after the rename: take the group back out, the caller was told it failed
            shutil.rmtree(groups / group_id if renamed else tmp, ignore_errors=True)
            raise
        return meta_from_json(meta, None, dataset, group_id)

    def _recover_orphans(self, dataset: str, ds_path: Path, info: dict[str, Any]) -> list[str]:
        """Index the complete groups a killed writer renamed into groups/ but did not index (the caller holds
        the lock, so no live writer is between its rename and its append). Their files were fsynced before the
        rename; one that does not read back cleanly stays out of the index. Run once per dataset and instance."""
        data = dataset_index.index_bytes(ds_path)
        indexed = {dataset_index.record_id(data, k, NAME_PATTERN) for k in range(len(data) // RECORD_SIZE)}
        recovered = []
        with os.scandir(ds_path / GROUPS_DIR) as entries:
            names = [e.name for e in entries if e.is_dir(follow_symlinks=False) and NAME_PATTERN.fullmatch(e.name)]
        for name in sorted(names):
            if name in indexed:
                continue
            try:
                self._read_meta(dataset, name, info)
            except StoreError:
                continue
            dataset_index.append_record(ds_path, name)
            recovered.append(name)
        return recovered

    @staticmethod
    def _clean_tmp(tmp_root: Path) -> None:
        """Remove groups left half-written by writers that died (their pid is gone)."""
        for p in tmp_root.iterdir():
            pid = p.name.split("-", 1)[0]
            if pid.isdigit() and not _pid_alive(int(pid)):
                shutil.rmtree(p, ignore_errors=True)

    # ---- ranking ---------------------------------------------------------------------------------------

    def set_ranking(self, dataset: str, group_id: str, ranking: list[int] | None, *,
                    skipped: bool = False) -> GroupMeta:
        """Store the artist's order (candidate indices, best first), or mark the group skipped, or clear
        both (ranking None, skipped False). Atomic; the group's tensors are not touched."""
        meta = self.read_meta(dataset, group_id)
        if ranking is not None:
            if skipped:
                raise StoreError("a group is either ranked or skipped, not both", dataset=dataset,
                                 group_id=group_id)
            ranking = list(ranking)
            if (any(isinstance(r, bool) or not isinstance(r, int) for r in ranking)
                    or sorted(ranking) != list(range(meta.n))):
                raise StoreError(f"ranking {ranking[:20]} is not a permutation of the {meta.n} candidates "
                                 f"0..{meta.n - 1}", dataset=dataset, group_id=group_id)
        ds_path = self.dataset_path(dataset)
        ranked_at = time.time() if ranking is not None or skipped else None
        record = {"format_version": FORMAT_VERSION, "human_ranking": ranking, "skipped": bool(skipped),
                  "ranked_at": ranked_at}
        status = RANKED if ranking is not None else SKIPPED if skipped else UNRANKED
        gdir = self._group_dir(dataset, group_id)
        with file_lock(ds_path / LOCK_FILE):
            dataset_index.refuse_links(ds_path)
            pos = dataset_index.record_number(ds_path, group_id)
            if pos is None:
                raise StoreNotFound("the group is not in the dataset's index", dataset=dataset, group_id=group_id)
            # status.bin is a hint for listings that may claim "not ranked" wrongly, never "ranked" wrongly:
            # the authoritative ranking file is written first when ranking, last when clearing.
            if status == UNRANKED:
                dataset_index.write_status(ds_path, pos, status)
            atomic_write_bytes(gdir / RANKING_FILE, json.dumps(record).encode())
            if status != UNRANKED:
                dataset_index.write_status(ds_path, pos, status)
        return replace(meta, human_ranking=ranking, skipped=bool(skipped), ranked_at=ranked_at)

    # ---- reading ---------------------------------------------------------------------------------------

    def count(self, dataset: str) -> int:
        """Number of committed groups (readable or not)."""
        ds_path = self.dataset_path(dataset)
        self._dataset_info(dataset)
        return dataset_index.record_count(ds_path)

    def list_groups(self, dataset: str, *, cursor: str | None = None, limit: int = 50,
                    unranked_only: bool = False) -> GroupPage:
        """One page of groups in commit order. `cursor` is the page's `next_cursor` from the previous call.
        Cost grows with the page, not the dataset: records are fixed-size, the cursor is a record number, and
        `unranked_only` reads one status byte per group instead of the groups' files."""
        ds_path = self.dataset_path(dataset)
        info = self._dataset_info(dataset)
        if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_PAGE:
            raise StoreError(f"limit must be 1..{MAX_PAGE}", dataset=dataset)
        start = 0
        if cursor is not None:
            if not isinstance(cursor, str) or not cursor.isdigit() or len(cursor) > 12:
                raise StoreError(f"cursor {str(cursor)[:40]!r} is not one this store gave", dataset=dataset)
            start = int(cursor)
        total_records = dataset_index.record_count(ds_path)
        page = GroupPage(groups=[], next_cursor=None, total=total_records)
        if not unranked_only:
            data = dataset_index.index_bytes(ds_path, start, limit)
            numbers = range(len(data) // RECORD_SIZE)
            for k in numbers:
                self._page_add(page, dataset, info, dataset_index.record_id(data, k, NAME_PATTERN), start + k)
            end = start + len(numbers)
            page.next_cursor = str(end) if end < total_records else None
            return page
        status = dataset_index.read_status(ds_path, total_records)
        page.total = total_records - sum(status.count(s) for s in (RANKED, SKIPPED))
        data = dataset_index.index_bytes(ds_path, start)
        k = 0
        n_records = len(data) // RECORD_SIZE
        while k < n_records and len(page.groups) < limit:
            if status[start + k: start + k + 1] not in (RANKED, SKIPPED):
                self._page_add(page, dataset, info, dataset_index.record_id(data, k, NAME_PATTERN), start + k, unranked_only=True)
            k += 1
        page.next_cursor = str(start + k) if start + k < total_records else None
        return page

    def _page_add(self, page: GroupPage, dataset: str, info: dict[str, Any], gid: str | None, number: int,
                  unranked_only: bool = False) -> None:
        if gid is None:
            page.errors.append(str(StoreError(f"index record {number} is damaged", dataset=dataset)))
            return
        try:
            meta = self._read_meta(dataset, gid, info)
        except StoreError as e:
            page.errors.append(str(e))
            return
        if not (unranked_only and meta.ranked):
            page.groups.append(meta)

    def read_meta(self, dataset: str, group_id: str) -> GroupMeta:
        """The group's metadata and ranking, after the cheap checks (version, model, file sizes)."""
        return self._read_meta(dataset, group_id, self._dataset_info(dataset))

    def _read_meta(self, dataset: str, group_id: str, info: dict[str, Any]) -> GroupMeta:
        return self._read_meta_raw(dataset, group_id, info)[0]

    def _read_meta_raw(self, dataset: str, group_id: str, info: dict[str, Any],
                       check_tensors: bool = True) -> tuple[GroupMeta, dict[str, Any]]:
        """Metadata and the raw meta.json; `check_tensors` reads the tensor file's header too (load_group
        checks the loaded tensors instead)."""
        gdir = self._group_dir(dataset, group_id)

        def fail(msg: str) -> StoreError:
            return StoreError(msg, dataset=dataset, group_id=group_id)

        try:
            raw = json.loads(_read_small(gdir / META_FILE))
        except FileNotFoundError:
            if not gdir.is_dir():
                raise StoreNotFound("no such group", dataset=dataset, group_id=group_id) from None
            raise fail(f"{META_FILE} is missing") from None
        except (OSError, ValueError) as e:
            raise fail(f"{META_FILE} is unreadable ({type(e).__name__}: {str(e)[:80]})") from None
        if not isinstance(raw, dict):
            raise fail(f"{META_FILE} is not a JSON object")
        version = raw.get("format_version")
        if not isinstance(version, int) or isinstance(version, bool) or not 1 <= version <= FORMAT_VERSION:
            raise fail(f"format version {version!r} is not one this store reads (1..{FORMAT_VERSION}); "
                       "update the pack")
        ranking = None
        try:
            ranking = json.loads(_read_small(gdir / RANKING_FILE))
        except FileNotFoundError:
            pass
        except (OSError, ValueError) as e:
            raise fail(f"{RANKING_FILE} is unreadable ({type(e).__name__})") from None
        meta = meta_from_json(raw, ranking, dataset, group_id)
        self._check_compatible(info, meta.latent_shape, dataset, group_id, meta.model_name)
        if not check_tensors:
            return meta, raw
        try:
            header = read_header(gdir / TENSORS_FILE)
        except FileNotFoundError:
            raise fail(f"{TENSORS_FILE} is missing") from None
        except (OSError, ValueError) as e:
            raise fail(f"{TENSORS_FILE}: {e}") from None
        lat = header.get(LATENTS_KEY)
        if not isinstance(lat, dict) or lat.get("shape") != [meta.n, *meta.latent_shape] \
                or lat.get("dtype") != dtype_code(_latent_dtype(meta)):
            raise fail(_latents_mismatch(meta))
        return meta, raw

    def load_group(self, dataset: str, group_id: str) -> Group:
        """The group with its latents and both conditionings, validated against its metadata."""
        meta, raw = self._read_meta_raw(dataset, group_id, self._dataset_info(dataset), check_tensors=False)
        path = self._group_dir(dataset, group_id) / TENSORS_FILE
        if path.is_symlink():
            raise StoreError(f"{TENSORS_FILE} is a link; refusing to follow it", dataset=dataset,
                             group_id=group_id)
        from safetensors.torch import load_file

        try:
            tensors = load_file(str(path))
        except FileNotFoundError:
            raise StoreError(f"{TENSORS_FILE} is missing", dataset=dataset, group_id=group_id) from None
        except Exception as e:  # safetensors raises its own error types (a truncated file among them)
            raise StoreError(f"{TENSORS_FILE} is unreadable (truncated or damaged: {str(e)[:120]})",
                             dataset=dataset, group_id=group_id) from None
        latents = tensors.pop(LATENTS_KEY, None)
        if latents is None or list(latents.shape) != [meta.n, *meta.latent_shape] \
                or latents.dtype != _latent_dtype(meta):
            raise StoreError(_latents_mismatch(meta), dataset=dataset, group_id=group_id)
        noise_mask = tensors.pop(NOISE_MASK_KEY, None)
        if noise_mask is not None and (noise_mask.ndim < 2 or noise_mask.shape[0] not in (1, meta.n)):
            raise StoreError(f"{TENSORS_FILE} holds a noise_mask of shape {list(noise_mask.shape)} for {meta.n} "
                             "candidates", dataset=dataset, group_id=group_id)
        try:
            structure = raw["conditioning"]
            positive = decode_conditioning(structure["positive"], tensors, "positive")
            negative = decode_conditioning(structure["negative"], tensors, "negative")
        except StoreError as e:
            raise StoreError(str(e), dataset=dataset, group_id=group_id) from None
        except (KeyError, TypeError):
            raise StoreError(f"{META_FILE} has no readable conditioning", dataset=dataset,
                             group_id=group_id) from None
        return Group(meta=meta, latents=latents, positive=positive, negative=negative, noise_mask=noise_mask)

    def iter_groups(self, dataset: str) -> Iterator[GroupMeta | StoreError]:
        """Every committed group's metadata in commit order; a group that cannot be read comes back as the
        StoreError that names it, in its place, and the iteration goes on."""
        ds_path = self.dataset_path(dataset)
        info = self._dataset_info(dataset)
        data = dataset_index.index_bytes(ds_path)
        for k in range(len(data) // RECORD_SIZE):
            gid = dataset_index.record_id(data, k, NAME_PATTERN)
            if gid is None:
                yield StoreError(f"index record {k} is damaged", dataset=dataset)
                continue
            try:
                yield self._read_meta(dataset, gid, info)
            except StoreError as e:
                yield e

    def preview_path(self, dataset: str, group_id: str, index: int) -> Path:
        """The preview file of candidate `index` (StoreNotFound when the group has none)."""
        meta = self.read_meta(dataset, group_id)
        if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < len(meta.preview_files):
            raise StoreNotFound(f"no preview {index!r} (the group has {len(meta.preview_files)})",
                                dataset=dataset, group_id=group_id)
        path = self._group_dir(dataset, group_id) / meta.preview_files[index]
        if path.is_symlink() or not path.is_file():
            raise StoreNotFound(f"preview file {meta.preview_files[index]} is missing", dataset=dataset,
                                group_id=group_id)
        return path

