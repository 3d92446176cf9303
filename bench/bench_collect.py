"""Collect and the ranking panel's routes: listing latency through the real server at 10,000 groups, and the
cost of the model fingerprint for a Wan-14B-sized state dict.

- Routes: a dataset of 10,000 groups (9,000 ranked, the 1,000 unranked at the end, the worst case for the
  panel's "unranked only" list), filled as bench_store does. Through a real ComfyUI server (HTTP, JSON, the
  path checks): the first page, a middle page through the cursor, the first unranked page (50 groups each),
  one group's metadata, one preview, and a ranking saved. Baselines in the same run: the store's own
  `list_groups` in this process (what the route adds is HTTP, JSON and the checks) and GET /system_stats
  (ComfyUI's HTTP floor). Target: each page under 200 ms.
- Fingerprint: `model_identity.model_hash` over the state dict of Wan 2.1 14B image-to-video (every key,
  shape and dtype, bf16), whose tensors are views of one buffer (the fingerprint reads three 64-value windows
  per tensor, so the cost is per tensor, not per byte), first call and cached call, against hashing every
  byte (SHA-256 throughput measured on 256 MiB here, extrapolated to the model's 28 GiB).
"""

from __future__ import annotations

import hashlib
import json
import shutil
import statistics
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import torch

from .timing import median_seconds

REPO_ROOT = Path(__file__).resolve().parents[1]
for _p in (REPO_ROOT, REPO_ROOT / "tests"):  # appended: ComfyUI's own `nodes` must stay first once loaded
    if str(_p) not in sys.path:
        sys.path.append(str(_p))

GROUPS = 10_000
REPEATS = 9


