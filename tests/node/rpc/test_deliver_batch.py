"""DeliverBatch as a sending peer sees it: one answer per envelope, in order, each what
`Deliver` would have answered, and only the accepted envelopes stored.

The first tests go through the in-process peer (tests/node/sim_peer.py: NG's real
servicer, core and database); the last ones make real gRPC calls over mutual TLS from
GB's `GrpcPeerClient` to NG's servicer behind the node's own listener stack, including a
peer of an earlier version that does not know DeliverBatch."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import grpc
import pytest
from sim_peer import GB, NG, MakeNetwork, SimNode
from sqlalchemy import insert, select
from sqlalchemy.orm import Session

from exchange._proto.mlax.v1 import envelope_pb2 as epb
from exchange.encoding import now_ms
from exchange.envelope import Envelope, Header, Limits, MessageType, Opened, seal
from exchange.errors import InvalidFieldError, MlaxError
from exchange.ledger_entry import LedgerEntry
from exchange.receipt import Receipt, verify_receipt
from node.config import DELIVER_BATCH_FLOOR, LimitsSection, ListenerSection
from node.peers.client import DeliverAnswer, GrpcPeerClient
from node.rpc.federation import FEDERATION_SERVICE
from node.rpc.limits import CallLimiter, ListenerLimits, peer_callers
from node.server import _server
from node.services import inbound
from node.services.messages import IN, NodeCore
from node.services.trust import TrustedDirectory
from node.storage import ledger
from node.storage.db import Database
from node.storage.models import DirectoryRow, LedgerEntryRow, MessageContentRow, MessageRow

OK = "OK"


def _sealed(
    node: SimNode,
    to: str,
    text: str,
    *,
    message_type: MessageType = MessageType.NOTE,
    message_id: bytes | None = None,
) -> bytes:
    """An envelope from `node`'s agency to `to`, as its delivery worker would send it."""
    directory = node.core.directory.current()
    card = directory.agency(to)
    assert card is not None
    sender = node.identity.sender(published=directory.agency(node.agency))
    return seal(
        sender, card, text.encode(), message_type, now_ms=now_ms(), message_id=message_id
    ).to_bytes()


def _header(data: bytes) -> Header:
    return Header.from_bytes(Envelope.from_bytes(data).header)


def _batch(node: SimNode, to: str, envelopes: Sequence[bytes]) -> list[DeliverAnswer]:
    got: list[list[DeliverAnswer]] = []
    node.peers.deliver_batch(to, envelopes, 5.0, got.append)
    [answers] = got
    return answers


def _codes(answers: list[DeliverAnswer]) -> list[str]:
    return [OK if a.receipt is not None else str(a.code.name if a.code else None) for a in answers]


def _inbound(node: SimNode) -> list[tuple[bytes, bytes]]:
    """(message id, stored envelope) of every message `node` received."""
    with node.db.read() as s:
        rows = s.execute(
            select(MessageRow.message_id, MessageContentRow.envelope)
            .join(MessageContentRow, MessageContentRow.message_pk == MessageRow.id)
            .where(MessageRow.direction == IN)
            .order_by(MessageRow.id)
        ).all()
    return [(bytes(m), bytes(e)) for m, e in rows]


def _entries(node: SimNode) -> list[dict[str, Any]]:
    return [json.loads(r.entry) for r in node.store.entries(0, 10_000) if r.entry]


def _receipt_of(answer: DeliverAnswer, sender: SimNode, data: bytes) -> int:
    """The ledger index of a receipt that verifies for exactly this envelope."""
    assert answer.receipt is not None
    body = verify_receipt(
        Receipt(answer.receipt.body, answer.receipt.signature),
        sender.core.directory.current(),
        message_id=_header(data).message_id,
        envelope_digest=Envelope.from_bytes(data).digest,
        receiver=NG,
        sender=GB,
    )
    return body.ledger_index


