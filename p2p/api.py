"""The node's HTTP API: JSON under /api, Prometheus text at /metrics, an OpenAPI 3 document.

Every route is declared once in ROUTES with its OpenAPI description; the application and the
document are both built from that table, and a test checks the running server against the
document. Read routes are public; /api/admin/* need `Authorization: Bearer <token>` with the
token from the cookie file in the data directory.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import time
from collections.abc import Awaitable, Callable, Collection
from dataclasses import asdict, dataclass, field
from dataclasses import fields as dataclass_fields
from typing import TYPE_CHECKING, Any, Protocol

from aiohttp import web

from chain.address import AddressError, format_address, parse_address
from chain.block import Block
from chain.encoding import DecodeError
from chain.mempool import TxRejected
from chain.state import TaskRecord, work_id
from chain.storage import STATUS_NAMES, CorruptRecord, StoreCorrupt
from chain.tx import SubmitTask, Transaction, Transfer
from chain.types import Address
from consensus.market import active_task, credited_line, initial_state, task_for_spec
from consensus.shares import share_miner
from p2p.api_proofs import MAX_HEADERS_PAGE, account_proof_json, headers_page, tip_state
from p2p.metrics import CONTENT_TYPE_LATEST
from useful_work.hashing import ZERO_HASH
from useful_work.trace import Leaf

if TYPE_CHECKING:
    from chain.mempool import Mempool
    from chain.storage import ChainStore
    from consensus.audit import Auditor
    from consensus.chainstate import ChainState
    from consensus.miner import Miner
    from consensus.params import ConsensusParams
    from p2p.metrics import NodeMetrics
    from p2p.peer import BanList, Peer
    from p2p.shares import ShareRelay
    from p2p.sync import Sync
    from p2p.txindex import TxIndex


class NodeView(Protocol):
    """What the API reads and drives of a running node (p2p.node.Node is one); nothing else."""

    params: ConsensusParams
    chain: ChainState
    store: ChainStore
    mempool: Mempool
    sync: Sync
    txindex: TxIndex
    metrics: NodeMetrics
    miner: Miner
    auditor: Auditor | None
    shares: ShareRelay | None  # share-claim relay (None until the node has started)
    bans: BanList
    token: str  # the admin cookie
    device: str
    started_at: float
    listen_addr: str
    miner_address: bytes
    storage_failure: tuple[str, str] | None

    @property
    def addresses(self) -> Collection[str]: ...  # the address book: HOST:PORT of known peers

    @property
    def mining_enabled(self) -> bool: ...

    @property
    def mining_error(self) -> str | None: ...

    @property
    def mining_state(self) -> str: ...

    def live_peers(self) -> list[Peer]: ...

    def set_mining(self, enabled: bool) -> None: ...

    def add_peer(self, addr: str) -> None: ...

    def request_stop(self, why: str = ...) -> None: ...

    def storage_failed(self, exc: BaseException) -> None: ...


Handler = Callable[[NodeView, web.Request], Awaitable[web.StreamResponse]]
MAX_PAGE = 100
MIN_PREFIX = 4  # hex digits of an id prefix (task and transaction ids)


@dataclass(frozen=True)
class Route:
    method: str
    path: str
    handler: Handler
    summary: str
    admin: bool = False
    params: tuple[tuple[str, str, str], ...] = ()  # (name, in, description)
    body: str = ""  # description of the JSON request body
    responses: dict[str, str] = field(default_factory=lambda: {"200": "OK"})
    content: str = "application/json"


class ApiError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def _json(data: Any, status: int = 200) -> web.Response:
    return web.json_response(
        data, status=status, dumps=lambda d: json.dumps(d, separators=(",", ":"))
    )


def _hex32(text: str, what: str) -> bytes:
    try:
        raw = bytes.fromhex(text)
    except ValueError:
        raise ApiError(400, f"{what}: not hex") from None
    if len(raw) != 32:
        raise ApiError(400, f"{what}: expected 32 bytes (64 hex digits), got {len(raw)}")
    return raw


def _id_or_prefix(text: str, what: str) -> tuple[bytes | None, str]:
    """(the full 32-byte id, "") for 64 hex digits, else (None, the lower-case prefix) for a
    shorter one."""
    t = text.strip().lower()
    if len(t) == 64:
        return _hex32(t, what), ""
    if not MIN_PREFIX <= len(t) < 64 or any(c not in "0123456789abcdef" for c in t):
        raise ApiError(
            400,
            f"{what}: expected 64 hex digits or a unique prefix of at least {MIN_PREFIX}, "
            f"got {text!r}",
        )
    return None, t


def _unique(prefix: str, candidates: Any, what: str) -> bytes:
    """The one candidate id starting with `prefix`: 404 for none, 400 naming a few for several."""
    found = sorted({c for c in candidates if c.hex().startswith(prefix)})
    if not found:
        raise ApiError(404, f"no {what} with id prefix {prefix}")
    if len(found) > 1:
        names = ", ".join(c.hex()[: len(prefix) + 4] for c in found[:4])
        raise ApiError(
            400,
            f"{what} id prefix {prefix} is ambiguous: {len(found)} match "
            f"({names}{', ...' if len(found) > 4 else ''})",
        )
    return found[0]


def _int_arg(request: web.Request, name: str, default: int, low: int, high: int) -> int:
    text = request.query.get(name)
    if text is None:
        return default
    try:
        value = int(text)
    except ValueError:
        raise ApiError(400, f"{name}: not an integer") from None
    if not low <= value <= high:
        raise ApiError(400, f"{name}: {value} out of range {low} .. {high}")
    return value


def _address(text: str) -> bytes:
    try:
        return parse_address(text)
    except AddressError as exc:
        raise ApiError(400, f"address: {exc}") from None


# --- JSON views ----------------------------------------------------------------------------------


def tx_json(tx: Transaction) -> dict:
    out: dict[str, Any] = {
        "txid": tx.txid.hex(),
        "kind": "transfer"
        if isinstance(tx.payload, Transfer)
        else "submit-task"
        if isinstance(tx.payload, SubmitTask)
        else "fraud-proof",
        "from": format_address(tx.sender),
        "nonce": tx.nonce,
        "fee": tx.fee,
        "size": tx.size,
    }
    if isinstance(tx.payload, Transfer):
        out.update(to=format_address(tx.payload.to), amount=tx.payload.amount)
    elif isinstance(tx.payload, SubmitTask):
        out.update(bounty=tx.payload.bounty, spec=tx.payload.spec.hex())
    else:
        p = tx.payload
        out.update(
            block=p.block_hash.hex(),
            claim=p.claim_index,
            unit=p.unit_index,
            state_bytes=len(p.state),
        )
    return out


def record_json(record: Any) -> dict:
    """A record's fields by name, bytes as hex: new fields show up without a change here."""
    return {
        f.name: (v.hex() if isinstance(v, bytes) else v)
        for f in dataclass_fields(record)
        for v in (getattr(record, f.name),)
    }


