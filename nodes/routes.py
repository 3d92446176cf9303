"""HTTP routes of the ranking panel, under /animereward/ on ComfyUI's own server (also under /api/animereward/).

    GET  /animereward/datasets                                   datasets and their sizes
    GET  /animereward/datasets/{dataset}/groups?cursor=&limit=&unranked=1    one page of group metadata
    GET  /animereward/datasets/{dataset}/groups/{group}          one group's metadata
    GET  /animereward/datasets/{dataset}/groups/{group}/preview/{index}     a candidate's looping preview
    POST /animereward/datasets/{dataset}/groups/{group}/ranking  {"ranking": [best, ..., worst]}, {"skip": true}
                                                                 or {"clear": true} (forget the saved ranking or
                                                                 skip: unranked again, the reward's order counts);
                                                                 each answers with the group's metadata

Every id must match a strict pattern before it reaches the file system, and every path the store gives back
must resolve (symlinks followed) inside the datasets root: so `..`, absolute paths, percent-encoded or
doubly encoded variants and symlinks that point out of the root are refused, and nothing outside the root is
read or written. Bad input is a 400 with a message, an unknown dataset or group a 404, a group damaged on
disk a 409 naming it, a body over MAX_BODY bytes a 413. Store work runs off the event loop.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import re
import sys
from pathlib import Path
from typing import Any

from aiohttp import web

log = logging.getLogger("AnimeReward")

PREFIX = "/animereward"
CURSOR_RE = re.compile(r"^[0-9]{1,12}$")
MAX_BODY = 16 * 1024
MAX_LIMIT = 200
MAX_CANDIDATES = 4096


class BadRequest(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def _json(data: Any, status: int = 200) -> web.Response:
    return web.json_response(data, status=status, headers={"Cache-Control": "no-store"})


def _error(status: int, message: str) -> web.Response:
    return _json({"error": message}, status=status)


def _store() -> Any:
    from . import datasets_folder

    return datasets_folder.open_store()


def _inside_root(store: Any, path: Path) -> Path:
    """The resolved path if it lies inside the datasets root (symlinks followed), else a 404."""
    root = Path(store.root).resolve()
    real = Path(path).resolve()
    if real != root and root not in real.parents:
        log.warning("AnimeReward routes: %s resolves outside the datasets root; refused", path)
        raise BadRequest(404, "not found")
    return real


def _name(request: web.Request, key: str, what: str) -> str:
    from ..gapo_trainer.store import NAME_PATTERN

    value = request.match_info[key]
    if not NAME_PATTERN.fullmatch(value):
        raise BadRequest(400, f"bad {what} {value[:80]!r}: 1-63 letters, digits, '_' or '-', starting with a "
                              "letter or digit")
    return value


def _dataset(request: web.Request) -> str:
    return _name(request, "dataset", "dataset name")


def _group(request: web.Request) -> str:
    return _name(request, "group", "group id")


def _existing_dataset(store: Any, name: str) -> Path:
    from ..gapo_trainer.store import DATASET_FILE, StoreError

    try:
        path = store.dataset_path(name)
    except StoreError as e:
        raise BadRequest(404, str(e)) from e
    real = _inside_root(store, path)
    if not (real / DATASET_FILE).is_file():
        raise BadRequest(404, f"no dataset {name!r}")
    return real


def _read_meta(store: Any, dataset: str, gid: str) -> Any:
    """The group's metadata, after checking that its folder (symlinks followed) lies inside the root."""
    from ..gapo_trainer.store import GROUPS_DIR, StoreError, StoreNotFound

    _inside_root(store, _existing_dataset(store, dataset) / GROUPS_DIR / gid)
    try:
        return store.read_meta(dataset, gid)
    except StoreNotFound as e:
        raise BadRequest(404, str(e)) from e
    except StoreError as e:  # damaged on disk: the message names the group; the rest stays usable
        raise BadRequest(409, str(e)) from e


