"""Shares on a real devnet, measured: a thin wrapper of `pouw bench shares` (p2p/bench_shares.py).

.venv/bin/python scripts/bench_shares.py --blocks 30
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from p2p.bench_shares import main  # noqa: E402

if __name__ == "__main__":
    raise SystemExit(main())