def block_summary(node: NodeView, block: Block) -> dict:
    h = block.header
    entry = node.chain.entry(block.hash)
    times = node.sync.block_times.get(block.hash)
    return {
        "hash": block.hash.hex(),
        "height": h.height,
        "prev_hash": h.prev_hash.hex(),
        "time_ms": h.time_ms,
        "miner": format_address(h.miner),
        "payout": format_address(h.payout),
        "units": sum(c.unit_count for c in h.work),
        "tasks": [c.task_id.hex() for c in h.work],
        "txs": len(block.txs),
        "status": STATUS_NAMES.get(entry.status, "?") if entry else "unknown",
        "on_best_chain": node.chain.on_best_chain(block.hash),
        # Units a verifier re-executes (the winner and the spot checks: the opened ones), and the
        # milliseconds this node spent validating the block (null if not since start).
        "reexecuted": sum(len(p.openings) for p in block.proofs),
        "verify_ms": times[2] if times is not None and len(times) > 2 else None,
    }


def block_json(node: NodeView, block: Block) -> dict:
    h = block.header
    out = block_summary(node, block)
    entry = node.chain.entry(block.hash)
    out.update(
        target=f"{h.target:064x}",
        chain_work=str(entry.chain_work) if entry else None,
        miner_key=h.miner_key.hex(),
        tx_root=h.tx_root.hex(),
        state_root=h.state_root.hex(),
        work=[record_json(c) for c in h.work],
        openings=[[o.unit_index for o in p.openings] for p in block.proofs],
        shares=[share_claim_json(node, block, i) for i in range(len(block.shares))],
        pruned=node.store.is_pruned(block.hash),
        transactions=[tx_json(tx) for tx in block.txs],
        confirmations=node.chain.tip.height - h.height + 1 if out["on_best_chain"] else 0,
        reason=entry.reason if entry else "",
    )
    # When this node first had the body and first connected it (Unix ms; null if not seen since
    # start).
    received_ms, connected_ms = (node.sync.block_times.get(block.hash) or [None, None])[:2]
    out.update(received_ms=received_ms, connected_ms=connected_ms)
    return out


def share_claim_json(node: NodeView, block: Block, i: int) -> dict:
    """Share claim `i` of a block: who found it, its shares and units, where it is paid, and
    (while the block's reward is pending) what it earns."""
    claim = block.shares[i]
    pending = node.chain.state.rewards.get(block.header.height)
    paid = (
        pending.claims[i]
        if pending is not None
        and pending.work_id == work_id(block.header)
        and i < len(pending.claims)
        else None
    )
    return {
        "index": len(block.header.work) + i,  # the numbering of fraud proofs' claim_index
        "claim_id": claim.claim_id.hex(),
        "miner": format_address(share_miner(claim)),
        "payout": format_address(claim.payout),
        "task_id": claim.task_id.hex(),
        "attempt": claim.attempt,
        "shares": list(claim.shares),
        "units": len(claim.leaves),
        "opened": [o.unit_index for o in claim.openings],
        "reward": paid.amount if paid is not None else None,
        "bounty": paid.share if paid is not None else None,
    }


def task_json(node: NodeView, task: TaskRecord) -> dict:
    try:
        active = active_task(node.chain.state).task_id == task.task_id
    except ValueError:
        active = False
    try:
        kind = task_for_spec(task.spec).spec.kind
    except Exception:  # noqa: BLE001 - display only
        kind = "?"
    return {
        "task_id": task.task_id.hex(),
        "kind": kind,
        "owner": format_address(task.owner),
        "spec": task.spec.hex(),
        "default": task.units_total == 0,
        "bounty": task.bounty,
        "paid": task.paid,
        "units_total": task.units_total,
        "units_done": task.units_done,
        "state_hash": task.state_hash.hex(),
        "created_height": task.created_height,
        "completed_height": task.completed_height,
        "status": "open" if task.is_open else "done",
        "active": active,
    }


def pending_task_json(node: NodeView, tx: Transaction) -> dict:
    """A task whose submit transaction is still in the mempool: what the task will be once mined."""
    payload = tx.payload
    assert isinstance(payload, SubmitTask)
    try:
        task = task_for_spec(payload.spec)
        kind, units_total = task.spec.kind, task.units_total
    except Exception:  # noqa: BLE001 - display only; the mempool checked the spec
        kind, units_total = "?", 0
    return {
        "task_id": tx.txid.hex(),
        "kind": kind,
        "owner": format_address(tx.sender),
        "spec": payload.spec.hex(),
        "default": False,
        "bounty": payload.bounty,
        "paid": 0,
        "units_total": units_total,
        "units_done": 0,
        "state_hash": ZERO_HASH.hex(),
        "created_height": None,
        "completed_height": 0,
        "status": "pending",
        "active": False,
        "fee": tx.fee,
        "blocks": 0,
    }


def _pending_tasks(node: NodeView) -> dict[bytes, Transaction]:
    return {tx.txid: tx for tx in node.mempool.transactions() if isinstance(tx.payload, SubmitTask)}


def _credited(node: NodeView, task: TaskRecord) -> tuple[list[tuple[int, bytes]], int]:
    """(the task's credited blocks, oldest first; how many of its blocks a fraud proof
    uncredited)."""
    with node.chain.lock:  # the task's record and the height it holds at: a block connected
        # after it would look uncredited (a fraud proof's roll-back) to the line below
        task = node.chain.state.tasks.get(task.task_id) or task
        height = node.chain.tip.height
    worked = [(h, b) for h, b in node.store.blocks_for_task(task.task_id) if h <= height]
    line = credited_line(worked, task, node.chain.get_block)
    return line, len(worked) - len(line)