def meta_json(meta: Any) -> dict:
    """The group's metadata as JSON-ready values, with the URLs of its previews. Built field by field: the
    values are already plain (dataclasses.asdict's deep copy took a third of a page's time)."""
    data = {f.name: getattr(meta, f.name) for f in dataclasses.fields(meta)}
    data["candidates"] = [dict(vars(c)) for c in meta.candidates]
    data["previews"] = [f"{PREFIX}/datasets/{meta.dataset}/groups/{meta.group_id}/preview/{i}"
                        for i in range(len(meta.preview_files))]
    return data


async def _read_body(request: web.Request) -> dict:
    if request.content_length is not None and request.content_length > MAX_BODY:
        raise BadRequest(413, f"body of {request.content_length} bytes; the limit is {MAX_BODY}")
    chunks, size = [], 0
    while True:
        chunk = await request.content.read(4096)
        if not chunk:
            break
        size += len(chunk)
        if size > MAX_BODY:
            raise BadRequest(413, f"body over the limit of {MAX_BODY} bytes")
        chunks.append(chunk)
    try:
        data = json.loads(b"".join(chunks) or b"null")
    except ValueError as e:
        raise BadRequest(400, f"body is not JSON: {e}") from e
    if not isinstance(data, dict):
        raise BadRequest(400, 'body must be a JSON object: {"ranking": [...]}, {"skip": true} or {"clear": true}')
    return data


def parse_ranking(data: dict, n: int) -> tuple[list[int] | None, bool]:
    """The body as `PreferenceStore.set_ranking`'s (ranking, skipped): {"ranking": [...]} → (a permutation of
    0..n-1, False); {"skip": true} → (None, True); {"clear": true} → (None, False), the group unranked again.
    Anything else: 400."""
    unknown = set(data) - {"ranking", "skip", "clear"}
    if unknown:
        raise BadRequest(400, f"unknown field(s) {sorted(unknown)[:5]}")
    clear = data.get("clear", False)
    if not isinstance(clear, bool):
        raise BadRequest(400, "'clear' must be true or false")
    if clear:
        if set(data) != {"clear"}:  # one meaning per request: a clear sent with a ranking is a client bug
            raise BadRequest(400, '"clear" must come alone: send {"clear": true} to forget the saved ranking or '
                                  f"skip, without {' or '.join(repr(k) for k in sorted(set(data) - {'clear'}))}")
        return None, False
    skip = data.get("skip", False)
    if not isinstance(skip, bool):
        raise BadRequest(400, "'skip' must be true or false")
    if skip:
        if data.get("ranking") is not None:
            raise BadRequest(400, "give either a ranking or skip, not both")
        return None, True
    ranking = data.get("ranking")
    if not isinstance(ranking, list) or not all(type(i) is int for i in ranking):
        raise BadRequest(400, "'ranking' must be a list of candidate indices (integers), best first")
    if sorted(ranking) != list(range(n)):
        raise BadRequest(400, f"'ranking' {ranking[:MAX_CANDIDATES]} is not a permutation of the group's "
                              f"{n} candidates 0..{n - 1}")
    return ranking, False


# handlers

async def list_datasets(request: web.Request) -> web.Response:
    def work() -> dict:
        store = _store()
        out = []
        for name in store.datasets():
            try:
                _existing_dataset(store, name)
                out.append({"name": name, "groups": store.count(name)})
            except (BadRequest, ValueError, OSError):
                continue  # a damaged dataset is left out of the list, not a failure of the list
        return {"datasets": out}

    return _json(await asyncio.to_thread(work))


