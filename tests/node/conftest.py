"""Shared by the node's unit tests: this folder is on sys.path (pytest puts a conftest's
folder there), so tests below it import `sim_peer`, the in-process peer."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sim_peer import GB, NG, MakeNetwork, SimNode, federation_template

from node.config import DeliverySection


@pytest.fixture
def sim_network(tmp_path: Path) -> Iterator[MakeNetwork]:
    """Make in-process nodes of GB and NG, each reaching the other through its SimPeer;
    closed (workers stopped, databases closed) after the test."""
    made: list[SimNode] = []

    def make(delivery: DeliverySection | None = None) -> dict[str, SimNode]:
        template = federation_template()
        network = {a: SimNode(template, a, tmp_path, delivery) for a in (GB, NG)}
        for node in network.values():
            node.connect(network)
        made.extend(network.values())
        return network

    yield make
    for node in made:
        node.close()