def audit_json(node: NodeView, line: list[tuple[int, bytes]], rolled_back: int) -> dict:
    """Whether this node's auditor replayed every unit of the task's credited blocks."""
    auditor = node.auditor
    audited = sum(1 for _, h in line if auditor is not None and auditor.audited(h) == "ok")
    return {
        "auditing": auditor is not None,
        "blocks": len(line),
        "audited_blocks": audited,
        "fully_audited": auditor is not None and audited == len(line),
        "rolled_back_blocks": rolled_back,
    }


def _task_state_blob(node: NodeView, task: TaskRecord) -> bytes | None:
    if task.state_hash == ZERO_HASH:
        return initial_state(task.spec)
    return node.store.get_blob(task.state_hash)


# --- handlers ------------------------------------------------------------------------------------


def sync_json(node: NodeView) -> dict:
    """syncing (with progress) while a heavier chain's blocks arrive; else no-peers or synced."""
    tip, progress = node.chain.tip.height, node.sync.progress
    target = max(progress.target_height, tip)
    rate = progress.blocks_per_second
    if progress.syncing and target > tip:
        state = "syncing"
    else:
        state = "synced" if node.live_peers() else "no-peers"
    return {
        "state": state,
        "height": tip,
        "target_height": target,
        "progress": round(tip / target, 4) if target else 1.0,
        "blocks_per_second": round(rate, 2),
        "eta_s": round((target - tip) / rate) if state == "syncing" and rate > 0 else None,
    }


async def get_status(node: NodeView, request: web.Request) -> web.Response:
    tip = node.chain.tip
    try:
        task = task_json(node, active_task(node.chain.state))
    except ValueError:
        task = None
    return _json(
        {
            "network": node.params.network,
            "chain_id": node.chain.chain_id.hex(),
            "genesis": node.chain.genesis.block.hash.hex(),
            "height": tip.height,
            "best_hash": tip.hash.hex(),
            "chain_work": str(tip.chain_work),
            "header_height": node.sync.best_header.height,
            "peers": len(node.live_peers()),
            "mining": node.mining_enabled and node.storage_failure is None,
            "mining_state": node.mining_state,
            "mining_error": node.mining_error,
            "storage": {
                "state": node.storage_failure[0] if node.storage_failure else "ok",
                "error": node.storage_failure[1] if node.storage_failure else None,
            },
            "miner_address": format_address(node.miner_address),
            "units_mined": node.miner.stats.units,
            "mining_seconds": round(node.miner.stats.unit_seconds, 3),
            "share_units_checked": node.shares.pool.units_checked if node.shares is not None else 0,
            "mining_cpu_seconds": round(node.miner.stats.unit_cpu_seconds, 3),
            "share_verify_cpu_seconds": (
                round(node.shares.pool.cpu_seconds, 3) if node.shares is not None else 0.0
            ),
            "block_verify_cpu_seconds": round(node.sync.block_cpu_seconds, 3),
            "blocks_mined": node.miner.stats.blocks,
            "sync": sync_json(node),
            "prune": node.chain.prune_keep,
            "assume_valid": {
                "block": (node.chain.assume_valid or b"").hex() or None,
                "connected_without_reexecution": node.chain.assumed_connects,
            },
            "active_task": task,
            "mempool": {"transactions": len(node.mempool), "bytes": node.mempool.total_bytes},
            "device": node.device,
            "audit": _auditor_json(node),
            "listen": node.listen_addr,
            "uptime_s": round(__import__("time").time() - node.started_at, 1),
        }
    )


def _auditor_json(node: NodeView) -> dict | None:
    auditor = node.auditor
    if auditor is None:
        return None
    st = auditor.stats
    return {
        "share": auditor.share,
        "units": st.units,
        "blocks": st.blocks,
        "proofs_found": st.proofs_found,
        "units_per_second": round(st.units / st.seconds, 2) if st.seconds else None,
        "lag_blocks": auditor.lag(),
    }


async def get_fees(node: NodeView, request: web.Request) -> web.Response:
    room = node.params.max_block_bytes // 2  # the share of a block the miner gives transactions
    return _json(
        {
            "min_relay_fee_rate": node.mempool.min_fee_rate,
            "estimate_fee_rate": node.mempool.fee_estimate(room),
            "unit": "base units per encoded transaction byte (1 POUW = 10^8 base units)",
            "block_room_bytes": room,
            "mempool": {"transactions": len(node.mempool), "bytes": node.mempool.total_bytes},
            "height": node.chain.tip.height,
        }
    )


async def _block_by_id(node: NodeView, ident: str) -> Block:
    if (
        ident.isascii() and ident.isdigit() and len(ident) != 64
    ):  # 64 digits: a hash that happens to be all digits
        at = (
            node.chain.hash_at(int(ident)) if len(ident) <= 20 else None
        )  # int() refuses 4300+ digits
        if at is None:
            raise ApiError(404, f"no block at height {ident} (tip {node.chain.tip.height})")
        h: bytes = at
    else:
        h = _hex32(ident, "block hash")
    block = await asyncio.to_thread(node.chain.get_block, h)
    if block is None:
        raise ApiError(404, f"block {ident} not found")
    return block


async def get_block(node: NodeView, request: web.Request) -> web.Response:
    block = await _block_by_id(node, request.match_info["id"])
    return _json(block_json(node, block))


MAX_LEAVES_PAGE = 500