def _get(url: str, data: bytes | None = None) -> bytes:
    req = urllib.request.Request(url, data=data, method="POST" if data else "GET",
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as r:
        return r.read()


def bench_routes(work: Path) -> dict[str, float]:
    from animereward_testkit import comfy_paths
    from animereward_testkit.collect_workflows import datasets_root
    from animereward_testkit.server import ComfyServer

    from bench.bench_store import fill_dataset
    from gapo_trainer.store import PreferenceStore

    base = comfy_paths.make_base_dir(work / "base")
    root = datasets_root(base)
    root.mkdir(parents=True)
    t0 = time.perf_counter()
    ids = fill_dataset(root, "big", GROUPS, ranked=GROUPS - 1000)
    fill_s = time.perf_counter() - t0
    store = PreferenceStore(root)
    out: dict[str, float] = {"fill_s": fill_s}
    with ComfyServer(comfy_paths.comfyui_dir(), base, base / "server.log") as server:
        api = server.url + "/animereward/datasets/big"
        first = json.loads(_get(api + "/groups?limit=50"))
        assert [g["group_id"] for g in first["groups"]] == ids[:50] and first["total"] == GROUPS
        unranked = json.loads(_get(api + "/groups?limit=50&unranked=1"))
        assert [g["group_id"] for g in unranked["groups"]] == ids[-1000:-950] and unranked["total"] == 1000
        mid = json.loads(_get(api + f"/groups?limit=50&cursor={GROUPS // 2}"))
        assert [g["group_id"] for g in mid["groups"]] == ids[GROUPS // 2:GROUPS // 2 + 50]
        timed = {
            "route_first_ms": lambda: _get(api + "/groups?limit=50"),
            "route_middle_ms": lambda: _get(api + f"/groups?limit=50&cursor={GROUPS // 2}"),
            "route_unranked_ms": lambda: _get(api + "/groups?limit=50&unranked=1"),
            "route_meta_ms": lambda: _get(api + f"/groups/{ids[-1]}"),
            "route_preview_ms": lambda: _get(api + f"/groups/{ids[-1]}/preview/0"),
            "route_save_ms": lambda: _get(api + f"/groups/{ids[-1]}/ranking", b'{"ranking": [0, 1, 2, 3]}'),
            "store_first_ms": lambda: store.list_groups("big", limit=50),
            "store_middle_ms": lambda: store.list_groups("big", cursor=str(GROUPS // 2), limit=50),
            "store_unranked_ms": lambda: store.list_groups("big", limit=50, unranked_only=True),
            "http_floor_ms": lambda: _get(server.url + "/system_stats"),
        }
        for name, fn in timed.items():
            out[name] = 1e3 * median_seconds(fn, REPEATS, warmup=True)
    return out


def wan14b_state_dict() -> dict[str, torch.Tensor]:
    """Every key of Wan 2.1 14B i2v with its real shape, bf16, as views of one buffer (built on the meta
    device, so no 28 GiB is allocated)."""
    import comfy.ldm.wan.model
    import comfy.ops

    with torch.device("meta"):
        model = comfy.ldm.wan.model.WanModel(
            model_type="i2v", dim=5120, ffn_dim=13824, num_heads=40, num_layers=40, in_dim=36, out_dim=16,
            text_dim=4096, freq_dim=256, operations=comfy.ops.disable_weight_init)
    shapes = {k: v.shape for k, v in model.state_dict().items()}
    buf = torch.randn(max(s.numel() for s in shapes.values())).to(torch.bfloat16)
    return {k: buf[: s.numel()].view(s) for k, s in shapes.items()}


class _StateDictModule(torch.nn.Module):
    def __init__(self, sd: dict[str, torch.Tensor]) -> None:
        super().__init__()
        self._sd = sd

    def state_dict(self, *args, **kwargs):  # the fingerprint reads only this
        return dict(self._sd)


class _Patcher:
    def __init__(self, sd: dict[str, torch.Tensor]) -> None:
        self.model, self.backup, self.patches = _StateDictModule(sd), {}, {}


def bench_fingerprint(work: Path) -> dict[str, float]:
    import importlib.util

    from animereward_testkit import comfy_paths

    if "folder_paths" not in sys.modules:  # another benchmark may have started ComfyUI in this process
        comfy_paths.import_comfy(comfy_paths.comfyui_dir(), comfy_paths.make_base_dir(work / "fp_base", False))

    spec = importlib.util.spec_from_file_location("bench_model_identity", REPO_ROOT / "nodes" / "model_identity.py")
    ident = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(ident)
    sd = wan14b_state_dict()
    params = sum(v.numel() for v in sd.values())
    first = []
    for _ in range(3):
        ident._BASE_CACHE.clear()
        patcher = _Patcher(sd)
        t0 = time.perf_counter()
        ident.model_hash(patcher)
        first.append(time.perf_counter() - t0)
    cached = median_seconds(lambda: ident.model_hash(patcher), REPEATS)
    block = bytes(256 * 2**20)  # SHA-256 runs at the same speed whatever the bytes
    t0 = time.perf_counter()
    hashlib.sha256(block).hexdigest()
    sha_s_per_byte = (time.perf_counter() - t0) / len(block)
    full = sha_s_per_byte * params * 2
    return {"tensors": len(sd), "params_b": params / 1e9, "first_s": statistics.median(first), "cached_s": cached,
            "full_sha_s": full, "ratio": statistics.median(first) / full}


def run() -> list[tuple[str, str]]:
    work = Path(tempfile.mkdtemp(prefix="animereward-bench-collect-"))
    try:
        r = bench_routes(work)
        f = bench_fingerprint(work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f"10,000 groups (filled in {r['fill_s']:.0f} s), 50 per page, median of {REPEATS}: through the server "
          f"first {r['route_first_ms']:.1f} ms, middle {r['route_middle_ms']:.1f} ms, unranked "
          f"{r['route_unranked_ms']:.1f} ms; store in-process {r['store_first_ms']:.1f} / {r['store_middle_ms']:.1f}"
          f" / {r['store_unranked_ms']:.1f} ms; GET /system_stats {r['http_floor_ms']:.1f} ms; metadata "
          f"{r['route_meta_ms']:.1f} ms, preview {r['route_preview_ms']:.1f} ms, save ranking {r['route_save_ms']:.1f} ms")
    print(f"fingerprint of Wan 2.1 14B i2v ({f['tensors']} tensors, {f['params_b']:.1f} B params, bf16): first "
          f"{f['first_s'] * 1e3:.0f} ms, cached {f['cached_s'] * 1e6:.0f} µs; SHA-256 of every byte would take "
          f"about {f['full_sha_s']:.0f} s here")
    return [
        ("routes: 10k groups, page of 50 first / middle / unranked (< 200 ms)",
         f"{r['route_first_ms']:.1f} / {r['route_middle_ms']:.1f} / {r['route_unranked_ms']:.1f} ms"),
        ("routes: page through the server / store in-process (first page)",
         f"{r['route_first_ms'] / r['store_first_ms']:.2f} (HTTP floor {r['http_floor_ms']:.1f} ms)"),
        ("routes: group metadata / preview / save ranking",
         f"{r['route_meta_ms']:.1f} / {r['route_preview_ms']:.1f} / {r['route_save_ms']:.1f} ms"),
        ("collect: Wan-14B fingerprint first / cached", f"{f['first_s'] * 1e3:.0f} ms / {f['cached_s'] * 1e6:.0f} µs"),
        ("collect: fingerprint / SHA-256 of every byte", f"{f['ratio']:.4f} (vs ~{f['full_sha_s']:.0f} s)"),
    ]
