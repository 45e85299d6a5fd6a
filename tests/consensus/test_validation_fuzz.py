"""Fuzzing validation: random and mutated openings, leaves, transactions, headers and bytes.

Every case goes through the validation a node runs (header rules, body, re-execution, the ledger)
and through ChainState.process_block. Only typed outcomes may come back: InvalidBlock with a
Reason, or an Outcome; any other exception is a bug that a peer could use to crash or halt a node.

Most cases are re-committed after the mutation (leaf hashes, trace root, openings, transaction
root, signature), on a network where every ticket wins, so that hostile states and leaves really
reach re-execution instead of stopping at the first root that no longer matches.
"""

from __future__ import annotations

import random
from dataclasses import replace

import pytest
from consensus_kit import FUNDED_KEY, small_params

from chain.block import Block, Opening, WorkProof, header_commitment, sign_header, tx_root
from chain.encoding import DecodeError
from chain.keys import PrivateKey
from chain.tx import make_transfer
from consensus.chainstate import Outcome
from consensus.market import active_task, task_for_spec
from consensus.miner import Miner, make_template
from consensus.validation import (
    InvalidBlock,
    Reason,
    check_body,
    check_header,
    connect_checks,
    required_openings,
)
from useful_work.hashing import tagged_hash
from useful_work.runner import iter_units
from useful_work.specs import TrainSpec
from useful_work.trace import Leaf, prefix_commitments, state_hash, trace_root, unit_seed

OUTCOMES = set(Outcome)


def _validate(node, block: Block) -> Reason | None:
    chain = node.chain
    parent = chain.entry(block.header.prev_hash)
    if parent is None:
        return None
    try:
        check_header(chain.params, block.header, chain.parent_info(parent.hash), chain.clock())
        check_body(chain.params, block)
        connect_checks(chain.params, block, chain.state)
    except InvalidBlock as exc:
        assert isinstance(exc.reason, Reason)
        return exc.reason
    return None