async def get_block_trace(node: NodeView, request: web.Request) -> web.Response:
    from consensus.tickets import challenged_units, ticket
    from useful_work.trace import prefix_commitments, unit_seed

    block = await _block_by_id(node, request.match_info["id"])
    offset = _int_arg(request, "offset", 0, 0, 1 << 32)
    limit = _int_arg(request, "limit", 100, 1, MAX_LEAVES_PAGE)
    if node.store.is_pruned(block.hash):
        raise ApiError(
            410,
            f"block {block.header.height} is pruned here: this node keeps the openings "
            f"of only the last {node.chain.prune_keep} blocks (its header, "
            "transactions and leaves are kept)",
        )
    h = block.header
    claims = []
    for index, (claim, proof) in enumerate(zip(h.work, block.proofs)):
        t = ticket(h.prev_hash, h.miner, claim.trace_root)
        page = proof.leaves[offset : offset + limit]
        prefixes = prefix_commitments(proof.leaves[: offset + len(page)])
        seeds = [
            unit_seed(h.prev_hash, h.miner, claim.attempt, u, prefixes[u], leaf.commitment)
            for u, leaf in enumerate(page, start=offset)
        ]
        claims.append(
            {
                **record_json(claim),
                "index": index,
                "ticket": t.hex(),
                "winner": claim.unit_count - 1,
                "challenged": challenged_units(t, claim.unit_count, node.params.spot_checks),
                "opened": [o.unit_index for o in proof.openings],
                "offset": offset,
                "leaves": [
                    {"unit": u, **record_json(leaf), "seed": seed.hex()}
                    for (u, leaf), seed in zip(enumerate(page, start=offset), seeds)
                ],
            }
        )
    return _json(
        {
            "hash": block.hash.hex(),
            "height": h.height,
            "spot_checks": node.params.spot_checks,
            "offset": offset,
            "limit": limit,
            "claims": claims,
        }
    )


async def get_blocks(node: NodeView, request: web.Request) -> web.Response:
    tip = node.chain.tip.height
    limit = _int_arg(request, "limit", 20, 1, MAX_PAGE)
    start = _int_arg(request, "start", max(0, tip - limit + 1), 0, 1 << 62)

    def load() -> list[dict]:
        out = []
        for height in range(start, min(tip, start + limit - 1) + 1):
            h = node.chain.hash_at(height)
            block = node.chain.get_block(h) if h else None
            if block is not None:
                out.append(block_summary(node, block))
        return out

    return _json(
        {"tip": tip, "start": start, "limit": limit, "blocks": await asyncio.to_thread(load)}
    )


async def get_tx(node: NodeView, request: web.Request) -> web.Response:
    txid, prefix = _id_or_prefix(request.match_info["id"], "txid")
    if txid is None:
        in_pool: list[bytes] = [tx.txid for tx in node.mempool.transactions()]
        txid = _unique(prefix, in_pool + node.txindex.txids(prefix), "transaction")
    pending = node.mempool.get(txid)
    if pending is not None:
        return _json({"status": "pending", "tx": tx_json(pending)})
    loc = node.txindex.locations.get(txid)
    if loc is None:
        raise ApiError(404, f"transaction {txid.hex()} not found")
    block = await asyncio.to_thread(node.chain.get_block, loc.block_hash)
    if block is None:
        raise ApiError(404, f"transaction {txid.hex()} not found")
    return _json(
        {
            "status": "confirmed",
            "block": loc.block_hash.hex(),
            "height": loc.height,
            "index": loc.index,
            "confirmations": node.chain.tip.height - loc.height + 1,
            "tx": tx_json(block.txs[loc.index]),
        }
    )


async def post_tx(node: NodeView, request: web.Request) -> web.Response:
    if request.content_type == "application/json":
        try:
            body = await request.json()
            raw = bytes.fromhex(body["tx"])
        except (ValueError, KeyError, TypeError):
            raise ApiError(
                400, 'body: expected {"tx": "<hex of the signed transaction>"}'
            ) from None
    else:
        raw = await request.read()
    try:
        tx = Transaction.from_bytes(raw)
    except DecodeError as exc:
        raise ApiError(400, f"malformed transaction: {exc}") from None
    try:
        await node.sync.submit_tx(tx)
    except TxRejected as exc:
        raise ApiError(400, f"rejected: {exc.reason}") from None
    return _json({"txid": tx.txid.hex(), "status": "pending"})


async def get_account(node: NodeView, request: web.Request) -> web.Response:
    address = _address(request.match_info["address"])
    state = node.chain.state
    proof = None
    if _int_arg(request, "proof", 0, 0, 1):
        found = tip_state(node.chain)
        if found is None:
            raise ApiError(503, "the tip moved while reading the proof: retry")
        state = found[0]
        proof = await asyncio.to_thread(account_proof_json, state, found[1], found[2], address)
    account = state.account(address)
    pending = node.mempool.pending(address)
    maturity = node.params.reward_maturity
    immature = [
        {"height": r.height, "amount": r.amount, "spendable_at_height": r.height + maturity}
        for r in state.immature(address)
    ]
    return _json(
        {
            "address": format_address(address),
            "balance": account.balance,
            "spendable": account.balance,
            "immature": sum(r["amount"] for r in immature),
            "immature_rewards": immature,
            "reward_maturity": maturity,
            "nonce": account.nonce,
            "pending_transactions": len(pending),
            "next_nonce": account.nonce + len(pending),
            **({"proof": proof} if proof is not None else {}),
        }
    )


async def get_headers(node: NodeView, request: web.Request) -> web.Response:
    limit = _int_arg(request, "limit", MAX_HEADERS_PAGE, 1, MAX_HEADERS_PAGE)
    start = _int_arg(request, "start", 0, 0, 1 << 62)
    return _json(await asyncio.to_thread(headers_page, node.chain, start, limit))


async def get_account_txs(node: NodeView, request: web.Request) -> web.Response:
    address = _address(request.match_info["address"])
    offset = _int_arg(request, "offset", 0, 0, 1 << 40)
    limit = _int_arg(request, "limit", 20, 1, MAX_PAGE)
    total, events = node.txindex.history(address, offset, limit)
    items = [
        {
            "kind": e.kind,
            "height": e.height,
            "block": e.block_hash.hex(),
            "txid": e.txid.hex() if e.txid else None,
            "amount": e.amount,
            "fee": e.fee,
            "counterparty": format_address(e.counterparty) if e.counterparty else None,
        }
        for e in events
    ]
    return _json(
        {
            "address": format_address(address),
            "total": total,
            "offset": offset,
            "limit": limit,
            "items": items,
        }
    )


async def get_tasks(node: NodeView, request: web.Request) -> web.Response:
    tasks = sorted(node.chain.state.tasks.values(), key=lambda t: (t.created_height, t.task_id))
    pending = sorted(_pending_tasks(node).values(), key=lambda tx: tx.txid)
    return _json(
        {
            "tasks": [task_json(node, t) for t in tasks],
            "pending": [pending_task_json(node, tx) for tx in pending],
        }
    )


