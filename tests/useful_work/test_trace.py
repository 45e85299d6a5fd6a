"""Chained unit seeds (protocol version 2): pinned, and each seed depends on what it must."""

from dataclasses import replace

from useful_work.hashing import tagged_hash
from useful_work.runner import iter_units
from useful_work.specs import RenderSpec
from useful_work.tasks import make_task
from useful_work.trace import TRACE_START, next_prefix, prefix_commitments, trace_root, unit_seed

PARENT = tagged_hash("test-parent")
MINER = tagged_hash("test-miner")[:20]
COMMIT = tagged_hash("test-commitment")
SPEC = RenderSpec(units=0, images_per_unit=1, image_size=16, max_objects=2)
# The trace root of three such units: changes only with a deliberate protocol change.
GOLDEN_TRACE_ROOT = "b94a17748c0c0cf8169bee98e8371efb6660eac1ed2e1923584dbe8cbf78aa9e"


def _trace(n: int, **kw):
    task = make_task(SPEC)
    out = []
    for r in iter_units(
        task, task.initial_state(), PARENT, MINER, commitment=lambda u: COMMIT, **kw
    ):
        out.append(r)
        if len(out) == n:
            return out
    return out


def test_golden_trace_root():
    assert trace_root([r.leaf for r in _trace(3)]).hex() == GOLDEN_TRACE_ROOT


def test_seeds_chain_over_every_earlier_leaf_and_the_header():
    results = _trace(3)
    leaves = [r.leaf for r in results]
    prefixes = prefix_commitments(leaves)
    assert prefixes[0] == TRACE_START and prefixes[2] == next_prefix(
        next_prefix(TRACE_START, leaves[0]), leaves[1]
    )
    for u, r in enumerate(results):
        assert (
            r.seed == unit_seed(PARENT, MINER, 0, u, prefixes[u], COMMIT)
            and r.prefix == prefixes[u]
        )
    base = unit_seed(PARENT, MINER, 0, 2, prefixes[2], COMMIT)
    # A different earlier leaf (one re-rolled digest), header, attempt, index, miner or parent:
    # another seed.
    rerolled = prefix_commitments([leaves[0], replace(leaves[1], digest=bytes(32))])[2]
    others = {
        unit_seed(PARENT, MINER, 0, 2, rerolled, COMMIT),
        unit_seed(PARENT, MINER, 0, 2, prefixes[2], tagged_hash("other header")),
        unit_seed(PARENT, MINER, 1, 2, prefixes[2], COMMIT),
        unit_seed(PARENT, MINER, 0, 3, prefixes[2], COMMIT),
        unit_seed(PARENT, bytes(20), 0, 2, prefixes[2], COMMIT),
        unit_seed(bytes(32), MINER, 0, 2, prefixes[2], COMMIT),
    }
    assert base not in others and len(others) == 6
    # Attempts are new work from the first unit on.
    assert _trace(1, attempt=1)[0].leaf != results[0].leaf


def test_prefix_trace_roots_equal_the_root_of_each_prefix():
    from useful_work.trace import Leaf, prefix_trace_roots, trace_root

    leaves = [
        Leaf(
            bytes([i % 256]) * 32,
            bytes([(7 * i) % 256]) * 32,
            bytes([(3 * i) % 256]) * 32,
            bytes(32),
        )
        for i in range(67)
    ]
    roots = prefix_trace_roots(leaves, range(67))
    assert [roots[u] for u in range(67)] == [trace_root(leaves[: u + 1]) for u in range(67)]
    assert prefix_trace_roots(leaves, [5, 40]) == {5: roots[5], 40: roots[40]}
    assert prefix_trace_roots(leaves, []) == {}
