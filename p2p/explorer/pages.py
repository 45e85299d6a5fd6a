"""The explorer's pages: each reads the node API (source.ApiSource) and renders one template.

Routes (all GET, nothing changes the node):
  /                       status, recent blocks, open tasks        /blocks?page=N   older blocks
  /block/{height|hash}    header, work claim, trace leaves, transactions, a render block's images
  /tx/{txid}              /account/{address}   (?page=N of its history)
  /tasks                  /task/{id}   (?blocks=N, ?grid=N: pages of its blocks and of its images)
  /peers                  /search?q=   height, block or transaction hash, address or task id
  /img/{block}/{claim}/{unit}/{image}.png   one re-rendered image (immutable, cached)
A bad id, a page beyond the last or an unknown path gives an HTML error page with the reason
(400 or 404), never a stack trace.
"""

from __future__ import annotations

import logging
import math
import re
from dataclasses import asdict
from typing import Any
from urllib.parse import quote

from aiohttp import web

from p2p.explorer.gallery import Gallery, UnitJob, manifest_seeds
from p2p.explorer.source import ApiSource, PageError
from p2p.explorer.views import make_environment
from useful_work.specs import RenderSpec, TaskSpecError, TrainSpec, parse_spec

log = logging.getLogger("pouw.explorer")

RECENT_BLOCKS = 20  # on the home page
RATE_WINDOW = 10  # blocks over which the mining rate is measured
BLOCKS_PAGE = 25
HISTORY_PAGE = 25
TASK_BLOCKS_PAGE = 20
GRID_BLOCKS = 6  # blocks per page of a render task's image grid
GRID_IMAGES_PER_BLOCK = 8
BLOCK_IMAGES = 16  # images shown on a render block's page
LEAVES_PAGE = 100
MAX_CURVE_POINTS = 48  # heights evaluated for a training task's learning curve
_HEX64 = re.compile(r"[0-9a-fA-F]{64}")
_SMALL_INT = re.compile(r"[0-9]{1,6}")


def mining_rate(blocks: list[dict]) -> dict | None:
    """Units per second and blocks per minute over consecutive block summaries (ascending)."""
    blocks = [b for b in blocks if b.get("height", 0) > 0 and isinstance(b.get("time_ms"), int)]
    if len(blocks) < 2:
        return None
    span_s = (blocks[-1]["time_ms"] - blocks[0]["time_ms"]) / 1000
    if span_s <= 0:
        return None
    units = sum(int(b.get("units", 0)) for b in blocks[1:])
    return {
        "units_per_s": units / span_s,
        "blocks_per_min": 60 * (len(blocks) - 1) / span_s,
        "blocks": len(blocks),
    }


def page_arg(request: web.Request, name: str, last: int, what: str) -> int:
    """Page number `name` of the query (0 when absent), checked against the last page there is."""
    text = request.query.get(name, "")
    if text == "":
        return 0
    if not (text.isascii() and text.isdigit()):
        raise PageError(400, f"{name}={text[:40]!r} is not a page number")
    if len(text) > 18 or int(text) > last:
        raise PageError(404, f"there is no page {text[:40]} of {what} (the last is page {last})")
    return int(text)


def newest_first_slice(total: int, page: int, size: int) -> tuple[int, int]:
    """(offset, limit) of page `page` when pages count back from the newest of `total` items."""
    end = total - page * size
    start = max(0, end - size)
    return start, max(0, end - start)


def parse_task_spec(task: dict) -> RenderSpec | TrainSpec | None:
    try:
        return parse_spec(bytes.fromhex(task.get("spec", "")))
    except (ValueError, TaskSpecError):
        return None