class Mutator:
    """Mutations of an honest block; `commit` makes the body match its header again."""

    def __init__(self, rng: random.Random, node, key: PrivateKey) -> None:
        self.rng, self.node, self.key = rng, node, key

    def junk(self, size: int) -> bytes:
        return self.rng.randbytes(size)

    def mutate_state(self, state: bytes) -> bytes:
        r, rng = self.rng.random(), self.rng
        if r < 0.2:
            return self.junk(rng.randrange(0, 64))
        if r < 0.35:
            return state[: rng.randrange(len(state) + 1)]
        if r < 0.5:
            return state + self.junk(rng.randrange(1, 16))
        data = bytearray(state)
        for _ in range(rng.randrange(1, 8)):
            i = rng.randrange(len(data))
            data[i] = (
                rng.randrange(256) if rng.random() < 0.5 else data[i] ^ (1 << rng.randrange(8))
            )
        if rng.random() < 0.3 and len(data) >= 8:  # an extreme value where weights or counters live
            i = rng.randrange(len(data) - 4)
            data[i : i + 4] = rng.choice(
                [b"\xff\xff\xff\x7f", b"\x00\x00\x00\x80", b"\xff\xff\xff\xff"]
            )
        return bytes(data)

    def commit(self, block: Block, leaves: list[Leaf], inputs: list[bytes], txs=None) -> Block:
        """Re-derive every commitment: leaf hashes from the input states (so the openings match and
        the leaves chain), the trace root, the task state, the openings the new ticket needs,
        tx root, signature."""
        txs = block.txs if txs is None else tuple(txs)
        leaves = list(leaves)
        for u, state in enumerate(inputs[: len(leaves)]):
            leaves[u] = replace(leaves[u], input_hash=state_hash(state))
            if u:
                leaves[u - 1] = replace(leaves[u - 1], output_hash=state_hash(state))
        if (
            txs is not block.txs
        ):  # the winner is run again for the new transaction set, as a miner would
            h = block.header
            leaves[-1] = replace(
                leaves[-1], commitment=header_commitment(tx_root(txs), h.time_ms, h.payout)
            )
        if txs is not block.txs or self.rng.random() < 0.7:
            leaves[-1] = self.rerun_winner(block, leaves, inputs[len(leaves) - 1])
        claim = replace(block.header.work[0], unit_count=len(leaves), trace_root=trace_root(leaves))
        header = replace(
            block.header, tx_root=tx_root(txs), work=(claim,), task_state=leaves[-1].output_hash
        )
        openings = tuple(Opening(u, inputs[u]) for u in required_openings(self.node.params, header))
        return Block(sign_header(header, self.key), txs, (WorkProof(tuple(leaves), openings),))

    def rerun_winner(self, block: Block, leaves: list[Leaf], state: bytes) -> Leaf:
        """The winner run honestly after the earlier leaves changed (its seed chains over them), as
        a cheater would, so the spot checks, not the winner, must find what is wrong."""
        header, last = block.header, leaves[-1]
        prefix = prefix_commitments(leaves[:-1])[-1]
        seed = unit_seed(
            header.prev_hash,
            header.miner,
            header.work[0].attempt,
            len(leaves) - 1,
            prefix,
            last.commitment,
        )
        try:
            out, digest = task_for_spec(active_task(self.node.chain.state).spec).run_unit(
                state, seed
            )
        except ValueError:
            return last
        return Leaf(state_hash(state), state_hash(out), digest, last.commitment)

    def case(self, block: Block, all_inputs: list[bytes]) -> Block | bytes:
        rng = self.rng
        proof = block.proofs[0]
        leaves = list(proof.leaves)
        inputs = list(all_inputs)
        kind = rng.randrange(9)
        if kind == 0:  # a hostile input state, re-committed: it reaches re-execution when opened
            u = rng.randrange(len(inputs))
            inputs[u] = self.mutate_state(inputs[u])
            return self.commit(block, leaves, inputs)
        if kind == 1:  # made-up digests, commitments or outputs: caught by re-execution
            for _ in range(rng.randrange(1, 4)):
                u = rng.randrange(len(leaves))
                field = rng.choice(
                    ["digest", "commitment"] + (["output_hash"] if u == len(leaves) - 1 else [])
                )
                leaves[u] = replace(leaves[u], **{field: self.junk(32)})
            return self.commit(block, leaves, inputs)
        if kind == 2:  # a longer or shorter trace
            if rng.random() < 0.5 and len(leaves) > 1:
                leaves = leaves[: rng.randrange(1, len(leaves))]
            else:
                extra = self.junk(rng.randrange(40, 120))
                leaves += [
                    Leaf(
                        leaves[-1].output_hash, self.junk(32), self.junk(32), leaves[-1].commitment
                    )
                ]
                inputs = inputs[: len(leaves) - 1] + [extra]
            return self.commit(block, leaves, inputs)
        if kind == 3:  # transactions dropped, repeated, reordered or invented, re-committed
            txs = list(block.txs) + [
                make_transfer(
                    FUNDED_KEY,
                    self.node.chain.chain_id,
                    rng.randrange(3),
                    1,
                    self.junk(20),
                    rng.randrange(10**9),
                )
            ]
            rng.shuffle(txs)
            return self.commit(block, leaves, inputs, txs[: rng.randrange(len(txs) + 1)])
        if kind == 4:  # header fields
            field = rng.choice(
                ["time_ms", "target", "height", "version", "state_root", "payout", "prev_hash"]
            )
            value = {
                "time_ms": block.header.time_ms + rng.randrange(-(10**6), 10**6),
                "target": rng.randrange(1 << 256),
                "height": rng.randrange(1 << 20),
                "version": rng.randrange(4),
                "state_root": self.junk(32),
                "payout": self.junk(20),
                "prev_hash": self.junk(32),
            }[field]
            header = sign_header(replace(block.header, **{field: value}), self.key)
            return Block(header, block.txs, block.proofs)
        if kind == 5:  # a body not matching its header: no re-commit
            opened = [
                Opening(o.unit_index, self.mutate_state(o.state) if rng.random() < 0.5 else o.state)
                for o in proof.openings
            ]
            return replace(block, proofs=(replace(proof, openings=tuple(opened)),))
        if kind == 6:  # openings out of order, repeated, extra or missing
            opened = list(proof.openings)
            ops = rng.choice(["drop", "dup", "extra", "swap"])
            if ops == "drop":
                opened.pop(rng.randrange(len(opened)))
            elif ops == "dup":
                opened.insert(0, opened[0])
            elif ops == "extra":
                opened.append(Opening(rng.randrange(1 << 16), self.junk(8)))
            else:
                opened.reverse()
            return replace(block, proofs=(replace(proof, openings=tuple(opened)),))
        if kind == 7:  # two claims, no claim, a claim for another task
            claim = block.header.work[0]
            work = rng.choice(
                [
                    (),
                    (claim, claim),
                    (replace(claim, task_id=self.junk(32)),),
                    (replace(claim, attempt=rng.randrange(1 << 32)),),
                ]
            )
            proofs = block.proofs * len(work) if work else ()
            return Block(sign_header(replace(block.header, work=work), self.key), block.txs, proofs)
        raw = bytearray(
            block.to_bytes()
        )  # raw bytes: decoding must refuse or re-encode identically
        for _ in range(rng.randrange(1, 6)):
            raw[rng.randrange(len(raw))] = rng.randrange(256)
        return bytes(raw)


