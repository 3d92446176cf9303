"""The ranking panel's routes on the real ComfyUI HTTP server: listing, previews, rankings and clears work; traversal
payloads, symlinks, oversized bodies and non-permutations are refused, and nothing outside the datasets root is
read or written."""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import shutil
from pathlib import Path

import pytest
from animereward_testkit.collect_workflows import datasets_root, seed_group

from gapo_trainer.pairs import build_pairs
from gapo_trainer.store import PreferenceStore

pytestmark = pytest.mark.comfy


@pytest.fixture(scope="module")
def env(comfy_server, comfy_base_dir):
    """A seeded dataset 'routes', and a complete dataset 'outside' just outside the root (what a traversal
    would reach), plus symlinks from inside the root to it."""
    root = datasets_root(comfy_base_dir)
    root.mkdir(parents=True, exist_ok=True)
    store = PreferenceStore(root)
    groups = [seed_group(store, "routes", [0.2, 0.9, 0.5]) for _ in range(3)]
    outside_parent = comfy_base_dir / "user"
    seed_group(store, "outside", [0.1, 0.2, 0.3])
    shutil.move(str(root / "outside"), str(outside_parent / "outside"))
    outside = outside_parent / "outside"
    outside_gid = next(p.name for p in (outside / "groups").iterdir())
    (root / "linked").symlink_to(outside, target_is_directory=True)
    seed_group(store, "linkedgroups", [0.1, 0.2])
    shutil.rmtree(root / "linkedgroups" / "groups")
    (root / "linkedgroups" / "groups").symlink_to(outside / "groups", target_is_directory=True)
    (root / "routes" / "groups" / outside_gid).symlink_to(outside / "groups" / outside_gid, target_is_directory=True)
    return {"store": store, "root": root, "groups": groups, "outside": outside, "outside_gid": outside_gid,
            "server": comfy_server}


def _raw(server, method: str, path: str, body: bytes | None = None, headers: dict | None = None) -> tuple[int, bytes]:
    """A request with the path sent exactly as written (urllib would normalise dot segments)."""
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    try:
        conn.putrequest(method, path, skip_accept_encoding=True)
        hdrs = {"Content-Type": "application/json"} | (headers or {})
        if body is not None and "Transfer-Encoding" not in hdrs:
            hdrs["Content-Length"] = str(len(body))
        for k, v in hdrs.items():
            conn.putheader(k, v)
        conn.endheaders()
        if body is not None:
            if hdrs.get("Transfer-Encoding") == "chunked":
                for i in range(0, len(body), 4096):
                    part = body[i:i + 4096]
                    conn.send(f"{len(part):x}\r\n".encode() + part + b"\r\n")
                conn.send(b"0\r\n\r\n")
            else:
                conn.send(body)
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def _tree_digest(path: Path) -> dict[str, str]:
    out = {}
    for p in sorted(path.rglob("*")):
        if p.is_file() and not p.is_symlink():
            out[str(p.relative_to(path))] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def test_list_meta_preview_and_save_a_ranking(env):
    server, store = env["server"], env["store"]
    data = server.get("/animereward/datasets")
    names = {d["name"]: d["groups"] for d in data["datasets"]}
    assert names["routes"] == 3 and "linked" not in names and "outside" not in names
    page = server.get("/animereward/datasets/routes/groups?limit=2&unranked=1")
    assert page["total"] == 3 and len(page["groups"]) == 2 and page["next_cursor"]
    rest = server.get(f"/animereward/datasets/routes/groups?limit=2&unranked=1&cursor={page['next_cursor']}")
    ids = [g["group_id"] for g in page["groups"] + rest["groups"]]
    assert ids == [g.group_id for g in env["groups"]] and rest["next_cursor"] is None
    gid = ids[0]
    meta = server.get(f"/api/animereward/datasets/routes/groups/{gid}")  # the /api twin the page uses
    assert meta["n"] == 3 and [c["total"] for c in meta["candidates"]] == [0.2, 0.9, 0.5]
    status, body = _raw(server, "GET", meta["previews"][1])
    assert status == 200 and body[:4] == b"RIFF" and body[8:12] == b"WEBP"
    assert body == store.preview_path("routes", gid, 1).read_bytes()
    status, body = server.request("POST", f"/animereward/datasets/routes/groups/{gid}/ranking", {"ranking": [1, 2, 0]})
    assert status == 200 and body["human_ranking"] == [1, 2, 0]
    assert store.read_meta("routes", gid).human_ranking == [1, 2, 0]
    status, _ = server.request("POST", f"/animereward/datasets/routes/groups/{ids[1]}/ranking", {"skip": True})
    assert status == 200 and store.read_meta("routes", ids[1]).skipped
    left = server.get("/animereward/datasets/routes/groups?unranked=1")
    assert [g["group_id"] for g in left["groups"]] == [ids[2]] and left["total"] == 1


