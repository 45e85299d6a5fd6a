"""Child process of the crash test: grows the chain named by a seed until it is killed.

Usage: crash_writer.py STORE_DIR SEED TX_PER_BLOCK. Prints the tip height after every connect
or disconnect. Blocks are deterministic for (seed, height, parent state), so the parent process
can rebuild and replay the whole chain from genesis to check the store after a SIGKILL.
"""

import random
import sys

import chain_kit as kit  # beside this file: the script's directory is first on sys.path

from chain.storage import ChainStore

CRASH_KEYS = kit.make_keys(8, "crash")


def blob_of(block_hash: bytes) -> bytes:
    """A 256 KiB task-state stand-in per block, so that a good share of the time goes to writing."""
    return kit.tagged_hash("crash-blob", block_hash) * 8192


def main(path: str, seed: int, tx_count: int) -> None:
    genesis = kit.make_genesis(CRASH_KEYS)
    store = ChainStore(path)
    if not store.is_initialised():
        store.init_genesis(genesis.block, genesis.state, chain_work=1)
    state = store.load_state()
    parent = store.get_header(store.tip())
    moves = random.Random()  # when to step back need not be reproducible: the chain is the same
    print("ready", parent.height, flush=True)
    while True:
        if parent.height > 0 and moves.random() < 0.25:
            block, undo = store.disconnect_tip()
            state = store.state()
            parent = store.get_header(block.header.prev_hash)
        else:
            block, state, undo = kit.deterministic_block(seed, state, parent, CRASH_KEYS, tx_count)
            store.connect_block(
                block, undo, state, chain_work=block.header.height + 1, blobs=[blob_of(block.hash)]
            )
            state = store.state()
            parent = block.header
        print(parent.height, flush=True)


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]))