def _task_or_pending(node: NodeView, request: web.Request) -> TaskRecord | Transaction:
    """The ledger's task for the id (or a unique prefix of it), else its submit transaction in
    the mempool."""
    task_id, prefix = _id_or_prefix(request.match_info["id"], "task id")
    tasks = node.chain.state.tasks
    if task_id is None:
        pending = _pending_tasks(node)
        task_id = _unique(prefix, list(tasks) + list(pending), "task")
    task = tasks.get(task_id)
    if task is not None:
        return task
    tx = node.mempool.get(task_id)
    if tx is not None and isinstance(tx.payload, SubmitTask):
        return tx
    raise ApiError(404, f"task {task_id.hex()} not found")


def _task(node: NodeView, request: web.Request) -> TaskRecord:
    found = _task_or_pending(node, request)
    if isinstance(found, Transaction):
        raise ApiError(
            409,
            f"task {found.txid.hex()} is pending: its transaction is in the mempool, not "
            "yet in a block",
        )
    return found


async def get_task(node: NodeView, request: web.Request) -> web.Response:
    found = _task_or_pending(node, request)
    if isinstance(found, Transaction):
        return _json({**pending_task_json(node, found), "state": None})
    task = found
    out = task_json(node, task)

    def describe() -> dict | None:
        blob = _task_state_blob(node, task)
        return task_for_spec(task.spec).describe_state(blob) if blob is not None else None

    out["state"] = await asyncio.to_thread(describe)
    line, rolled_back = await asyncio.to_thread(_credited, node, task)
    out["blocks"] = len(line)
    out["audit"] = audit_json(node, line, rolled_back)
    return _json(out)


async def get_task_result(node: NodeView, request: web.Request) -> web.StreamResponse:
    height = (
        node.chain.tip.height
    )  # read before the task: the state below is the task's at this height or later
    task = _task(node, request)
    partial = request.query.get("partial") in ("1", "true")
    if task.is_open and not partial:
        raise ApiError(
            409,
            f"task not complete ({task.units_done} of {task.units_total or 'open-ended'} "
            "units); ?partial=1 for its current state",
        )
    blob = await asyncio.to_thread(_task_state_blob, node, task)
    if blob is None:
        raise ApiError(404, "the task's state blob is not stored here")
    return web.Response(
        body=blob,
        content_type="application/octet-stream",
        headers={
            "X-Task-Status": "open" if task.is_open else "done",
            "X-State-Hash": task.state_hash.hex(),
            "X-Units-Done": str(task.units_done),
            "X-Height": str(max(height, task.created_height)),
        },
    )


MAX_TASK_BLOCKS_PAGE = 1000


async def get_task_blocks(node: NodeView, request: web.Request) -> web.Response:
    task = _task(node, request)
    offset = _int_arg(request, "offset", 0, 0, 1 << 40)
    limit = _int_arg(request, "limit", MAX_PAGE, 1, MAX_TASK_BLOCKS_PAGE)
    step = _int_arg(request, "step", 1, 1, 1 << 40)
    worked, _ = await asyncio.to_thread(_credited, node, task)
    picked = worked[offset::step][:limit]
    return _json(
        {
            "task_id": task.task_id.hex(),
            "total_blocks": len(worked),
            "offset": offset,
            "limit": limit,
            "step": step,
            "blocks": [{"height": height, "hash": h.hex()} for height, h in picked],
        }
    )


def _task_traces(
    block: Block | None, task_id: bytes
) -> list[tuple[int, Address, int, tuple[Leaf, ...], int]]:
    """(claim index, miner, attempt, leaves, unit count) of each of the block's traces on the
    task: the winner's (claim 0), then its share claims (1, 2, ...)."""
    if block is None:
        return []
    out = [
        (i, block.header.miner, c.attempt, p.leaves, c.unit_count)
        for i, (c, p) in enumerate(zip(block.header.work, block.proofs, strict=True))
        if c.task_id == task_id
    ]
    base = len(block.header.work)
    out += [
        (base + i, share_miner(s), s.attempt, s.leaves, len(s.leaves))
        for i, s in enumerate(block.shares)
        if s.task_id == task_id
    ]
    return out


async def get_task_manifest(node: NodeView, request: web.Request) -> web.Response:
    task = _task(node, request)
    offset = _int_arg(request, "offset", 0, 0, 1 << 40)
    limit = _int_arg(request, "limit", MAX_PAGE, 1, MAX_PAGE)

    def load() -> tuple[int, list[dict]]:
        worked, _ = _credited(node, task)  # blocks a fraud proof uncredited are not the task's
        first = 0
        for _, h in worked[:offset]:
            first += sum(n for *_, n in _task_traces(node.chain.get_block(h), task.task_id))
        out = []
        for height, h in worked[offset : offset + limit]:
            block = node.chain.get_block(h)
            if block is None:
                raise ApiError(404, f"block {h.hex()} of the task is not stored here")
            for index, miner, attempt, leaves, count in _task_traces(block, task.task_id):
                left = max(0, task.units_total - first)
                credited = min(count, left) if task.units_total else count
                out.append(
                    {
                        "height": height,
                        "hash": h.hex(),
                        "parent": block.header.prev_hash.hex(),
                        "miner": format_address(miner),
                        "claim": index,
                        "unit_count": count,
                        "attempt": attempt,
                        "first_unit": first,
                        "credited": credited,
                        "output_hash": leaves[-1].output_hash.hex(),
                        "block_state": block.header.task_state.hex(),
                        "digests": [leaf.digest.hex() for leaf in leaves],
                        "leaves": [leaf.to_bytes().hex() for leaf in leaves],
                    }
                )
                first += count
        return len(worked), out

    total, blocks = await asyncio.to_thread(load)
    return _json(
        {
            "task_id": task.task_id.hex(),
            "spec": task.spec.hex(),
            "units_total": task.units_total,
            "units_done": task.units_done,
            "state_hash": task.state_hash.hex(),
            "status": "open" if task.is_open else "done",
            "total_blocks": total,
            "offset": offset,
            "limit": limit,
            "blocks": blocks,
        }
    )