async def list_groups(request: web.Request) -> web.Response:
    dataset = _dataset(request)
    q = request.query
    cursor = q.get("cursor") or None
    if cursor is not None and not CURSOR_RE.match(cursor):
        raise BadRequest(400, "bad cursor")
    try:
        limit = int(q.get("limit", "50"))
    except ValueError as e:
        raise BadRequest(400, "'limit' must be an integer") from e
    if not 1 <= limit <= MAX_LIMIT:
        raise BadRequest(400, f"'limit' must be 1..{MAX_LIMIT}")
    unranked = q.get("unranked", "0")
    if unranked not in ("0", "1", "true", "false"):
        raise BadRequest(400, "'unranked' must be 0 or 1")

    def work() -> dict:
        from ..gapo_trainer.store import StoreError, StoreNotFound

        store = _store()
        _existing_dataset(store, dataset)
        try:
            page = store.list_groups(dataset, cursor=cursor, limit=limit, unranked_only=unranked in ("1", "true"))
        except StoreNotFound as e:
            raise BadRequest(404, str(e)) from e
        except StoreError as e:
            raise BadRequest(400, str(e)) from e
        return {"dataset": dataset, "groups": [meta_json(m) for m in page.groups],
                "next_cursor": page.next_cursor, "total": page.total, "errors": list(page.errors)}

    return _json(await asyncio.to_thread(work))


async def group_meta(request: web.Request) -> web.Response:
    dataset, gid = _dataset(request), _group(request)
    return _json(await asyncio.to_thread(lambda: meta_json(_read_meta(_store(), dataset, gid))))


async def preview(request: web.Request) -> web.StreamResponse:
    dataset, gid = _dataset(request), _group(request)
    index_text = request.match_info["index"]
    if not index_text.isdigit() or len(index_text) > 5:
        raise BadRequest(400, "bad candidate index")
    index = int(index_text)

    def work() -> Path:
        from ..gapo_trainer.store import StoreNotFound

        store = _store()
        _read_meta(store, dataset, gid)
        try:
            return _inside_root(store, store.preview_path(dataset, gid, index))
        except StoreNotFound as e:
            raise BadRequest(404, str(e)) from e

    path = await asyncio.to_thread(work)
    return web.FileResponse(path, headers={"Cache-Control": "private, max-age=3600",
                                           "Content-Type": "image/" + path.suffix.lstrip(".").lower()})


async def save_ranking(request: web.Request) -> web.Response:
    dataset, gid = _dataset(request), _group(request)
    data = await _read_body(request)

    def work() -> dict:
        from ..gapo_trainer.store import StoreError

        store = _store()
        meta = _read_meta(store, dataset, gid)
        ranking, skipped = parse_ranking(data, meta.n)
        try:
            saved = store.set_ranking(dataset, gid, ranking, skipped=skipped)
        except StoreError as e:
            raise BadRequest(400, str(e)) from e
        return meta_json(saved)

    result = await asyncio.to_thread(work)
    if result["human_ranking"] is not None or result["skipped"]:  # a clear gives a waiting Collect nothing
        from .ranking_wait import notify_ranking_saved

        notify_ranking_saved(dataset, gid)
    return _json(result)


def _guarded(handler: Any) -> Any:
    async def wrapper(request: web.Request) -> web.StreamResponse:
        try:
            return await handler(request)
        except BadRequest as e:
            return _error(e.status, str(e))
        except Exception:  # a broken file must not take the server down: the message names the request
            log.exception("AnimeReward route %s failed", request.path)
            return _error(500, f"internal error while serving {request.path[:200]}; see the server log")

    wrapper.__name__ = handler.__name__
    return wrapper


ROUTES = (
    ("GET", f"{PREFIX}/datasets", list_datasets),
    ("GET", PREFIX + "/datasets/{dataset}/groups", list_groups),
    ("GET", PREFIX + "/datasets/{dataset}/groups/{group}", group_meta),
    ("GET", PREFIX + "/datasets/{dataset}/groups/{group}/preview/{index}", preview),
    ("POST", PREFIX + "/datasets/{dataset}/groups/{group}/ranking", save_ranking),
)


def add_to(routes: web.RouteTableDef) -> None:
    for method, path, handler in ROUTES:
        routes.route(method, path)(_guarded(handler))


_REGISTERED = False


def register() -> bool:
    """Add the routes to ComfyUI's server, if one is running in this process (once)."""
    global _REGISTERED
    instance = getattr(getattr(sys.modules.get("server"), "PromptServer", None), "instance", None)
    if instance is None:
        return False
    if not _REGISTERED:
        add_to(instance.routes)
        _REGISTERED = True
    return True
