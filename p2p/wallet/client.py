"""A small synchronous client of the node's HTTP API (stdlib urllib, no extra dependency).

Errors are the user's: NodeUnreachable names the URL; a rejected transaction carries the node's
reason (TxRejectedByNode, or InsufficientBalance when the node says the balance does not cover
it); an unknown task or transaction is NotFound; anything else the node answers is NodeError.
"""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from typing import Any

from p2p.wallet.errors import (
    InsufficientBalance,
    NodeError,
    NodeUnreachable,
    NotFound,
    NotReady,
    TxRejectedByNode,
    UserError,
)

DEFAULT_API_PORT = 8080  # `pouw node --api` default
DEFAULT_NODE_URL = f"http://127.0.0.1:{DEFAULT_API_PORT}"
NODE_URL_ENV = "POUW_NODE"
MAX_RESULT_BYTES = 256 << 20


def resolve_node_url(option: str | None = None) -> str:
    """--node, else $POUW_NODE, else the local node's default API address; "HOST:PORT" gets
    http://."""
    text = (option or os.environ.get(NODE_URL_ENV) or DEFAULT_NODE_URL).strip()
    if "://" not in text:
        text = "http://" + text
    parsed = urllib.parse.urlsplit(text)
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        raise UserError(f"--node {option or text!r}: expected a URL such as {DEFAULT_NODE_URL}")
    try:
        _ = parsed.port  # reading it checks it
    except ValueError:
        raise UserError(f"--node {option or text!r}: bad port") from None
    return text.rstrip("/")


@dataclass(frozen=True)
class Blob:
    data: bytes
    headers: dict[str, str]


class NodeClient:
    def __init__(self, base_url: str, timeout: float = 30.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout

    # --- transport -------------------------------------------------------------------------------

    def _request(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        content_type: str | None = None,
        timeout: float | None = None,
    ) -> tuple[bytes, dict[str, str]]:
        url = self.base_url + path
        req = urllib.request.Request(url, data=body, method=method)
        if content_type:
            req.add_header("Content-Type", content_type)
        req.add_header("Accept", "application/json")
        try:
            with urllib.request.urlopen(req, timeout=timeout or self.timeout) as resp:
                data = resp.read(MAX_RESULT_BYTES + 1)
                if len(data) > MAX_RESULT_BYTES:
                    raise NodeError(f"{url}: answer larger than {MAX_RESULT_BYTES} bytes")
                return data, {k.lower(): v for k, v in resp.headers.items()}
        except urllib.error.HTTPError as exc:
            raise self._http_error(url, exc.code, exc.read()) from None
        except urllib.error.URLError as exc:
            reason = (
                exc.reason.strerror
                if isinstance(exc.reason, OSError) and exc.reason.strerror
                else exc.reason
            )
            raise NodeUnreachable(
                f"cannot reach the node at {self.base_url} ({reason}); is `pouw node` running? "
                "(--node URL)"
            ) from None
        except TimeoutError:
            raise NodeUnreachable(
                f"the node at {self.base_url} did not answer within {timeout or self.timeout:.0f} s"
            ) from None
        except (ConnectionError, OSError) as exc:
            raise NodeUnreachable(f"cannot reach the node at {self.base_url} ({exc})") from None

    @staticmethod
    def _http_error(url: str, status: int, raw: bytes) -> UserError:
        try:
            message = json.loads(raw).get("error") or raw.decode(errors="replace")
        except (ValueError, AttributeError):
            message = raw.decode(errors="replace")[:200] or f"HTTP {status}"
        if status == 404:
            return NotFound(message)
        if status == 409:
            return NotReady(message)
        return NodeError(f"the node answered HTTP {status} for {url}: {message}", status, message)

    def get_json(self, path: str, **query: Any) -> Any:
        q = {k: v for k, v in query.items() if v is not None}
        full = path + ("?" + urllib.parse.urlencode(q) if q else "")
        data, _ = self._request("GET", full)
        try:
            return json.loads(data)
        except ValueError:
            raise NodeError(f"{self.base_url}{full}: the node's answer is not JSON") from None

    # --- the API ---------------------------------------------------------------------------------

    def status(self) -> dict:
        return self.get_json("/api/status")

    def params(self) -> dict:
        return self.get_json("/api/params")

    def fees(self) -> dict:
        """The node's minimum relay fee rate and its fee estimate (base units per byte)."""
        return self.get_json("/api/fees")

    def account(self, address: str, proof: bool = False) -> dict:
        return self.get_json(f"/api/accounts/{address}", proof=1 if proof else None)

    def headers(self, start: int, limit: int = 2_000) -> dict:
        """Canonical header encodings (hex) of the node's best chain from `start`."""
        return self.get_json("/api/headers", start=start, limit=limit)

    def history(self, address: str, offset: int = 0, limit: int = 20) -> dict:
        return self.get_json(f"/api/accounts/{address}/txs", offset=offset, limit=limit)

    def tx(self, txid: str) -> dict:
        return self.get_json(f"/api/txs/{txid}")

    def submit_tx(self, raw: bytes) -> dict:
        """POST a signed transaction; the node's refusal becomes TxRejectedByNode with its
        reason."""
        try:
            data, _ = self._request(
                "POST", "/api/txs", body=raw, content_type="application/octet-stream"
            )
        except NodeError as exc:
            if exc.status != 400:
                raise
            reason = exc.detail.removeprefix("rejected: ")
            if "does not cover" in reason:
                raise InsufficientBalance(f"insufficient balance: the node says {reason}") from None
            raise TxRejectedByNode(reason) from None
        return json.loads(data)

    def tasks(self) -> dict:
        return self.get_json("/api/tasks")

    def task(self, task_id: str) -> dict:
        return self.get_json(f"/api/tasks/{task_id}")

    def task_metrics(self, task_id: str, state: str | None = None) -> dict:
        """Held-out metrics of the task's current state, or of the state with hash `state`."""
        return self.get_json(f"/api/tasks/{task_id}/metrics", state=state)

    def task_manifest(self, task_id: str, offset: int = 0, limit: int = 100) -> dict:
        return self.get_json(f"/api/tasks/{task_id}/manifest", offset=offset, limit=limit)

    def task_result(self, task_id: str, partial: bool = False) -> Blob:
        path = f"/api/tasks/{task_id}/result" + ("?partial=1" if partial else "")
        data, headers = self._request("GET", path, timeout=max(self.timeout, 120.0))
        return Blob(data, headers)