def _pair_list(store: PreferenceStore, dataset: str, gid: str) -> list[tuple[int, int, str]]:
    pairs = build_pairs(store.iter_groups(dataset), mode="adjacent").pairs
    return [(p.winner, p.loser, p.source) for p in pairs if p.group_id == gid]


def test_clear_forgets_a_ranking_or_a_skip_and_the_reward_order_counts_again(env):
    server, store = env["server"], env["store"]
    ranked, skipped = (seed_group(store, "clearing", [0.2, 0.9, 0.5]) for _ in range(2))
    url = "/animereward/datasets/clearing/groups/{}/ranking".format
    status, ranked_reply = server.request("POST", url(ranked.group_id), {"ranking": [0, 2, 1]})
    assert status == 200
    assert server.request("POST", url(skipped.group_id), {"skip": True})[0] == 200
    assert _pair_list(store, "clearing", ranked.group_id) == [(0, 2, "human"), (2, 1, "human")]
    assert _pair_list(store, "clearing", skipped.group_id) == []
    assert server.get("/animereward/datasets/clearing/groups?unranked=1")["total"] == 0
    for gid in (ranked.group_id, skipped.group_id):
        status, reply = server.request("POST", url(gid), {"clear": True})
        assert status == 200, reply
        # the same reply as a ranking's or a skip's: the group's metadata, now with nothing saved
        assert set(reply) == set(ranked_reply) and reply["group_id"] == gid and reply["previews"]
        assert reply["human_ranking"] is None and reply["skipped"] is False and reply["ranked_at"] is None
        meta = store.read_meta("clearing", gid)
        assert meta.human_ranking is None and not meta.skipped and not meta.ranked
        # the reward's order again: totals 0.2, 0.9, 0.5 → 1 > 2 > 0
        assert _pair_list(store, "clearing", gid) == [(1, 2, "reward"), (2, 0, "reward")]
    left = server.get("/animereward/datasets/clearing/groups?unranked=1")
    assert [g["group_id"] for g in left["groups"]] == [ranked.group_id, skipped.group_id] and left["total"] == 2
    # clearing an unranked group is allowed and changes nothing
    status, reply = server.request("POST", url(ranked.group_id), {"clear": True})
    assert status == 200 and reply["human_ranking"] is None and not reply["skipped"]


def test_clear_with_a_ranking_or_skip_is_400_and_changes_nothing(env):
    server, store = env["server"], env["store"]
    gid = seed_group(store, "clearing_bad", [0.2, 0.9, 0.5]).group_id
    url = f"/animereward/datasets/clearing_bad/groups/{gid}/ranking"
    assert server.request("POST", url, {"ranking": [2, 0, 1]})[0] == 200
    before = store.read_meta("clearing_bad", gid)
    for body in [{"clear": True, "skip": True}, {"clear": True, "ranking": [0, 1, 2]},
                 {"clear": True, "skip": False}, {"clear": True, "ranking": None}]:
        status, reply = server.request("POST", url, body)
        assert status == 400 and "must come alone" in reply["error"], (body, status, reply)
        assert 'send {"clear": true}' in reply["error"]
    for body in [{"clear": "yes"}, {"clear": 1}, {"clear": None}]:
        status, reply = server.request("POST", url, body)
        assert status == 400 and "'clear' must be true or false" in reply["error"], (body, status, reply)
    assert store.read_meta("clearing_bad", gid) == before
    assert server.request("POST", url, {"clear": True})[0] == 200  # alone, it clears
    assert store.read_meta("clearing_bad", gid).human_ranking is None


TRAVERSALS = [
    "..", "...", "%2e%2e", "..%2F..%2Fuser%2Foutside", "%2e%2e%2f%2e%2e%2foutside", "%2E%2E%2Foutside",
    "%252e%252e%252foutside", "%25252e%25252e%25252foutside", "..%5C..%5Coutside", "%2Fetc%2Fpasswd",
    "%2F" + "%2F".join(["tmp", "outside"]), "C:%5Cwindows", "outside%00", "a%2F..%2F..%2Foutside", "linked",
    "outside", ".hidden", "a.b", "x" * 64, "%C0%AE%C0%AE%2F",
]


@pytest.mark.parametrize("payload", TRAVERSALS)
def test_traversal_payloads_are_refused_and_nothing_outside_is_touched(env, payload):
    server, outside = env["server"], env["outside"]
    before = _tree_digest(outside)
    gid = env["groups"][2].group_id
    requests = [
        ("GET", f"/animereward/datasets/{payload}/groups"),
        ("GET", f"/animereward/datasets/{payload}/groups/{env['outside_gid']}"),
        ("GET", f"/animereward/datasets/{payload}/groups/{env['outside_gid']}/preview/0"),
        ("POST", f"/animereward/datasets/{payload}/groups/{env['outside_gid']}/ranking"),
        ("GET", f"/animereward/datasets/routes/groups/{payload}"),
        ("GET", f"/animereward/datasets/routes/groups/{gid}/preview/{payload}"),
        ("POST", f"/animereward/datasets/routes/groups/{payload}/ranking"),
        ("GET", f"/api/animereward/datasets/{payload}/groups"),
    ]
    for method, path in requests:
        body = json.dumps({"ranking": [0, 1, 2]}).encode() if method == "POST" else None
        status, text = _raw(server, method, path, body)
        assert status in (400, 404), (path, status, text[:200])
    assert _tree_digest(outside) == before
    assert not (outside / "groups" / env["outside_gid"] / "ranking.json").exists()


