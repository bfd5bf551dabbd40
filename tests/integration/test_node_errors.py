"""What a live node answers, and logs, when a call goes wrong: junk or extreme input, and
a node whose storage is full. And that its files are for its own eyes only.

- Junk bytes and numbers beyond a signed 64-bit integer get INVALID_ARGUMENT or
  OUT_OF_RANGE with one sentence, never gRPC's INTERNAL/UNKNOWN, and every line the
  node writes stays JSON.
- With its database full (SQLite capped with PRAGMA max_page_count through the
  test-only MLAX_TEST_SQLITE_MAX_PAGES, so SQLite reports "database or disk is full" as
  on a full disk), officers and peers read RESOURCE_EXHAUSTED "The node's storage is
  full.", never the exception's text, and the failing background work does not flood
  the log. Once space returns (a filler table is deleted), the same process takes
  writes again, the peer's queue arrives, and nothing acknowledged before is lost.
- The data dir is 0700 and the database with its -wal and -shm 0600, including on a
  node whose files were made looser before.
"""

from __future__ import annotations

import json
import os
import sqlite3
import stat
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import grpc
import pytest

from exchange._proto.mlax.v1 import attachment_pb2 as apb
from exchange._proto.mlax.v1 import ledger_pb2 as lpb
from exchange._proto.mlax.v1 import officer_pb2 as opb
from node.client import Credential, NodeCallError, OfficerClient
from node.client.officer import _server_name
from node.devtools.federation import DEMO_AGENCIES, NodeProcess, build_federation, free_port
from node.storage.db import TEST_MAX_PAGES_ENV

if TYPE_CHECKING:
    from conftest import Cli, LiveFederation

pytestmark = pytest.mark.integration

GB, FR = "GB-NCA", "FR-OCRTEH"
PASS, OFFICER_PASS = b"node-pass", b"officer-pass"
ENV = dict(os.environ, MLAX_KEY_PASSPHRASE=PASS.decode(), MLAX_KDF_PROFILE="test")
INT64_MAX = 2**63 - 1
STORAGE_FULL = "The node's storage is full."


def _json_lines(path: Path) -> list[dict[str, Any]]:
    """Every line of a node's log, each of which must be one JSON object."""
    out = []
    for n, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
        try:
            doc = json.loads(line)
        except ValueError:
            raise AssertionError(f"{path} line {n} is not JSON: {line[:200]!r}") from None
        assert isinstance(doc, dict), line
        out.append(doc)
    return out


def _metric(port: int, name: str, labels: dict[str, str]) -> float:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
        text = resp.read().decode()
    want = name + "{" + ",".join(f'{k}="{v}"' for k, v in sorted(labels.items())) + "} "
    for line in text.splitlines():
        if line.startswith(want):
            return float(line.removeprefix(want))
    return 0.0


