"""Graphs the simulated nodes connect by: undirected edge lists, built from a seeded generator."""

from __future__ import annotations

import numpy as np


def mesh(n: int) -> list[tuple[int, int]]:
    return [(u, v) for u in range(n) for v in range(u + 1, n)]


def ring(n: int) -> list[tuple[int, int]]:
    if n < 3:
        return line(n)
    return [(u, (u + 1) % n) for u in range(n)]


def line(n: int) -> list[tuple[int, int]]:
    return [(u, u + 1) for u in range(n - 1)]


def connected(n: int, edges: list[tuple[int, int]]) -> bool:
    if n <= 1:
        return True
    adj: list[list[int]] = [[] for _ in range(n)]
    for u, v in edges:
        adj[u].append(v)
        adj[v].append(u)
    seen = {0}
    stack = [0]
    while stack:
        for w in adj[stack.pop()]:
            if w not in seen:
                seen.add(w)
                stack.append(w)
    return len(seen) == n


def random_regular(
    n: int, d: int, rng: np.random.Generator, swaps_per_edge: int = 10
) -> list[tuple[int, int]]:
    """A connected d-regular simple graph: a circulant graph randomised by degree-preserving swaps.

    Stub matching rarely gives a simple graph for d >= 6, so the swaps (each replaces edges a-b and
    c-d by a-d and c-b when that keeps the graph simple) do the mixing instead.
    """
    if d >= n:
        raise ValueError(f"degree {d} must be below the node count {n}")
    if (n * d) % 2:
        raise ValueError(f"n * d must be even ({n} * {d})")
    edges: set[tuple[int, int]] = set()
    for u in range(n):
        for k in range(1, d // 2 + 1):
            v = (u + k) % n
            edges.add((min(u, v), max(u, v)))
    if d % 2:
        for u in range(n // 2):
            v = u + n // 2
            edges.add((u, v))
    edge_list = sorted(edges)
    for _attempt in range(20):
        current = list(edge_list)
        present = set(current)
        m = len(current)
        picks = rng.integers(0, m, size=(swaps_per_edge * m, 2))
        flips = rng.integers(0, 2, size=swaps_per_edge * m)
        for (i, j), flip in zip(picks.tolist(), flips.tolist()):
            if i == j:
                continue
            a, b = current[i]
            c, e = current[j]
            if flip:
                c, e = e, c
            if len({a, b, c, e}) < 4:
                continue
            new1, new2 = (min(a, e), max(a, e)), (min(c, b), max(c, b))
            if new1 in present or new2 in present:
                continue
            present.discard(current[i])
            present.discard(current[j])
            present.add(new1)
            present.add(new2)
            current[i], current[j] = new1, new2
        if connected(n, current):
            return sorted(current)
    raise RuntimeError("could not build a connected random regular graph")


def build(name: str, n: int, degree: int, rng: np.random.Generator) -> list[tuple[int, int]]:
    if n <= 1:
        return []
    if name == "mesh":
        return mesh(n)
    if name == "ring":
        return ring(n)
    if name == "line":
        return line(n)
    if name == "random-regular":
        return random_regular(n, degree, rng)
    raise ValueError(f"unknown topology {name!r}")