def _honest_blocks(node, count: int, units: int) -> list[Block]:
    """(block, key, every unit's input state): blocks of `units` units on the node's tip (every
    ticket wins on this network), not connected."""
    out = []
    for i in range(count):
        key = PrivateKey.from_bytes(tagged_hash("fuzz-miner", bytes([i])))
        miner = Miner(node.chain, key, clock=node.clock, mempool=node.mempool)
        template = make_template(node.chain)
        draft = miner.draft(template)
        results = []
        for r in iter_units(
            task_for_spec(template.task_spec),
            template.start_state,
            template.parent_hash,
            miner.address,
            commitment=lambda u, draft=draft: draft.commitment,
        ):
            results.append(r)
            if len(results) == units:
                break
        inputs = [r.input_state for r in results]
        block = miner.assemble(template, [r.leaf for r in results], inputs, 0, draft)
        out.append((block, key, inputs))
    return out


def _fuzz(make_node, params, cases: int, seed: int, units: int = 6) -> dict[str, int]:
    node = make_node(params)
    node.mine(2)
    node.mempool.add(
        make_transfer(FUNDED_KEY, node.chain.chain_id, 0, 5, b"\x01" * 20, 1000),
        node.chain.state,
        node.chain.chain_id,
    )
    node.clock.tick()
    honest = _honest_blocks(node, 3, units)
    for block, _, _ in honest:
        assert _validate(node, block) is None  # the starting points are valid
    rng = random.Random(seed)
    seen: dict[str, int] = {}
    verifier = make_node(params)
    for h in (1, 2):
        assert (
            verifier.chain.process_block(node.chain.get_block(node.chain.hash_at(h))).outcome
            is Outcome.NEW_TIP
        )
    verifier.clock.now = node.clock.now
    for i in range(cases):
        block, key, inputs = honest[i % len(honest)]
        case = Mutator(rng, node, key).case(block, inputs)
        if isinstance(case, bytes):
            try:
                case = Block.from_bytes(case)
            except DecodeError:
                seen["decode-error"] = seen.get("decode-error", 0) + 1
                continue
        reason = _validate(node, case)
        seen[reason.value if reason else "valid"] = (
            seen.get(reason.value if reason else "valid", 0) + 1
        )
        if i % 7 == 0:  # and through the chain-state manager, storage and fork choice included
            result = verifier.chain.process_block(case)
            assert result.outcome in OUTCOMES
            assert verifier.chain.tip.height in (2, 3)
    return seen


def test_fuzzed_blocks_give_only_typed_reasons(make_node):
    params = small_params(initial_units_per_block=1, min_units_per_block=1, spot_checks=2)
    seen = _fuzz(make_node, params, cases=2_500, seed=1)
    assert sum(seen.values()) == 2_500
    # The cases reach the deep rules, not only the first root comparison.
    for reason in (
        "bad-winning-unit",
        "bad-spot-check",
        "body-mismatch",
        "bad-trace",
        "bad-transactions",
    ):
        assert seen.get(reason, 0) > 0, (reason, seen)


def test_fuzzed_training_states_give_only_typed_reasons(make_node):
    """Hostile weights and optimizer states of the training task: decoding, exactness bounds,
    kernels."""
    spec = TrainSpec(batch_size=2, steps_per_unit=1, image_size=16)
    params = small_params(
        initial_units_per_block=1, min_units_per_block=1, spot_checks=1, default_task=spec
    )
    seen = _fuzz(make_node, params, cases=150, seed=2, units=2)
    assert seen.get("bad-winning-unit", 0) + seen.get("bad-spot-check", 0) > 0, seen


@pytest.mark.slow
def test_fuzzed_blocks_large_sample(make_node):
    params = small_params(initial_units_per_block=1, min_units_per_block=1, spot_checks=3)
    seen = _fuzz(make_node, params, cases=25_000, seed=3, units=9)
    assert sum(seen.values()) == 25_000