def test_a_mixed_batch_gets_each_envelope_its_own_answer(sim_network: MakeNetwork) -> None:
    net = sim_network()
    gb, ng = net[GB], net[NG]
    first = _sealed(gb, NG, "delivered before")
    [earlier] = _batch(gb, NG, [first])
    assert earlier.receipt is not None
    good, other = _sealed(gb, NG, "fresh one"), _sealed(gb, NG, "fresh two")
    same_id = _sealed(gb, NG, "another body", message_id=_header(first).message_id)
    not_gb = _sealed(ng, GB, "NG's own envelope, relayed by GB")
    batch = [good, first, same_id, b"\xff\x00 not an envelope", not_gb, other, good]

    answers = _batch(gb, NG, batch)

    assert _codes(answers) == [
        OK,
        OK,  # a re-delivery: the original receipt
        "ALREADY_EXISTS",  # the same message id for another envelope
        "INVALID_ARGUMENT",
        "PERMISSION_DENIED",  # the envelope's sender is not the caller
        OK,
        OK,  # the same envelope twice in one call: the same receipt
    ]
    assert answers[1].receipt == earlier.receipt
    assert answers[6].receipt == answers[0].receipt
    assert answers[2].detail.endswith("was already used for another envelope.")
    assert answers[4].detail.endswith(f"but was delivered by {GB}.")
    indexes = [_receipt_of(answers[k], gb, batch[k]) for k in (0, 1, 5)]
    assert len(set(indexes)) == 3
    # Only the accepted envelopes are stored, each once, with its ledger entry at the
    # index its receipt names.
    assert _inbound(ng) == [(_header(e).message_id, e) for e in (first, good, other)]
    entries = _entries(ng)
    received = [e for e in entries if e["kind"] == "message.received"]
    assert [e["message_id"] for e in received] == [
        _header(e).message_id_text for e in (first, good, other)
    ]
    for k, idx in zip((1, 0, 5), sorted(indexes), strict=True):
        assert json.loads(ng.store.entries(idx, 1)[0].entry or b"{}")["message_id"] == (
            _header(batch[k]).message_id_text
        )
    # Each refusal is ledgered (well within the rejection budget).
    rejected = sorted(e["reason"] for e in entries if e["kind"] == "message.rejected")
    assert rejected == ["MalformedError", "PeerMismatchError", "ReplayError"]


def test_a_refused_case_step_rolls_back_alone(sim_network: MakeNetwork) -> None:
    """An envelope whose receive hook refuses it in the storing transaction (as a case
    step that does not apply) is refused alone; what its hook wrote is rolled back."""
    net = sim_network()
    gb, ng = net[GB], net[NG]

    def hook(opened: Opened) -> Callable[[Session], None]:
        refuse = b"refuse" in opened.body

        def apply(s: Session) -> None:
            # An entry of the hook's own, as a case step's `case.transition`.
            entry = LedgerEntry.of(
                "content.read",
                now_ms(),
                message_id=opened.header.message_id_text,
                officer="test-hook",
                role=opened.body.decode(),
            )
            ledger.append(s, entry)
            if refuse:
                raise InvalidFieldError("This step does not apply.")

        return apply

    ng.core.receive_hooks[MessageType.REPLY] = hook
    before = _sealed(gb, NG, "a note before")
    step, bad = (
        _sealed(gb, NG, text, message_type=MessageType.REPLY) for text in ("apply", "refuse")
    )
    after = _sealed(gb, NG, "a note after")

    answers = _batch(gb, NG, [before, step, bad, after])

    assert _codes(answers) == [OK, OK, "INVALID_ARGUMENT", OK]
    assert answers[2].detail == "This step does not apply."
    assert [m for m, _ in _inbound(ng)] == [_header(e).message_id for e in (before, step, after)]
    kinds = [(e["kind"], e.get("role")) for e in _entries(ng) if e["kind"] != "message.rejected"]
    # The hook's entry follows its envelope's, and nothing of the refused step remains.
    assert kinds[-4:] == [
        ("message.received", None),
        ("message.received", None),
        ("content.read", "apply"),
        ("message.received", None),
    ]


def test_a_batch_beyond_the_limit_is_refused_whole(sim_network: MakeNetwork) -> None:
    net = sim_network()
    gb, ng = net[GB], net[NG]
    envelopes = [_sealed(gb, NG, "one of many")] * (DELIVER_BATCH_FLOOR + 1)

    answers = _batch(gb, NG, envelopes)

    assert _codes(answers) == ["RESOURCE_EXHAUSTED"] * len(envelopes)
    assert answers[0].detail == (
        f"A DeliverBatch call carries at most {DELIVER_BATCH_FLOOR} envelopes; "
        f"this one has {DELIVER_BATCH_FLOOR + 1}."
    )
    assert _inbound(ng) == []
    assert [e["reason"] for e in _entries(ng) if e["kind"] == "message.rejected"] == [
        "BatchTooLargeError"
    ]
    assert _codes(_batch(gb, NG, envelopes[:DELIVER_BATCH_FLOOR])) == [OK] * DELIVER_BATCH_FLOOR


