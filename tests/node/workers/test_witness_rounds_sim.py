"""Bounded witnessing, as the peers see it: a log in a federation of eight asks only the
three witnesses assigned to it for the hour (exchange/ledger/witnesses.py), once per
checkpoint, and the next hour's set the next hour; a witness that is down is asked again,
and no other peer is asked in its place. Real nodes in-process (tests/node/sim_peer.py)."""

from __future__ import annotations

import atexit
import functools
import shutil
import tempfile
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from sim_peer import PASSPHRASE, SimNode, Template

from exchange.ledger.witnesses import WITNESS_EPOCH_SECONDS, assigned_witnesses, witness_epoch
from keys.identity import load_identity
from keys.keystore import KDF_PROFILE_ENV
from node.config import load_config
from node.devtools.federation import build_federation
from node.workers.checkpoints import Checkpointer

CODES = "GB FR NG NL SE IT ES PT"
AGENCIES = tuple((f"{c}-LOG{i}", f"Agency {i}") for i, c in enumerate(CODES.split()))
LOG = AGENCIES[0][0]
K = 3
HOUR_MS = WITNESS_EPOCH_SECONDS * 1000
T = 1_796_000_000_000  # some hour's start, in ms


@functools.cache
def template() -> Template:
    root = Path(tempfile.mkdtemp(prefix="mlax-sim-witness-"))
    atexit.register(shutil.rmtree, root, ignore_errors=True)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(KDF_PROFILE_ENV, "test")  # eight identities: cheap key files
        fed = build_federation(root, PASSPHRASE, PASSPHRASE, agencies=AGENCIES)
    identities, databases = {}, {}
    for agency, setup in fed.nodes.items():
        cfg = load_config(setup.config)
        identities[agency] = load_identity(cfg.node.identity_dir, PASSPHRASE)
        databases[agency] = Path(cfg.database_url.removeprefix("sqlite:///"))
    return Template(identities, databases)


@pytest.fixture
def network(tmp_path: Path) -> Iterator[dict[str, SimNode]]:
    made = template()
    nodes = {agency: SimNode(made, agency, tmp_path) for agency, _ in AGENCIES}
    for node in nodes.values():
        node.connect(nodes)
    yield nodes
    for node in nodes.values():
        node.close()


def _calls(log: SimNode) -> Counter[str]:
    return Counter(c.peer for c in log.peers.calls if c.method == "AddCheckpoint")


def test_a_log_asks_only_its_witnesses_of_the_hour(network: dict[str, SimNode]) -> None:
    log = network[LOG]
    now = [T]
    checkpoints = Checkpointer(
        log.core,
        log.store,
        log.peers,
        interval=60.0,
        every_entries=1000,
        witness_interval=60.0,
        timeout=3.0,
        witnesses=K,
        clock_ms=lambda: now[0],
    )
    directory = log.core.directory.current()
    this_hour = assigned_witnesses(directory, LOG, witness_epoch(T // 1000), K)
    size = checkpoints.checkpoint_now()
    assert size is not None

    checkpoints.witness_round()
    # Seven peers, three asked, once each; each cosigned.
    assert _calls(log) == Counter(this_hour)
    assert len(log.store.cosignatures(size)) == K
    for peer in this_hour:
        assert log.store.last_cosigned_size(peer) == size
    checkpoints.witness_round()  # all three cosigned: nobody is asked again
    assert sum(_calls(log).values()) == K

    # The next hour brings the next set: its new members are asked, at most K calls.
    now[0] = T + HOUR_MS
    next_hour = assigned_witnesses(directory, LOG, witness_epoch(now[0] // 1000), K)
    assert next_hour != this_hour
    before = _calls(log)
    checkpoints.witness_round()
    asked = _calls(log) - before
    assert set(asked) == set(next_hour) - set(this_hour)
    assert all(n == 1 for n in asked.values())


def test_a_witness_that_is_down_is_not_replaced(network: dict[str, SimNode]) -> None:
    log = network[LOG]
    checkpoints = Checkpointer(
        log.core,
        log.store,
        log.peers,
        interval=60.0,
        every_entries=1000,
        witness_interval=60.0,
        timeout=3.0,
        witnesses=K,
        clock_ms=lambda: T,
    )
    assigned = assigned_witnesses(log.core.directory.current(), LOG, witness_epoch(T // 1000), K)
    down = assigned[0]
    log.peers.down.add(down)
    size = checkpoints.checkpoint_now()
    assert size is not None
    checkpoints.witness_round()
    # The two others cosigned; nobody outside the set was asked in the third's place.
    assert _calls(log) == Counter(assigned)
    assert len(log.store.cosignatures(size)) == K - 1
    log.peers.down.clear()
    checkpoints.witness_round()
    assert _calls(log) == Counter(assigned) + Counter([down])
    assert len(log.store.cosignatures(size)) == K