class Explorer:
    def __init__(self, api: ApiSource) -> None:
        self.api = api
        self.gallery = Gallery()
        self.env = make_environment()

    async def close(self, _app: web.Application | None = None) -> None:
        await self.api.close()

    # --- rendering -----------------------------------------------------------------------------

    async def frame(self) -> dict:
        """What every page shows at the top: the node's status and the mining rate."""
        status = await self.api.get("/api/status")
        recent = (await self.api.get("/api/blocks", limit=RATE_WINDOW)).get("blocks", [])
        window = [
            {"height": b.get("height"), "time_ms": b.get("time_ms"), "units": b.get("units")}
            for b in recent
        ]
        return {"status": status, "rate": mining_rate(recent), "rate_window": window}

    def html(self, template: str, http_status: int = 200, **context: Any) -> web.Response:
        text = self.env.get_template(template).render(**context)
        resp = web.Response(
            text=text, status=http_status, content_type="text/html", charset="utf-8"
        )
        resp.headers["Cache-Control"] = "no-store"
        return resp

    async def page(self, template: str, title: str, page: str, **context: Any) -> web.Response:
        return self.html(template, title=title, page=page, **(await self.frame()), **context)

    async def error_page(self, code: int, title: str, message: str) -> web.Response:
        try:
            frame = await self.frame()
        except PageError:
            frame = {"status": None, "rate": None, "rate_window": []}
        try:
            return self.html(
                "error.html",
                http_status=code,
                title=title,
                page="error",
                code=code,
                message=message,
                **frame,
            )
        except Exception:  # noqa: BLE001 - the error page itself failed: plain text, still no trace
            log.exception("explorer error page failed")
            return web.Response(
                text=f"{code} {title}: {message}\n", status=code, content_type="text/plain"
            )

    @web.middleware
    async def errors(self, request: web.Request, handler: Any) -> web.StreamResponse:
        """Explorer paths answer errors with an HTML page; /api and /metrics keep the API's JSON."""
        if request.path.startswith("/api/") or request.path == "/metrics":
            return await handler(request)
        try:
            return await handler(request)
        except PageError as exc:
            return await self.error_page(exc.status, exc.title, exc.message)
        except web.HTTPException as exc:
            if exc.status < 400:
                raise
            message = "There is no such page here." if exc.status == 404 else (exc.reason or "")
            return await self.error_page(exc.status, exc.reason or "Error", message)
        except Exception as exc:  # noqa: BLE001 - a page bug must show a page, not a trace
            log.exception("explorer error on %s", request.path)
            return await self.error_page(
                500,
                "Internal error",
                f"The explorer failed on this page ({type(exc).__name__}); the node's log has the "
                "details.",
            )

    # --- pages ---------------------------------------------------------------------------------

    async def home(self, request: web.Request) -> web.Response:
        recent = await self.api.get("/api/blocks", limit=RECENT_BLOCKS)
        tasks = (await self.api.get("/api/tasks")).get("tasks", [])
        open_tasks = sorted(
            (t for t in tasks if t.get("status") == "open"),
            key=lambda t: (not t.get("active"), t.get("created_height", 0)),
        )
        return await self.page(
            "home.html",
            "Latest blocks",
            "home",
            blocks=list(reversed(recent.get("blocks", []))),
            tasks=open_tasks,
            task_count=len(tasks),
            more=recent.get("tip", 0) >= RECENT_BLOCKS,
        )

    async def blocks(self, request: web.Request) -> web.Response:
        tip = (await self.api.get("/api/status"))["height"]
        total = tip + 1
        last = (total - 1) // BLOCKS_PAGE
        page = page_arg(request, "page", last, "blocks")
        start, limit = newest_first_slice(total, page, BLOCKS_PAGE)
        data = await self.api.get("/api/blocks", start=start, limit=limit)
        return await self.page(
            "blocks.html",
            f"Blocks, page {page}",
            "blocks",
            blocks=list(reversed(data.get("blocks", []))),
            page_no=page,
            last_page=last,
        )

    async def block(self, request: web.Request) -> web.Response:
        ident = request.match_info["id"]
        block = await self.api.get(f"/api/blocks/{quote(ident, safe='')}")
        claims_meta = block.get("work", [])
        most = max((c.get("unit_count", 0) for c in claims_meta), default=0)
        leaves_page = page_arg(
            request, "leaves", max(0, most - 1) // LEAVES_PAGE, "this block's leaves"
        )
        trace = await self.api.get(
            f"/api/blocks/{block['hash']}/trace",
            offset=leaves_page * LEAVES_PAGE,
            limit=LEAVES_PAGE,
        )
        claims = []
        for claim in trace.get("claims", []):
            task = await self.api.get_or_none(f"/api/tasks/{claim['task_id']}")
            spec = parse_task_spec(task) if task else None
            leaves = claim.get("leaves", [])
            fields = [k for k in (leaves[0] if leaves else {}) if k != "unit"]
            images = []
            if isinstance(spec, RenderSpec):
                images = await self._block_images(block, claim, spec)
            claims.append(
                {
                    **claim,
                    "task": task,
                    "spec": spec,
                    "fields": fields,
                    "images": images,
                    "challenged_set": set(claim.get("challenged", [])),
                    "opened_set": set(claim.get("opened", [])),
                }
            )
        tip = (await self.api.get("/api/status"))["height"]
        return await self.page(
            "block.html",
            f"Block {block['height']}",
            "block",
            block=block,
            claims=claims,
            leaves_page=leaves_page,
            leaves_last=max(0, most - 1) // LEAVES_PAGE,
            leaves_size=LEAVES_PAGE,
            has_next=block.get("on_best_chain") and block["height"] < tip,
        )

    async def _block_images(self, block: dict, claim: dict, spec: RenderSpec) -> list[dict]:
        """Images of a render block's units: the re-executed ones first, then the first units, at
        most BLOCK_IMAGES."""
        marks = dict.fromkeys(claim.get("challenged", []), "spot check")
        marks[claim["winner"]] = "the winning unit"
        order = sorted(marks) + [u for u in range(claim["unit_count"]) if u not in marks]
        chosen: list[tuple[int, int]] = []
        count = 0
        for u in order:
            if count >= BLOCK_IMAGES:
                break
            n = min(spec.images_per_unit, BLOCK_IMAGES - count)
            chosen.append((u, n))
            count += n
        leaves = {leaf["unit"]: leaf for leaf in claim.get("leaves", [])}
        for u, _ in chosen:
            if u not in leaves:  # not on the leaves page shown: ask for that leaf
                trace = await self.api.get(f"/api/blocks/{block['hash']}/trace", offset=u, limit=1)
                leaves[u] = trace["claims"][claim["index"]]["leaves"][0]
        jobs = [
            UnitJob(
                (block["hash"], claim["index"], u),
                bytes.fromhex(leaves[u]["seed"]),
                spec,
                bytes.fromhex(leaves[u]["digest"]),
                n,
            )
            for u, n in sorted(chosen)
        ]
        return self._tiles(jobs, await self.gallery.render(jobs), marks)

    @staticmethod
    def _tiles(
        jobs: list[UnitJob], rendered: list, marks: dict[int, str] | None = None
    ) -> list[dict]:
        tiles = []
        for job, unit in zip(jobs, rendered):
            block_hash, claim, u = job.key
            for i in range(job.need):
                tile = {
                    "block": block_hash,
                    "claim": claim,
                    "unit": u,
                    "image": i,
                    "src": f"/img/{block_hash}/{claim}/{u}/{i}.png",
                    "size": job.spec.image_size,
                    "reexecuted": (marks or {}).get(u),
                }
                if unit is None:
                    tile.update(
                        label="not rendered: over this page's rendering budget",
                        short="–",
                        checked=None,
                        missing=True,
                    )
                else:
                    label, _, short_text = unit.labels[i].rpartition("\n")
                    tile.update(label=label, short=short_text, checked=unit.checked, missing=False)
                tiles.append(tile)
        return tiles

    async def tx(self, request: web.Request) -> web.Response:
        ident = request.match_info["id"]
        data = await self.api.get(f"/api/txs/{quote(ident, safe='')}")
        return await self.page("tx.html", "Transaction", "tx", info=data, tx=data.get("tx", {}))

    async def account(self, request: web.Request) -> web.Response:
        address = request.match_info["address"]
        path = f"/api/accounts/{quote(address, safe='')}"
        account = await self.api.get(path)
        first = await self.api.get(path + "/txs", offset=0, limit=1)
        total = first.get("total", 0)
        page = page_arg(
            request, "page", max(0, total - 1) // HISTORY_PAGE, "this account's history"
        )
        history = await self.api.get(path + "/txs", offset=page * HISTORY_PAGE, limit=HISTORY_PAGE)
        known = {
            "address",
            "balance",
            "nonce",
            "pending_transactions",
            "next_nonce",
            "spendable",
            "immature",
        }
        extra = {
            k: v
            for k, v in account.items()
            if k not in known and isinstance(v, (int, str, float, bool))
        }
        return await self.page(
            "account.html",
            "Account",
            "account",
            account=account,
            extra=extra,
            items=history.get("items", []),
            total=total,
            page_no=page,
            last_page=max(0, total - 1) // HISTORY_PAGE,
        )

    async def tasks(self, request: web.Request) -> web.Response:
        tasks = (await self.api.get("/api/tasks")).get("tasks", [])
        return await self.page("tasks.html", "Tasks", "tasks", tasks=list(reversed(tasks)))

    async def task(self, request: web.Request) -> web.Response:
        ident = request.match_info["id"]
        task = await self.api.get(f"/api/tasks/{quote(ident, safe='')}")
        task_id = task["task_id"]
        spec = parse_task_spec(task)
        total = int(task.get("blocks", 0))
        last = max(0, total - 1) // TASK_BLOCKS_PAGE
        blocks_page = page_arg(request, "blocks", last, "this task's blocks")
        offset, limit = newest_first_slice(total, blocks_page, TASK_BLOCKS_PAGE)
        worked = []
        if limit:
            worked = list(
                reversed(
                    (
                        await self.api.get(
                            f"/api/tasks/{task_id}/manifest", offset=offset, limit=limit
                        )
                    ).get("blocks", [])
                )
            )
        context: dict[str, Any] = {
            "task": task,
            "spec": asdict(spec) if spec else None,
            "kind": task.get("kind"),
            "worked": worked,
            "blocks_page": blocks_page,
            "blocks_last": last,
            "total_blocks": total,
            "grid": None,
            "curve": None,
        }
        if isinstance(spec, RenderSpec):
            grid_last = max(0, total - 1) // GRID_BLOCKS
            grid_page = page_arg(request, "grid", grid_last, "this task's images")
            context.update(
                grid=await self._grid(task_id, spec, total, grid_page),
                grid_page=grid_page,
                grid_last=grid_last,
            )
        elif isinstance(spec, TrainSpec):
            context.update(curve=await self._curve_heights(task_id, total))
        default = "Default " if task.get("default") else ""
        title = f"{default}{task.get('kind', '')} task".strip().capitalize()
        return await self.page("task.html", title, "task", **context)

    async def _grid(self, task_id: str, spec: RenderSpec, total: int, page: int) -> list[dict]:
        """Images of the task's blocks on one grid page (newest block first), a few per block."""
        offset, limit = newest_first_slice(total, page, GRID_BLOCKS)
        if not limit:
            return []
        manifest = await self.api.get(f"/api/tasks/{task_id}/manifest", offset=offset, limit=limit)
        rows = []
        for entry in reversed(manifest.get("blocks", [])):
            digests = entry.get("digests", [])
            want = min(GRID_IMAGES_PER_BLOCK, len(digests) * spec.images_per_unit)
            units = -(-want // spec.images_per_unit)
            seeds = manifest_seeds(entry)
            jobs = [
                UnitJob(
                    (entry["hash"], int(entry.get("claim", 0)), u),
                    seeds[u],
                    spec,
                    bytes.fromhex(digests[u]),
                    min(spec.images_per_unit, want - u * spec.images_per_unit),
                )
                for u in range(units)
            ]
            rows.append(
                {"entry": entry, "jobs": jobs, "images_total": len(digests) * spec.images_per_unit}
            )
        rendered = await self.gallery.render([j for r in rows for j in r["jobs"]])
        out, k = [], 0
        for r in rows:
            n = len(r["jobs"])
            out.append(
                {
                    "entry": r["entry"],
                    "images_total": r["images_total"],
                    "tiles": self._tiles(r["jobs"], rendered[k : k + n]),
                }
            )
            k += n
        return out

    async def _curve_heights(self, task_id: str, total: int) -> dict:
        """The heights whose states the learning curve evaluates: all of them, or
        MAX_CURVE_POINTS spread evenly."""
        path = f"/api/tasks/{task_id}/blocks"
        if total <= MAX_CURVE_POINTS:
            picked = (
                (await self.api.get(path, offset=0, limit=max(1, total))).get("blocks", [])
                if total
                else []
            )
            sampled = False
        else:
            step = math.ceil(total / (MAX_CURVE_POINTS - 1))
            picked = (
                await self.api.get(path, offset=0, step=step, limit=MAX_CURVE_POINTS - 1)
            ).get("blocks", [])
            picked += (await self.api.get(path, offset=total - 1, limit=1)).get("blocks", [])
            sampled = True
        heights = sorted({b["height"] for b in picked})
        return {
            "heights": heights,
            "sampled": sampled,
            "total": total,
            "max_points": MAX_CURVE_POINTS,
        }

    async def peers(self, request: web.Request) -> web.Response:
        data = await self.api.get("/api/peers")
        return await self.page(
            "peers.html",
            "Peers",
            "peers",
            peers=data.get("peers", []),
            banned=data.get("banned", []),
            known=data.get("known_addresses", []),
        )

    async def search(self, request: web.Request) -> web.Response:
        q = request.query.get("q", "").strip()
        if not q:
            raise PageError(
                400,
                "Type a block height, a block or transaction hash, an address (pw…) or a task id.",
            )
        if len(q) > 200:
            raise PageError(
                400, "That is too long to be a height, a hash, an address or a task id."
            )
        if q.startswith("pw"):
            raise web.HTTPFound(f"/account/{quote(q, safe='')}")
        if q.isascii() and q.isdigit() and len(q) != 64:
            raise web.HTTPFound(f"/block/{q}")
        if _HEX64.fullmatch(q):
            q = q.lower()
            for api_path, page in (
                ("/api/blocks/", "/block/"),
                ("/api/tasks/", "/task/"),
                ("/api/txs/", "/tx/"),
            ):
                if await self.api.get_or_none(api_path + q) is not None:
                    raise web.HTTPFound(page + q)
            raise PageError(404, f"No block, task or transaction {q} is known to this node.")
        raise PageError(
            400, f"{q[:80]!r} is not a height, a 64-digit hash, an address (pw…) or a task id."
        )

    async def image(self, request: web.Request) -> web.StreamResponse:
        m = request.match_info
        block_hash = m["block"].lower()
        if not _HEX64.fullmatch(block_hash) or not all(
            _SMALL_INT.fullmatch(m[k]) for k in ("claim", "unit", "image")
        ):
            raise PageError(
                404,
                "No such image: expected /img/BLOCK_HASH/CLAIM/UNIT/IMAGE.png with small decimal "
                "numbers.",
            )
        claim_index, unit, image = int(m["claim"]), int(m["unit"]), int(m["image"])
        etag = f'"{block_hash}-{claim_index}-{unit}-{image}"'
        if request.headers.get("If-None-Match") == etag:
            return web.Response(status=304, headers={"ETag": etag})
        key = (block_hash, claim_index, unit)
        found = self.gallery.cached(key, image + 1)
        if found is None:
            block = await self.api.get(f"/api/blocks/{block_hash}")
            claims = block.get("work", [])
            if claim_index >= len(claims):
                raise PageError(
                    404,
                    f"Block {block_hash} has {len(claims)} work claim(s); there is no claim "
                    f"{claim_index}.",
                )
            claim = claims[claim_index]
            task = await self.api.get(f"/api/tasks/{claim['task_id']}")
            spec = parse_task_spec(task)
            if not isinstance(spec, RenderSpec):
                raise PageError(
                    404, f"Task {claim['task_id']} is not a render task: it has no images."
                )
            if unit >= claim["unit_count"] or image >= spec.images_per_unit:
                raise PageError(
                    404,
                    f"The claim has units 0 .. {claim['unit_count'] - 1} of "
                    f"{spec.images_per_unit} image(s) each.",
                )
            trace = await self.api.get(f"/api/blocks/{block_hash}/trace", offset=unit, limit=1)
            leaf = trace["claims"][claim_index]["leaves"][0]
            job = UnitJob(
                key, bytes.fromhex(leaf["seed"]), spec, bytes.fromhex(leaf["digest"]), image + 1
            )
            found = (await self.gallery.render([job]))[0]
            if found is None:  # one image always fits the budget; kept for safety
                raise PageError(503, "This image is over the rendering budget of one request.")
        return web.Response(
            body=found.pngs[image],
            content_type="image/png",
            headers={"Cache-Control": "public, max-age=31536000, immutable", "ETag": etag},
        )


def mount(app: web.Application, api_url: str) -> Explorer:
    """Add the explorer's routes, static files and error pages to the API's application."""
    from p2p.explorer.views import STATIC

    explorer = Explorer(ApiSource(api_url))
    app.middlewares.append(explorer.errors)
    r = app.router
    r.add_get("/", explorer.home)
    r.add_get("/blocks", explorer.blocks)
    r.add_get("/block/{id}", explorer.block)
    r.add_get("/tx/{id}", explorer.tx)
    r.add_get("/account/{address}", explorer.account)
    r.add_get("/tasks", explorer.tasks)
    r.add_get("/task/{id}", explorer.task)
    r.add_get("/peers", explorer.peers)
    r.add_get("/search", explorer.search)
    r.add_get("/img/{block}/{claim}/{unit}/{image:[^/]+}.png", explorer.image)
    r.add_static("/static/", STATIC, append_version=False)
    app.on_cleanup.append(explorer.close)
    return explorer