def test_a_peer_of_an_earlier_version_gets_one_deliver_per_envelope(
    sim_network: MakeNetwork,
) -> None:
    net = sim_network()
    gb, ng = net[GB], net[NG]
    gb.peers.fail(NG, grpc.StatusCode.UNIMPLEMENTED, method="DeliverBatch")
    envelopes = [_sealed(gb, NG, f"note {n}") for n in range(3)]
    assert _codes(_batch(gb, NG, envelopes)) == [OK] * 3
    assert gb.peers.calls_to(NG, "Deliver") == 3
    assert len(_inbound(ng)) == 3


# -- over the wire ------------------------------------------------------------------------


class _Channels:
    """What `GrpcPeerClient` needs of `PeerChannels`: GB's mutual-TLS channel to the test
    listener that serves NG."""

    def __init__(self, gb: SimNode, ng: SimNode, port: int) -> None:
        card = ng.core.directory.current().agency(NG)
        assert card is not None
        creds = grpc.ssl_channel_credentials(
            root_certificates=card.tls_certificate_pem,
            private_key=gb.identity.tls_private_key_pem(),
            certificate_chain=gb.identity.tls_certificate_pem(),
        )
        host = card.endpoint.rpartition(":")[0].strip("[]")
        self._channel = grpc.secure_channel(
            f"127.0.0.1:{port}", creds, [("grpc.ssl_target_name_override", host)]
        )

    def channel(self, agency_id: str) -> grpc.Channel:
        assert agency_id == NG
        return self._channel

    def close(self) -> None:
        self._channel.close()


class _Counted(grpc.GenericRpcHandler):
    """Consulted first for every call the listener receives: records its method name and
    leaves the call to the handlers after it (a method none serves is UNIMPLEMENTED)."""

    def __init__(self) -> None:
        self.calls: list[str] = []
        self._lock = threading.Lock()

    def service(
        self, handler_call_details: grpc.HandlerCallDetails
    ) -> grpc.RpcMethodHandler[Any, Any] | None:
        with self._lock:
            self.calls.append(handler_call_details.method.rsplit("/", 1)[-1])
        return None


Serve = Callable[..., tuple[GrpcPeerClient, _Counted]]


@pytest.fixture
def serve(sim_network: MakeNetwork) -> Iterator[Serve]:
    """NG's federation servicer on a mutual-TLS listener built as the node builds it
    (error interceptor, per-caller limits), and GB's `GrpcPeerClient` to it. With
    `old=True` the listener serves only `Deliver`, as a node of an earlier version."""
    started: list[tuple[grpc.Server, CallLimiter, _Channels]] = []

    def start(net: dict[str, SimNode], old: bool = False) -> tuple[GrpcPeerClient, _Counted]:
        gb, ng = net[GB], net[NG]
        limiter = CallLimiter(
            "federation",
            ListenerLimits.for_peers(LimitsSection()),
            peer_callers(ng.core.directory.current),
        )
        counted = _Counted()
        server = _server(
            ListenerSection(listen="127.0.0.1:0", max_workers=8), [counted], 4 << 20, limiter
        )
        handler = ng.federation.handler()
        if old:
            handler = grpc.method_handlers_generic_handler(
                FEDERATION_SERVICE,
                {
                    "Deliver": grpc.unary_unary_rpc_method_handler(
                        ng.federation.deliver,
                        request_deserializer=None,
                        response_serializer=epb.Receipt.SerializeToString,
                    )
                },
            )
        server.add_generic_rpc_handlers((handler,))
        own = [(ng.identity.tls_private_key_pem(), ng.identity.tls_certificate_pem())]
        creds = grpc.ssl_server_credentials(
            own, gb.identity.tls_certificate_pem(), require_client_auth=True
        )
        port = server.add_secure_port("127.0.0.1:0", creds)
        limiter.start()
        server.start()
        channels = _Channels(gb, ng, port)
        started.append((server, limiter, channels))
        return GrpcPeerClient(channels), counted  # type: ignore[arg-type]

    yield start
    for server, limiter, channels in started:
        channels.close()
        server.stop(0).wait()
        limiter.stop()


def _call(client: GrpcPeerClient, envelopes: Sequence[bytes]) -> list[DeliverAnswer]:
    got: list[list[DeliverAnswer]] = []
    done = threading.Event()

    def settle(answers: list[DeliverAnswer]) -> None:
        got.append(answers)
        done.set()

    client.deliver_batch(NG, envelopes, 30.0, settle)
    assert done.wait(60), "no answer"
    [answers] = got
    return answers