async def get_task_metrics(node: NodeView, request: web.Request) -> web.Response:
    from p2p.task_metrics import EvaluatorBusy, heldout_metrics
    from useful_work.trace import state_hash

    task = _task(node, request)
    if request.query.get("height", "") != "":
        # The task's state after the best chain's block at `height`: the output of that block's
        # claim on the task (what the ledger recorded). One evaluation per call at most, never
        # queued.
        height = _int_arg(request, "height", 0, 0, 1 << 62)
        block_hash = node.chain.hash_at(height)
        if block_hash is None:
            raise ApiError(404, f"no block at height {height} (tip {node.chain.tip.height})")

        def evaluate_at() -> dict:
            block = node.chain.get_block(block_hash)
            if block is None:
                raise ApiError(404, f"block {block_hash.hex()} is not stored here")
            # The block's task state: the merge of its winner's and share claims' outputs.
            outputs = [
                block.header.task_state for c in block.header.work if c.task_id == task.task_id
            ]
            if not outputs:
                raise ApiError(
                    404, f"the block at height {height} did not work on task {task.task_id.hex()}"
                )
            blob = node.store.get_blob(outputs[-1])
            if blob is None:
                raise ApiError(404, f"the task's state after height {height} is not stored here")
            try:
                heldout = heldout_metrics(task.spec, blob, wait=False)
            except EvaluatorBusy:
                raise ApiError(503, "another evaluation is running; retry in a moment") from None
            return {
                "task_id": task.task_id.hex(),
                "height": height,
                "block": block_hash.hex(),
                "state_hash": outputs[-1].hex(),
                "heldout": heldout,
            }

        return _json(await asyncio.to_thread(evaluate_at))

    wanted = request.query.get("state")
    pinned = _hex32(wanted, "state") if wanted else task.state_hash

    def evaluate() -> dict | None:
        if pinned == task.state_hash:
            blob = _task_state_blob(node, task)
        elif pinned == ZERO_HASH:
            blob = initial_state(task.spec)
        else:  # an earlier state of the task (e.g. the one a download took): stored by hash
            blob = node.store.get_blob(pinned)
            if blob is not None and state_hash(blob) != pinned:
                blob = None
        if blob is None:
            raise ApiError(404, f"state {pinned.hex()} is not stored here")
        try:
            return heldout_metrics(task.spec, blob)
        except Exception as exc:  # noqa: BLE001 - a stored blob of something else
            raise ApiError(
                400, f"state {pinned.hex()} is not a state of this task ({type(exc).__name__})"
            ) from None

    return _json(
        {
            "task_id": task.task_id.hex(),
            "state_hash": pinned.hex(),
            "units_done": task.units_done if pinned == task.state_hash else None,
            "heldout": await asyncio.to_thread(evaluate),
        }
    )


async def get_params(node: NodeView, request: web.Request) -> web.Response:
    p = node.params
    out: dict[str, Any] = {
        f.name: getattr(p, f.name)
        for f in dataclass_fields(p)
        if isinstance(getattr(p, f.name), (int, str))
    }
    out["default_task"] = {"kind": p.default_task.kind, **asdict(p.default_task)}
    out["allocations"] = [asdict(a) for a in p.allocations]
    return _json(out)


async def get_peers(node: NodeView, request: web.Request) -> web.Response:
    peers = [
        {
            "id": p.id,
            "address": p.remote,
            "listen": p.listen,
            "inbound": p.inbound,
            "agent": p.hello.agent if p.hello else "",
            "pruned": p.hello.pruned if p.hello else 0,
            "best_height": p.best_height,
            "score": p.score,
            "ping_ms": round(p.ping_ms, 2) if p.ping_ms is not None else None,
            "bytes_in": p.bytes_in,
            "bytes_out": p.bytes_out,
            "blocks_in_flight": node.sync.in_flight.count(p.id),
            "connected_at": int(p.connected_at),
        }
        for p in node.live_peers()
    ]
    return _json(
        {"peers": peers, "banned": node.bans.listing(), "known_addresses": sorted(node.addresses)}
    )


async def get_metrics(node: NodeView, request: web.Request) -> web.Response:
    resp = web.Response(body=node.metrics.render())
    resp.headers["Content-Type"] = CONTENT_TYPE_LATEST
    return resp


async def get_openapi(node: NodeView, request: web.Request) -> web.Response:
    return _json(openapi_document())


async def _json_body(request: web.Request) -> dict:
    try:
        body = await request.json()
    except (ValueError, UnicodeDecodeError):
        raise ApiError(400, "body: expected a JSON object") from None
    if not isinstance(body, dict):
        raise ApiError(400, "body: expected a JSON object")
    return body


async def admin_mining(node: NodeView, request: web.Request) -> web.Response:
    body = await _json_body(request)
    enabled = body.get("enabled")
    if not isinstance(enabled, bool):
        raise ApiError(400, 'body: expected {"enabled": true|false}')
    node.set_mining(enabled)
    return _json({"mining": node.mining_enabled})


async def admin_add_peer(node: NodeView, request: web.Request) -> web.Response:
    body = await _json_body(request)
    try:
        node.add_peer(str(body.get("address", "")))
    except ValueError as exc:
        raise ApiError(400, str(exc)) from None
    return _json({"added": body["address"]})


async def admin_stop(node: NodeView, request: web.Request) -> web.Response:
    asyncio.get_running_loop().call_later(0.1, node.request_stop, "admin stop call")
    return _json({"stopping": True})


