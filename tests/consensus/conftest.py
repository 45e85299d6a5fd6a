"""Fixtures for consensus tests (helpers live in consensus_kit.py)."""

import itertools

import pytest
from consensus_kit import Node, small_params

from consensus.params import ConsensusParams


@pytest.fixture
def params() -> ConsensusParams:
    return small_params()


@pytest.fixture
def make_node(tmp_path, params):
    nodes: list[Node] = []
    counter = itertools.count()

    def factory(p: ConsensusParams | None = None, **kw) -> Node:
        node = Node(tmp_path / f"node{next(counter)}", p or params, **kw)
        nodes.append(node)
        return node

    yield factory
    for node in nodes:
        node.close()