def test_over_the_wire_a_batch_is_one_call_and_a_long_one_is_split(
    sim_network: MakeNetwork, serve: Serve
) -> None:
    net = sim_network()
    gb, ng = net[GB], net[NG]
    client, counted = serve(net)
    good = _sealed(gb, NG, "over TLS")
    answers = _call(client, [good, b"garbage", good])
    assert _codes(answers) == [OK, "INVALID_ARGUMENT", OK]
    assert answers[0].receipt == answers[2].receipt
    _receipt_of(answers[0], gb, good)
    assert answers[1].detail == "The envelope is not a valid protobuf encoding."
    assert counted.calls == ["DeliverBatch"]
    # More than every node accepts in one call: split into calls of at most that many.
    many = [_sealed(gb, NG, f"note {n}") for n in range(DELIVER_BATCH_FLOOR + 3)]
    assert _codes(_call(client, many)) == [OK] * len(many)
    assert counted.calls == ["DeliverBatch"] * 3
    assert len(_inbound(ng)) == 1 + len(many)


def test_over_the_wire_an_old_peer_costs_one_failed_call(
    sim_network: MakeNetwork, serve: Serve
) -> None:
    net = sim_network()
    gb, ng = net[GB], net[NG]
    client, counted = serve(net, old=True)
    first = [_sealed(gb, NG, f"first {n}") for n in range(3)]
    second = [_sealed(gb, NG, f"second {n}") for n in range(2)]
    assert _codes(_call(client, first)) == [OK] * 3
    assert _codes(_call(client, [*second, b"garbage"])) == [OK, OK, "INVALID_ARGUMENT"]
    assert counted.calls == ["DeliverBatch"] + ["Deliver"] * 6
    assert len(_inbound(ng)) == 5


def test_over_the_wire_a_failed_call_answers_every_envelope(sim_network: MakeNetwork) -> None:
    net = sim_network()
    gb, ng = net[GB], net[NG]
    with socket.socket() as s:  # a port nothing listens on: the peer is down
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    channels = _Channels(gb, ng, port)
    try:
        envelopes = [_sealed(gb, NG, f"note {n}") for n in range(3)]
        answers = _call(GrpcPeerClient(channels), envelopes)  # type: ignore[arg-type]
    finally:
        channels.close()
    assert [a.code for a in answers] == [grpc.StatusCode.UNAVAILABLE] * 3
    assert all(a.receipt is None and a.detail for a in answers)


# -- replicas on one PostgreSQL ----------------------------------------------------------


def test_two_replicas_receiving_one_batch_answer_alike(
    sim_network: MakeNetwork, pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """NG runs as two replicas on one PostgreSQL database; GB's batch reaches both at
    once (a retry through the load balancer): each envelope is stored and ledgered once,
    and both replicas answer with the same receipts."""
    # Both replicas make their replay lookup before either stores anything, so one of
    # them meets the other's rows only at its insert (the race the unique index decides).
    lookup, met, first = inbound._priors, threading.Barrier(2), set()

    def racing(conn: Any, peer: str, ids: list[bytes]) -> Any:
        found = lookup(conn, peer, ids)
        if threading.get_ident() not in first:
            first.add(threading.get_ident())
            met.wait(30)
        return found

    monkeypatch.setattr(inbound, "_priors", racing)
    net = sim_network()
    gb, ng = net[GB], net[NG]
    db = Database(pg_url)
    db.migrate()
    with ng.db.read() as s:
        directories = [
            {c.name: getattr(r, c.name) for c in DirectoryRow.__table__.columns}
            for r in s.scalars(select(DirectoryRow))
        ]
    with db.write() as s:
        s.execute(insert(DirectoryRow), directories)
        ledger.append(s, LedgerEntry.of("node.stopped", now_ms(), agency=NG))
    db.close()
    replicas = [
        NodeCore(ng.identity, d, TrustedDirectory(d), Limits(), 86_400_000)
        for d in (Database(pg_url), Database(pg_url))
    ]
    try:
        batch = [_sealed(gb, NG, f"note {n}") for n in range(20)]
        start = threading.Barrier(2)
        answers: list[list[Receipt | MlaxError]] = [[], []]

        def deliver(k: int) -> None:
            start.wait()
            answers[k] = replicas[k].receive_many(batch, GB)

        threads = [threading.Thread(target=deliver, args=(k,)) for k in (0, 1)]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        assert all(isinstance(a, Receipt) for a in answers[0])
        assert answers[0] == answers[1]
        with replicas[0].db.read() as s:
            stored = s.scalars(select(MessageRow.message_id).where(MessageRow.direction == IN))
            assert sorted(stored) == sorted(_header(e).message_id for e in batch)
            kinds = [
                json.loads(e or b"{}").get("kind")
                for e in s.scalars(select(LedgerEntryRow.entry).order_by(LedgerEntryRow.idx))
            ]
        assert kinds == ["node.stopped"] + ["message.received"] * len(batch)
    finally:
        for replica in replicas:
            replica.db.close()
