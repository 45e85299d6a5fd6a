"""Fixtures for the p2p integration tests: real node processes, stopped at test end."""

from __future__ import annotations

import pytest
from framework import NodeProcess, write_network


@pytest.fixture
def make_node(tmp_path):
    nodes: list[NodeProcess] = []
    default_network = write_network(tmp_path / "fast-now.toml")

    def factory(name: str | None = None, **kw) -> NodeProcess:
        name = name or f"node{len(nodes)}"
        kw.setdefault("network", default_network)
        node = NodeProcess(tmp_path / name, name=name, **kw)
        nodes.append(node)
        return node

    yield factory
    for node in nodes:
        node.shut_down(timeout=20)
