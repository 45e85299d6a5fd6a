"""The node's own files in its data directory: its key, the API's admin cookie, the chain store's
directory, and the probe that tells whether the disk takes writes again after a write error.
(The PID lock and the runtime file are the node's life around the chain: p2p/lifecycle.py.)"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from chain.keys import PrivateKey
from p2p.lifecycle import COOKIE_FILE

__all__ = [
    "CHAIN_DIR",
    "COOKIE_FILE",
    "KEY_FILE",
    "disk_takes",
    "load_or_create_key",
    "write_cookie",
]

KEY_FILE = "node.key"  # the node's Ed25519 key (hex), mode 0600; made at the first start
CHAIN_DIR = "chain"  # the LevelDB chain store


def load_or_create_key(path: Path) -> PrivateKey:
    if path.exists():
        return PrivateKey.from_bytes(bytes.fromhex(path.read_text().strip()))
    key = PrivateKey.generate()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(key.to_bytes().hex() + "\n")
    return key


def write_cookie(path: Path) -> str:
    token = secrets.token_hex(32)
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(token + "\n")
    tmp.replace(path)
    return token


def disk_takes(path: Path, size: int) -> bool:
    """Whether `size` bytes can be written and synced at `path` (removed again)."""
    try:
        with open(path, "wb") as f:
            f.write(b"\0" * size)
            f.flush()
            os.fsync(f.fileno())
        return True
    except OSError:
        return False
    finally:
        try:
            path.unlink()
        except OSError:
            pass
