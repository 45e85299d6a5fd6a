"""Constants and small helpers shared by the wallet tests."""

from __future__ import annotations

import json
from dataclasses import dataclass

TEST_SCRYPT_N = 1 << 12  # the default is 2^17; tests only need the same code path, faster
PASSWORD = "correct horse battery staple"


@dataclass
class Result:
    """What one `pouw ...` run gave: exit code, stdout, stderr."""

    code: int
    out: str
    err: str

    def json(self):
        return json.loads(self.out)