def test_absolute_paths_and_dot_segments_never_reach_outside(env):
    server, outside = env["server"], env["outside"]
    before = _tree_digest(outside)
    for path in ["/animereward/datasets//etc/passwd/groups", "/animereward/datasets/routes/../../outside/groups",
                 "/animereward/datasets/%2e%2e/outside/groups", f"/animereward/datasets/{outside}/groups",
                 "/animereward/../animereward/datasets/linked/groups"]:
        status, text = _raw(server, "GET", path)
        assert status in (400, 404), (path, status, text[:200])
        if status != 404:
            assert b"error" in text
    assert _tree_digest(outside) == before


def test_symlinks_out_of_the_root_are_not_followed(env):
    server, outside, gid = env["server"], env["outside"], env["outside_gid"]
    before = _tree_digest(outside)
    for path in [f"/animereward/datasets/linked/groups/{gid}", "/animereward/datasets/linked/groups",
                 f"/animereward/datasets/linkedgroups/groups/{gid}", f"/animereward/datasets/routes/groups/{gid}",
                 f"/animereward/datasets/routes/groups/{gid}/preview/0"]:
        status, text = _raw(server, "GET", path)
        assert status == 404, (path, status, text[:200])
    for ds in ("linked", "linkedgroups", "routes"):
        status, _ = _raw(server, "POST", f"/animereward/datasets/{ds}/groups/{gid}/ranking",
                         json.dumps({"ranking": [2, 1, 0]}).encode())
        assert status == 404
    assert _tree_digest(outside) == before
    assert not (outside / "groups" / gid / "ranking.json").exists()


def test_bad_rankings_and_bodies_are_400_and_change_nothing(env):
    server, store = env["server"], env["store"]
    gid = env["groups"][2].group_id
    url = f"/animereward/datasets/routes/groups/{gid}/ranking"
    before = store.read_meta("routes", gid)
    bad = [{"ranking": [0, 0, 1]}, {"ranking": [0, 1]}, {"ranking": [0, 1, 2, 3]}, {"ranking": [0, 1, 5]},
           {"ranking": [-1, 0, 1]}, {"ranking": ["0", "1", "2"]}, {"ranking": [True, False, 2]},
           {"ranking": [0.0, 1.0, 2.0]}, {"ranking": "0,1,2"}, {"ranking": None}, {}, {"skip": "yes"},
           {"skip": True, "ranking": [0, 1, 2]}, {"ranking": [0, 1, 2], "extra": 1}, [0, 1, 2], "rank"]
    for body in bad:
        status, reply = server.request("POST", url, body)
        assert status == 400 and reply["error"], (body, status, reply)
    for raw in [b"{not json", b"", b"\xff\xfe"]:
        status, _ = _raw(server, "POST", url, raw)
        assert status == 400
    big = json.dumps({"ranking": [0, 1, 2], "pad": "x" * 40_000}).encode()
    status, reply = _raw(server, "POST", url, big)
    assert status == 413 and b"limit" in reply
    status, reply = _raw(server, "POST", url, big, {"Transfer-Encoding": "chunked"})
    assert status == 413
    assert store.read_meta("routes", gid) == before
    assert not (env["root"] / "routes" / "groups" / gid / "ranking.json").exists()
    assert server.get("/system_stats")  # the server keeps serving


def test_unknown_ids_are_404_and_bad_queries_400(env):
    server = env["server"]
    gid = env["groups"][0].group_id
    for path in ["/animereward/datasets/nosuch/groups", "/animereward/datasets/routes/groups/20990101T000000000Z-00000000",
                 f"/animereward/datasets/routes/groups/{gid}/preview/7", "/animereward/datasets/nosuch/groups/abc"]:
        assert _raw(server, "GET", path)[0] == 404, path
    for query in ["limit=0", "limit=100000", "limit=x", "cursor=-1", "cursor=abc", "unranked=maybe"]:
        status, _ = _raw(server, "GET", f"/animereward/datasets/routes/groups?{query}")
        assert status == 400, query


def test_the_server_never_created_anything_beside_the_root(env, comfy_base_dir):
    """Whatever was requested above, the only dataset folders are the ones the tests made."""
    user = comfy_base_dir / "user"
    assert sorted(p.name for p in user.iterdir() if p.is_dir() and not p.is_symlink()) <= sorted(
        ["default", "animereward_datasets", "outside"])
    assert not (Path("/tmp") / "outside" / "ranking.json").exists() and not os.path.exists("/etc/ranking.json")
