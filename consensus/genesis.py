"""Genesis: the first block and state follow from the parameters; the chain id follows from genesis.

Everything a network agrees on before its first block (allocations, the default task, the
initial target, the genesis time and message) is hashed into the genesis block, and the chain id
that every transaction signs is derived from that block's hash and the network name.
"""

from __future__ import annotations

from dataclasses import dataclass

from chain.address import ZERO_ADDRESS, parse_address
from chain.block import NO_SIGNATURE, Block, BlockHeader, tx_root
from chain.state import LedgerState, TaskRecord, default_task_record, genesis_state
from chain.types import BlockHash, RawPublicKey
from consensus.params import ConsensusParams, ParamsError
from consensus.targets import block_work
from useful_work.hashing import ZERO_HASH, tagged_hash
from useful_work.specs import encode_spec
from useful_work.tasks import make_task
from useful_work.trace import state_hash


@dataclass(frozen=True)
class Genesis:
    block: Block
    state: LedgerState
    chain_id: bytes
    chain_work: int
    default_task: TaskRecord
    default_task_state: bytes  # the initial state blob of the default task


def build_genesis(params: ConsensusParams) -> Genesis:
    allocations: dict[bytes, int] = {}
    for i, alloc in enumerate(params.allocations):
        try:
            address = parse_address(alloc.address)
        except ValueError as exc:
            raise ParamsError(f"allocations[{i}].address: {exc}") from None
        allocations[address] = allocations.get(address, 0) + alloc.amount
    spec = encode_spec(params.default_task)
    initial = make_task(params.default_task).initial_state()
    task = default_task_record(spec, state_hash(initial))
    # Genesis has no miner: its miner_key slot carries the hash of the network name and message.
    message = tagged_hash(
        "genesis-message", params.network.encode(), params.genesis_message.encode()
    )
    # The state root covers accounts and tasks, not the chain id, so it can be sealed first.
    root = genesis_state(ZERO_HASH, allocations, task).root
    header = BlockHeader(
        version=params.version,
        height=0,
        prev_hash=BlockHash(ZERO_HASH),
        time_ms=params.genesis_time_ms,
        target=params.initial_target,
        miner=ZERO_ADDRESS,
        miner_key=RawPublicKey(message),
        payout=ZERO_ADDRESS,
        tx_root=tx_root(()),
        state_root=root,
        work=(),
        signature=NO_SIGNATURE,
    )
    block = Block(header=header, txs=(), proofs=())
    chain_id = tagged_hash("chain-id", params.network.encode(), block.hash)
    state = genesis_state(chain_id, allocations, task)
    return Genesis(block, state, chain_id, block_work(header.target), task, initial)
