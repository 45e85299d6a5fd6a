"""The API's line of a task's credited blocks, read while the chain moves on."""

from __future__ import annotations

from consensus_kit import Node, small_params

from p2p.api import _credited


def test_a_block_connected_after_the_task_was_read_is_not_a_roll_back(tmp_path):
    """A task record read before a block connected, its blocks after: the new block is the
    task's, not one a fraud proof uncredited (`pouw task result` once refused on that)."""
    node = Node(tmp_path / "n", small_params())
    try:
        node.mine(2)
        task_id = node.chain.genesis.default_task.task_id
        stale = node.chain.state.tasks[task_id]
        node.mine(1)
        line, rolled_back = _credited(node, stale)  # type: ignore[arg-type]
        assert rolled_back == 0
        assert [h for h, _ in line] == [1, 2, 3]
    finally:
        node.close()