_ID = ("id", "path", "block height (decimal) or block hash (64 hex digits)")
ROUTES: tuple[Route, ...] = (
    Route(
        "GET",
        "/api/status",
        get_status,
        "Network, height, best hash, chain work, peers, mining, sync state, the active task; "
        "mining, share-claim and block-processing CPU seconds",
    ),
    Route(
        "GET",
        "/api/blocks",
        get_blocks,
        "Block summaries by height, ascending",
        params=(
            ("start", "query", "first height (default: the last `limit` blocks)"),
            ("limit", "query", f"1 .. {MAX_PAGE}, default 20"),
        ),
    ),
    Route(
        "GET",
        "/api/blocks/{id}",
        get_block,
        "One block by height or hash (with received_ms and connected_ms: when this node "
        "first had its body and first connected it, Unix ms, null if not since start)",
        params=(_ID,),
        responses={"200": "OK", "400": "bad id", "404": "not found"},
    ),
    Route(
        "GET",
        "/api/fees",
        get_fees,
        "Fee policy and estimate: this node's minimum relay fee rate and the rate that "
        "gets a transaction into the next block now (base units per byte)",
    ),
    Route(
        "GET",
        "/api/blocks/{id}/trace",
        get_block_trace,
        "A block's work trace: per claim its ticket, winning, challenged and opened units, "
        "and a page of its leaves",
        params=(
            _ID,
            ("offset", "query", "first leaf (default 0)"),
            ("limit", "query", f"leaves, 1 .. {MAX_LEAVES_PAGE}, default 100"),
        ),
        responses={
            "200": "OK",
            "400": "bad id, offset or limit",
            "404": "not found",
            "410": "pruned here: the openings are deleted",
        },
    ),
    Route(
        "GET",
        "/api/txs/{id}",
        get_tx,
        "A transaction: pending or confirmed (with its block)",
        params=(
            ("id", "path", "transaction id (64 hex digits, or a unique prefix of at least 4)"),
        ),
        responses={"200": "OK", "400": "bad or ambiguous id", "404": "not found"},
    ),
    Route(
        "POST",
        "/api/txs",
        post_tx,
        'Submit a signed transaction (JSON {"tx": hex} or raw bytes)',
        body='{"tx": "<hex>"} or application/octet-stream',
        responses={
            "200": "accepted into the mempool",
            "400": "malformed or rejected, with the reason",
        },
    ),
    Route(
        "GET",
        "/api/accounts/{address}",
        get_account,
        "Balance and nonce of an address; with ?proof=1 also its record and state-tree "
        "proof against the tip's state root",
        params=(("address", "path", "checksummed address"), ("proof", "query", "1: add the proof")),
        responses={"200": "OK", "400": "bad address", "503": "the tip moved: retry"},
    ),
    Route(
        "GET",
        "/api/headers",
        get_headers,
        "Canonical header encodings (hex) of the best chain by height, ascending",
        params=(
            ("start", "query", "first height (default 0)"),
            ("limit", "query", f"1 .. {MAX_HEADERS_PAGE}, default {MAX_HEADERS_PAGE}"),
        ),
    ),
    Route(
        "GET",
        "/api/accounts/{address}/txs",
        get_account_txs,
        "The address's transactions and rewards, newest first",
        params=(
            ("address", "path", "checksummed address"),
            ("offset", "query", "items to skip"),
            ("limit", "query", f"1 .. {MAX_PAGE}"),
        ),
    ),
    Route(
        "GET",
        "/api/tasks",
        get_tasks,
        "All tasks on the ledger, and (pending) tasks whose submit transaction is in the mempool",
    ),
    Route(
        "GET",
        "/api/tasks/{id}",
        get_task,
        'One task with a description of its current state; status "pending" while its '
        "transaction is in the mempool",
        params=(
            (
                "id",
                "path",
                "task id (64 hex digits, or a unique prefix of at least 4; also for the "
                "routes below)",
            ),
        ),
        responses={"200": "OK", "400": "bad or ambiguous id", "404": "not found"},
    ),
    Route(
        "GET",
        "/api/tasks/{id}/result",
        get_task_result,
        "The task's result: its final state blob (?partial=1: the current state); headers "
        "X-State-Hash, X-Units-Done and X-Height name the state sent",
        params=(
            ("id", "path", "task id"),
            ("partial", "query", "1 to get an open task's current state"),
        ),
        responses={
            "200": "the state blob",
            "404": "not found",
            "409": "task not complete or pending",
        },
        content="application/octet-stream",
    ),
    Route(
        "GET",
        "/api/tasks/{id}/blocks",
        get_task_blocks,
        "Heights and hashes of the best chain's blocks that worked on the task, ascending "
        "(every `step`-th from `offset`)",
        params=(
            ("id", "path", "task id"),
            ("offset", "query", "blocks to skip"),
            ("limit", "query", f"1 .. {MAX_TASK_BLOCKS_PAGE}, default {MAX_PAGE}"),
            ("step", "query", "take every step-th block (default 1)"),
        ),
        responses={"200": "OK", "400": "bad offset, limit or step", "404": "not found"},
    ),
    Route(
        "GET",
        "/api/tasks/{id}/manifest",
        get_task_manifest,
        "The blocks that worked on the task (parent, miner, units, per-unit digests), so a "
        "result can be re-computed and checked",
        params=(
            ("id", "path", "task id"),
            ("offset", "query", "blocks to skip"),
            ("limit", "query", f"blocks, 1 .. {MAX_PAGE}"),
        ),
        responses={"200": "OK", "400": "bad offset or limit", "404": "not found"},
    ),
    Route(
        "GET",
        "/api/tasks/{id}/metrics",
        get_task_metrics,
        "Held-out metrics of a training task's current state, of an earlier one "
        "(?state=HASH), or of its state after the "
        "best chain's block at a height (?height=H: that block must have worked on it; 503 "
        "while another such evaluation "
        "runs: retry), for the chain's model and its plain PyTorch export; null for render tasks",
        params=(
            ("id", "path", "task id"),
            ("state", "query", "state hash to score (default: the task's current state)"),
            ("height", "query", "a height whose block worked on the task"),
        ),
        responses={
            "200": "OK",
            "400": "bad height, or not a state of this task",
            "404": "not found",
            "409": "task pending",
            "503": "busy evaluating: retry",
        },
    ),
    Route("GET", "/api/params", get_params, "The network's consensus parameters"),
    Route("GET", "/api/peers", get_peers, "Connected peers, bans and known addresses"),
    Route("GET", "/metrics", get_metrics, "Prometheus metrics", content="text/plain"),
    Route("GET", "/api/openapi.json", get_openapi, "This document"),
    Route(
        "POST",
        "/api/admin/mining",
        admin_mining,
        "Switch mining on or off",
        admin=True,
        body='{"enabled": true|false}',
        responses={"200": "OK", "400": "bad body", "401": "no or wrong token"},
    ),
    Route(
        "POST",
        "/api/admin/peers",
        admin_add_peer,
        "Add a peer to keep connected",
        admin=True,
        body='{"address": "HOST:PORT"}',
        responses={"200": "OK", "400": "bad address", "401": "no or wrong token"},
    ),
    Route(
        "POST",
        "/api/admin/stop",
        admin_stop,
        "Stop the node cleanly",
        admin=True,
        responses={"200": "stopping", "401": "no or wrong token"},
    ),
)