def _wait_for(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"{what} within {timeout} s"
        time.sleep(0.1)


def _officer_channel(bundle: Path, passphrase: bytes) -> grpc.Channel:
    cred = Credential.load(bundle, passphrase)
    creds = grpc.ssl_channel_credentials(
        cred.server_certificate, cred.private_key_pem, cred.certificate
    )
    opts = [("grpc.ssl_target_name_override", _server_name(cred.server_certificate))]
    return grpc.secure_channel(cred.endpoint, creds, options=opts)


# -- junk and extreme input, on the shared federation ---------------------------------


def _refused(call: Callable[[], object]) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as exc:
        call()
    return exc.value


@pytest.mark.xdist_group("federation")
def test_junk_and_extreme_input_get_a_clear_status_and_the_log_stays_json(
    live: LiveFederation,
) -> None:
    fed = live.peer_channel(GB, FR)

    def federation(method: str, data: bytes) -> Callable[[], object]:
        call: grpc.UnaryUnaryMultiCallable[bytes, bytes] = fed.unary_unary(
            f"/mlax.v1.Federation/{method}", request_serializer=None, response_deserializer=None
        )
        return lambda: call(data, timeout=10)

    junk = b"\xff\xff\xff\xff junk"
    port = live.metrics_ports[FR]
    labels = {"method": "/mlax.v1.Federation/GetEntries", "code": "INVALID_ARGUMENT"}
    counted = _metric(port, "mlax_rpc_errors_total", labels)
    answers = {
        "GetEntries junk": _refused(federation("GetEntries", junk)),
        "GetEntries start 2^64-1": _refused(
            federation("GetEntries", lpb.GetEntriesRequest(start=2**64 - 1).SerializeToString())
        ),
        "InclusionProof tree_size 2^64-1": _refused(
            federation(
                "GetInclusionProof",
                lpb.InclusionProofRequest(tree_size=2**64 - 1).SerializeToString(),
            )
        ),
        "ConsistencyProof junk": _refused(federation("GetConsistencyProof", junk)),
        "AttachmentStatus junk": _refused(federation("AttachmentStatus", junk)),
    }
    expected = {
        "GetEntries junk": grpc.StatusCode.INVALID_ARGUMENT,
        "GetEntries start 2^64-1": grpc.StatusCode.OUT_OF_RANGE,
        "InclusionProof tree_size 2^64-1": grpc.StatusCode.OUT_OF_RANGE,
        "ConsistencyProof junk": grpc.StatusCode.INVALID_ARGUMENT,
        "AttachmentStatus junk": grpc.StatusCode.INVALID_ARGUMENT,
    }
    # A client stream whose first message is junk.
    push: grpc.StreamUnaryMultiCallable[bytes, bytes] = fed.stream_unary(
        "/mlax.v1.Federation/PushAttachment", request_serializer=None, response_deserializer=None
    )
    chunk = apb.AttachmentChunk(attachment_id=b"\x01" * 16, index=0).SerializeToString()
    answers["PushAttachment junk chunk"] = _refused(lambda: push(iter([junk, chunk]), timeout=10))
    expected["PushAttachment junk chunk"] = grpc.StatusCode.INVALID_ARGUMENT

    # The largest signed 64-bit start is past the end: an empty list, not an overflow.
    last = lpb.GetEntriesRequest(start=INT64_MAX, count=1000).SerializeToString()
    answer = federation("GetEntries", last)()
    assert isinstance(answer, bytes)
    assert lpb.GetEntriesResponse.FromString(answer).entries == []

    # The officer listener: an auditor's export past the ledger's end, junk for a listing.
    with _officer_channel(live.credential(FR, "auditor"), live.officer_passphrase) as off:
        export: grpc.UnaryStreamMultiCallable[bytes, bytes] = off.unary_stream(
            "/mlax.v1.Officer/ExportLedger", request_serializer=None, response_deserializer=None
        )
        for name, request in (
            ("ExportLedger end 2^64-1", opb.ExportLedgerRequest(end=2**64 - 1)),
            ("ExportLedger end past the ledger", opb.ExportLedgerRequest(end=INT64_MAX)),
            ("ExportLedger start after end", opb.ExportLedgerRequest(start=5, end=2)),
        ):
            with pytest.raises(grpc.RpcError) as exc:
                list(export(request.SerializeToString(), timeout=10))
            answers[name] = exc.value
            expected[name] = grpc.StatusCode.OUT_OF_RANGE
        listing: grpc.UnaryUnaryMultiCallable[bytes, bytes] = off.unary_unary(
            "/mlax.v1.Officer/ListMessages", request_serializer=None, response_deserializer=None
        )
        answers["ListMessages junk"] = _refused(lambda: listing(junk, timeout=10))
        expected["ListMessages junk"] = grpc.StatusCode.INVALID_ARGUMENT

    for name, err in answers.items():
        details = err.details() or ""
        assert err.code() == expected[name], (name, err.code(), details)
        assert details.endswith("."), (name, details)
        assert "\n" not in details, (name, details)
        for leak in ("Exception", "Traceback", "sqlite", "Overflow"):
            assert leak not in details, (name, details)
    assert _metric(port, "mlax_rpc_errors_total", labels) == counted + 1
    assert live.nodes[FR].running, live.nodes[FR].log_tail()
    # Every line FR wrote in this session is JSON (each test's calls included).
    _json_lines(live.nodes[FR].log_path)


# -- a node whose storage is full -----------------------------------------------------


@pytest.fixture
def full_fr(tmp_path: Path) -> Iterator[dict[str, Any]]:
    """GB-NCA and FR-OCRTEH running; FR's database has room for little more than its start."""
    fed = build_federation(
        tmp_path, PASS, OFFICER_PASS, agencies=DEMO_AGENCIES[:2], delivery={"lease_seconds": 12}
    )
    metrics_port = free_port()
    with fed.nodes[FR].config.open("a") as f:
        f.write(f'\n[metrics]\nlisten = "127.0.0.1:{metrics_port}"\n')
    db = fed.nodes[FR].root / "data" / "node.db"
    conn = sqlite3.connect(db)
    try:
        # A filler the test deletes to give the space back, like a file on a full disk.
        with conn:
            conn.execute("CREATE TABLE test_filler (data BLOB)")
            conn.executemany("INSERT INTO test_filler VALUES (?)", [(b"\0" * 100_000,)] * 20)
        pages = conn.execute("PRAGMA page_count").fetchone()[0]
    finally:
        conn.close()
    gb = NodeProcess(fed.nodes[GB], ENV)
    fr = NodeProcess(fed.nodes[FR], {**ENV, TEST_MAX_PAGES_ENV: str(pages + 60)})
    gb.start(wait=0)
    fr.start(wait=0)
    try:
        gb.wait_ready(NodeProcess.READY_SECONDS)
        fr.wait_ready(NodeProcess.READY_SECONDS)
        yield {"fed": fed, "gb": gb, "fr": fr, "metrics_port": metrics_port, "db": db}
    finally:
        codes = {GB: gb.stop(), FR: fr.stop()}
    # A full disk does not turn a clean stop into a crash.
    assert codes == {GB: 0, FR: 0}, (codes, fr.log_tail())


def test_a_full_node_says_so_in_one_sentence_and_resumes_when_space_returns(
    full_fr: dict[str, Any], cli: Cli, tmp_path: Path
) -> None:
    fed, fr = full_fr["fed"], full_fr["fr"]
    body = tmp_path / "body.txt"
    gb_officer = OfficerClient.from_bundle(fed.nodes[GB].credentials["officer"], OFFICER_PASS)
    fr_officer = OfficerClient.from_bundle(fed.nodes[FR].credentials["officer"], OFFICER_PASS)
    try:
        # 200 KB messages to FR: its database fills within the first few.
        for i in range(4):
            gb_officer.send(FR, subject=f"filler {i}", text=os.urandom(100_000).hex())

        def peer_told_full() -> bool:
            return any(
                m.last_error == f"RESOURCE_EXHAUSTED: {STORAGE_FULL}"
                for m in gb_officer.outbox(limit=10)
            )

        _wait_for(peer_told_full, 60, "GB's outbox did not show FR's storage as full")
        for m in gb_officer.outbox(limit=10):
            assert m.last_error in ("", f"RESOURCE_EXHAUSTED: {STORAGE_FULL}"), m.last_error

        # An officer of the full node, through the SDK and the CLI (200 KB each: a small
        # message could still fit in the last pages).
        big = os.urandom(100_000).hex()
        with pytest.raises(NodeCallError) as exc:
            fr_officer.send(GB, subject="x", text=big)
        assert exc.value.status == "RESOURCE_EXHAUSTED"
        assert exc.value.message == STORAGE_FULL
        body.write_text(big)
        result = cli.run(
            "send",
            "--to",
            GB,
            "--subject",
            "x",
            "--body-file",
            body,
            "--as",
            fed.nodes[FR].credentials["officer"],
            env={"MLAX_OFFICER_PASSPHRASE": OFFICER_PASS.decode()},
        )
        assert cli.refusal(result, 1) == STORAGE_FULL
        held = {m.message_id for m in fr_officer.inbox(limit=100)}

        # Space returns (the filler goes): with no restart, the node takes writes again,
        # the peer's queued messages arrive and nothing it had acknowledged is lost.
        conn = sqlite3.connect(full_fr["db"], timeout=30)
        try:
            with conn:
                conn.execute("DELETE FROM test_filler")
        finally:
            conn.close()
        fr_officer.send(GB, subject="after", text=big)

        def gb_delivered_all() -> bool:
            return {m.state for m in gb_officer.outbox(limit=10)} == {"delivered"}

        _wait_for(gb_delivered_all, 60, "GB did not deliver its queue once FR had room")
        inbox = [m.message_id for m in fr_officer.inbox(limit=100)]
        assert len(inbox) == len(set(inbox)) == 4
        assert held <= set(inbox)
        assert {m.message_id for m in gb_officer.outbox(limit=10)} == set(inbox)
    finally:
        gb_officer.close()
        fr_officer.close()

    port = full_fr["metrics_port"]
    for method in ("/mlax.v1.Federation/DeliverBatch", "/mlax.v1.Officer/Submit"):
        labels = {"method": method, "code": "RESOURCE_EXHAUSTED"}
        assert _metric(port, "mlax_rpc_errors_total", labels) >= 1, method
    assert fr.running, fr.log_tail()

    # FR's log: JSON only, the storage_full event, and no flood from the failing work.
    lines = _json_lines(fr.log_path)
    events = [line["event"] for line in lines]
    assert "storage_full" in events
    assert all(e["storage_full"] for e in lines if e["event"].endswith("_tick_failed"))
    for event in set(events):
        if event.endswith(("_failed", "storage_full")):
            assert events.count(event) <= 2, (event, events.count(event))


# -- the node's files -----------------------------------------------------------------


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_the_data_dir_and_database_are_private_and_loose_ones_are_tightened(
    tmp_path: Path,
) -> None:
    old_umask = os.umask(0o022)  # what a shell usually has
    try:
        fed = build_federation(tmp_path, PASS, OFFICER_PASS, agencies=DEMO_AGENCIES[:1])
    finally:
        os.umask(old_umask)
    setup = fed.nodes[GB]
    data = setup.root / "data"
    db = data / "node.db"
    assert _mode(data) == 0o700
    assert _mode(db) == 0o600  # made by build_federation, as by `mlax officer add`
    # A node installed by an earlier version: readable by everyone.
    data.chmod(0o755)
    db.chmod(0o644)
    node = NodeProcess(setup, ENV)
    node.start(wait=NodeProcess.READY_SECONDS)
    try:
        assert _mode(data) == 0o700
        for name in ("node.db", "node.db-wal", "node.db-shm"):
            assert _mode(data / name) == 0o600, name
        tightened = {
            line["path"]
            for line in _json_lines(node.log_path)
            if line["event"] == "permissions_tightened"
        }
        assert tightened == {str(data), str(db)}
    finally:
        assert node.stop() == 0
