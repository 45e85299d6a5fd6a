"""Counter-based PRNG: Threefry-4x32 with 20 rounds, on int64 tensors, identical on any device.

Each value depends only on (seed, stream, index), never on call order, thread count or device,
so a verifier re-executing unit u draws exactly the numbers its miner drew. Words are 32-bit
values held in int64 tensors and masked after every addition, so nothing ever overflows.
"""

from __future__ import annotations

import torch

from useful_work.hashing import tagged_hash

MASK32 = 0xFFFFFFFF
_PARITY = 0x1BD11BDA
_ROTATIONS = ((10, 26), (11, 21), (13, 27), (23, 5), (6, 20), (17, 11), (25, 10), (18, 20))
_ROUNDS = 20


def _rotl(x: torch.Tensor, r: int) -> torch.Tensor:
    return ((x << r) | (x >> (32 - r))) & MASK32


def threefry4x32(counter: list[torch.Tensor], key: tuple[int, int, int, int]) -> list[torch.Tensor]:
    """Threefry-4x32-20 block function: four counter words in, four random words out."""
    ks = [*key, _PARITY ^ key[0] ^ key[1] ^ key[2] ^ key[3]]
    x = [(counter[i] + ks[i]) & MASK32 for i in range(4)]
    for r in range(_ROUNDS):
        ra, rb = _ROTATIONS[r % 8]
        if r % 2 == 0:
            x[0] = (x[0] + x[1]) & MASK32
            x[1] = _rotl(x[1], ra) ^ x[0]
            x[2] = (x[2] + x[3]) & MASK32
            x[3] = _rotl(x[3], rb) ^ x[2]
        else:
            x[0] = (x[0] + x[3]) & MASK32
            x[3] = _rotl(x[3], ra) ^ x[0]
            x[2] = (x[2] + x[1]) & MASK32
            x[1] = _rotl(x[1], rb) ^ x[2]
        if r % 4 == 3:
            s = (r + 1) // 4
            for i in range(4):
                x[i] = (x[i] + ks[(s + i) % 5]) & MASK32
            x[3] = (x[3] + s) & MASK32
    return x


def stream_id(name: str) -> int:
    """A 64-bit stream number for a named purpose ("scene.objects", "init.conv1", ...)."""
    return int.from_bytes(
        tagged_hash("prng-stream", name.encode()).__getitem__(slice(0, 8)), "little"
    )


class Prng:
    """Random words keyed by a 32-byte seed; `stream` separates independent purposes."""

    def __init__(self, seed: bytes, device: str | torch.device = "cpu") -> None:
        if not isinstance(seed, bytes) or len(seed) != 32:
            raise ValueError("a PRNG seed is 32 bytes")
        k = tagged_hash("prng-key", seed)
        words = [int.from_bytes(k[4 * i : 4 * i + 4], "little") for i in range(4)]
        self.key = (words[0], words[1], words[2], words[3])
        self.device = torch.device(device)

    def words(self, stream: int | str, n: int, offset: int = 0) -> torch.Tensor:
        """n uniform 32-bit words (int64 tensor) at positions offset .. offset+n-1 of the stream."""
        if isinstance(stream, str):
            stream = stream_id(stream)
        if n <= 0:
            return torch.zeros(0, dtype=torch.int64, device=self.device)
        first, last = offset // 4, (offset + n - 1) // 4
        blocks = torch.arange(first, last + 1, dtype=torch.int64, device=self.device)
        counter = [
            blocks & MASK32,
            (blocks >> 32) & MASK32,
            torch.full_like(blocks, stream & MASK32),
            torch.full_like(blocks, (stream >> 32) & MASK32),
        ]
        out = torch.stack(threefry4x32(counter, self.key), dim=1).reshape(-1)
        start = offset - first * 4
        return out[start : start + n]

    def below(self, stream: int | str, n: int, bound: int, offset: int = 0) -> torch.Tensor:
        """n integers in [0, bound) by multiply-shift (bias below 2^-32 * bound)."""
        if not 0 < bound <= 1 << 31:
            raise ValueError(f"bound {bound} out of range (1 .. 2^31)")
        return (self.words(stream, n, offset) * bound) >> 32

    def integers(
        self, stream: int | str, n: int, low: int, high: int, offset: int = 0
    ) -> torch.Tensor:
        """n integers in [low, high], both ends included."""
        return low + self.below(stream, n, high - low + 1, offset)

    def signed(self, stream: int | str, n: int, bits: int, offset: int = 0) -> torch.Tensor:
        """n integers uniform in [-2^(bits-1), 2^(bits-1)), for weight initialisation."""
        if not 1 <= bits <= 32:
            raise ValueError("bits must be in 1 .. 32")
        return (self.words(stream, n, offset) >> (32 - bits)) - (1 << (bits - 1))