def _integer(low: int, high: int) -> dict:
    return {"type": "integer", "minimum": low, "maximum": high}


_HEX64 = "^[0-9a-fA-F]{64}$"
# Parameter schemas, as the handlers check them (_int_arg's bounds, the id parsers).
_PARAM_SCHEMAS: dict[str, dict] = {
    "start": _integer(0, 1 << 62),
    "offset": _integer(0, 1 << 40),
    "step": _integer(1, 1 << 40),
    "height": _integer(0, 1 << 62),
    "state": {"type": "string", "pattern": _HEX64},
    "partial": {"type": "string"},
    "address": {"type": "string", "minLength": 1},
}
_ROUTE_PARAM_SCHEMAS: dict[tuple[str, str], dict] = {
    ("/api/blocks/{id}/trace", "offset"): _integer(0, 1 << 32),
    ("/api/blocks/{id}", "id"): {"type": "string", "pattern": "^([0-9]{1,19}|[0-9a-fA-F]{64})$"},
    ("/api/blocks/{id}/trace", "id"): {
        "type": "string",
        "pattern": "^([0-9]{1,19}|[0-9a-fA-F]{64})$",
    },
}
_ERROR_SCHEMA = {
    "type": "object",
    "properties": {"error": {"type": "string"}},
    "required": ["error"],
}


def _param_schema(path: str, name: str, description: str) -> dict:
    if (path, name) in _ROUTE_PARAM_SCHEMAS:
        return _ROUTE_PARAM_SCHEMAS[(path, name)]
    if name == "limit":
        import re

        found = re.search(r"1 \.\. (\d+)", description)
        return _integer(1, int(found.group(1)) if found else 1 << 31)
    if name == "id":
        return {"type": "string", "pattern": "^[0-9a-fA-F]{4,64}$"}
    return _PARAM_SCHEMAS.get(name, {"type": "string"})


def _responses(r: Route) -> dict:
    codes = dict(r.responses)
    if r.params or r.body:
        codes.setdefault("400", "bad parameter or body")
    codes.setdefault("503", "storage failure or busy: retry later")
    out = {}
    for code, text in codes.items():
        if code == "200":
            schema = (
                {"type": "string", "format": "binary"}
                if r.content == "application/octet-stream"
                else {"type": "string"}
                if r.content != "application/json"
                else {"type": "object"}
            )
            out[code] = {"description": text, "content": {r.content: {"schema": schema}}}
        else:
            out[code] = {
                "description": text,
                "content": {"application/json": {"schema": _ERROR_SCHEMA}},
            }
    return out


def openapi_document() -> dict:
    paths: dict[str, dict] = {}
    for r in ROUTES:
        op: dict[str, Any] = {
            "summary": r.summary,
            "operationId": r.handler.__name__,
            "responses": _responses(r),
        }
        if r.params:
            op["parameters"] = [
                {
                    "name": n,
                    "in": where,
                    "required": where == "path",
                    "description": d,
                    "schema": _param_schema(r.path, n, d),
                }
                for n, where, d in r.params
            ]
        if r.body:
            op["requestBody"] = {
                "description": r.body,
                "required": True,
                "content": {"application/json": {"schema": {"type": "object"}}},
            }
        if r.admin:
            op["security"] = [{"cookieToken": []}]
        paths.setdefault(r.path, {})[r.method.lower()] = op
    return {
        "openapi": "3.0.3",
        "info": {
            "title": "pouw node API",
            "version": "1",
            "description": "JSON under /api; admin routes need the token from the data directory's "
            "api.cookie as a Bearer token.",
        },
        "paths": paths,
        "components": {"securitySchemes": {"cookieToken": {"type": "http", "scheme": "bearer"}}},
    }


def build_api(node: NodeView) -> web.Application:
    @web.middleware
    async def timed(request: web.Request, handler: Callable) -> web.StreamResponse:
        started = time.perf_counter()
        status = 500
        try:
            resp = await handler(request)
            status = resp.status
            return resp
        except web.HTTPException as exc:
            status = exc.status
            raise
        finally:
            info = request.match_info
            route = info.route.resource.canonical if info.route.resource is not None else "other"
            if not route.startswith(("/api", "/metrics")):
                route = "explorer"  # the web explorer's pages and files: one series
            node.metrics.api_seconds.labels(route, f"{status // 100}xx").observe(
                time.perf_counter() - started
            )

    @web.middleware
    async def errors(request: web.Request, handler: Callable) -> web.StreamResponse:
        try:
            return await handler(request)
        except ApiError as exc:
            resp = _json({"error": exc.message}, status=exc.status)
            if exc.status == 503:
                resp.headers["Retry-After"] = "1"
            return resp
        except (
            StoreCorrupt,
            CorruptRecord,
        ) as exc:  # damaged data met on a read: said once by the node, 503 here
            node.storage_failed(exc)
            resp = _json({"error": f"storage: {exc}"}, status=503)
            return resp
        except web.HTTPException as exc:
            if exc.status >= 400:
                resp = _json({"error": exc.reason}, status=exc.status)
                if "Allow" in exc.headers:  # 405: the methods the path takes
                    resp.headers["Allow"] = exc.headers["Allow"]
                return resp
            raise
        except Exception as exc:  # noqa: BLE001 - an API bug must not take the node down
            import logging

            logging.getLogger("pouw.api").exception("API error on %s", request.path)
            return _json({"error": f"internal error: {type(exc).__name__}"}, status=500)

    app = web.Application(middlewares=[timed, errors], client_max_size=1 << 20)

    def bind(route: Route) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
        async def handle(request: web.Request) -> web.StreamResponse:
            if route.admin:
                auth = request.headers.get("Authorization", "")
                given = auth[len("Bearer ") :] if auth.startswith("Bearer ") else ""
                if not given or not hmac.compare_digest(given.encode(), node.token.encode()):
                    raise ApiError(
                        401,
                        "admin call needs the token from the data directory's api.cookie "
                        "(Authorization: Bearer <token>)",
                    )
            return await route.handler(node, request)

        return handle

    for r in ROUTES:
        app.router.add_route(r.method, r.path, bind(r))
    return app
