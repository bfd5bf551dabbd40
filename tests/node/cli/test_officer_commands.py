"""The officer commands share one path: the credential (--as / $MLAX_CREDENTIAL), --json
and the way a node's refusal or absence becomes one sentence and an exit status (all in
node/cli/common.py); and `--json` prints what it printed when the SDK returned protobuf."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import grpc
import pytest
from google.protobuf.json_format import MessageToDict
from google.protobuf.message import Message
from typer.testing import CliRunner

import node.cli
from exchange._proto.mlax.v1 import attachment_pb2 as apb
from exchange._proto.mlax.v1 import casework_pb2 as cpb
from exchange._proto.mlax.v1 import forms_pb2 as fpb
from exchange._proto.mlax.v1 import matching_pb2 as mpb
from node.cli import app, audit_cmd, cases_cmd, match_cmd, messages_cmd
from node.client import AttachmentInfo, CaseSummary, CaseView, NodeCallError, RecordsLoaded

CLI_DIR = Path(node.cli.__file__).parent


@pytest.fixture
def runner(monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    monkeypatch.delenv("MLAX_DEBUG", raising=False)
    monkeypatch.delenv("MLAX_CREDENTIAL", raising=False)
    monkeypatch.setenv("COLUMNS", "300")
    return CliRunner()


class FakeNode:
    """Stands for the SDK's clients: every call answers `answer`, or raises `error`."""

    def __init__(self, answer: object = None, error: Exception | None = None) -> None:
        self.answer = answer
        self.error = error
        self.client = self  # CaseClient(c).client
        self.closed = False

    def __enter__(self) -> FakeNode:
        return self

    def __exit__(self, *_: object) -> None:
        self.closed = True

    def __getattr__(self, name: str) -> object:
        def call(*args: object, **kwargs: object) -> object:
            if self.error is not None:
                raise self.error
            return self.answer

        return call


def _serve(monkeypatch: pytest.MonkeyPatch, fake: FakeNode) -> None:
    for module in (messages_cmd, cases_cmd, match_cmd, audit_cmd):
        monkeypatch.setattr(module, "officer_client", lambda cred: fake)
    monkeypatch.setattr(cases_cmd, "CaseClient", lambda client: client)
    monkeypatch.setattr(match_cmd, "MatchClient", lambda client: client)


def _old_json(message: Message | list[Message]) -> str:
    """What `--json` printed when the SDK returned the protobuf message itself."""
    doc: object = (
        [MessageToDict(m, preserving_proto_field_name=True) for m in message]
        if isinstance(message, list)
        else MessageToDict(message, preserving_proto_field_name=True)
    )
    return json.dumps(doc, indent=2, sort_keys=True, default=str) + "\n"


def _case() -> cpb.CaseView:
    view = cpb.CaseView(
        summary=cpb.CaseSummary(
            case_ref="GB-NCA-2026-0001",
            case_type="mla",
            role="requesting",
            peer="NG-NAPTIP",
            state="refused",
            seq=3,
            opened_at=1_700_000_000_000,
            overdue=["response"],
            form_digest=b"\x01" * 32,
            handling_codes=[1],
            queued_actions=["close"],
            local_seq=4,
        ),
        timeline=[
            cpb.CaseEvent(seq=1, action="submit", agency="GB-NCA", digest=b"\x02" * 32),
            cpb.CaseEvent(
                seq=2,
                action="refuse",
                agency="NG-NAPTIP",
                details=fpb.TransitionDetails(refuse=fpb.Refusal(explanation="No.")),
            ),
        ],
        attachments=[apb.AttachmentInfo(attachment_id="a1", size=2**40, sha256=b"\x03" * 32)],
    )
    view.form.mla.summary_of_facts = "Facts."
    return view


# -- one path -----------------------------------------------------------------------------


def test_no_command_module_borrows_a_private_helper_of_another() -> None:
    borrowed = []
    for path in sorted(CLI_DIR.glob("*.py")):
        for node_ in ast.walk(ast.parse(path.read_text())):
            if isinstance(node_, ast.ImportFrom) and (node_.module or "").startswith("node.cli"):
                borrowed += [f"{path.name}: {a.name}" for a in node_.names if a.name[0] == "_"]
    assert borrowed == []


def test_the_credential_and_json_options_are_declared_once() -> None:
    for path in sorted(CLI_DIR.glob("*.py")):
        text = path.read_text()
        if path.name != "common.py":
            assert 'typer.Option("--json"' not in text, path.name
            assert 'typer.Option(\n        "--as"' not in text, path.name
            assert "MLAX_CREDENTIAL" not in text, path.name


def test_a_command_without_a_credential_says_how_to_name_one(runner: CliRunner) -> None:
    result = runner.invoke(app, ["inbox"])
    assert result.exit_code == 1
    sentence = "error: Name your credential with --as FILE or $MLAX_CREDENTIAL."
    assert result.stderr.strip() == sentence


def test_a_missing_credential_file_is_named(
    runner: CliRunner, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("MLAX_CREDENTIAL", str(tmp_path / "gone.json"))
    result = runner.invoke(app, ["cases"])
    assert result.exit_code == 1
    assert result.stderr.strip() == f"error: No officer credential at {tmp_path / 'gone.json'}."


COMMANDS = [
    ["inbox"],
    ["send", "--to", "FR-OCRTEH", "--subject", "s", "--body", "b"],
    ["show", "m1"],
    ["cases"],
    ["case", "show", "GB-NCA-2026-0001"],
    ["case", "accept", "GB-NCA-2026-0001"],
    ["forward", "m1", "--to", "NG-NAPTIP"],
    ["match", "remove", "r1"],
    ["match", "query", "--given-name", "Ana", "--family-name", "Popescu"],
    ["match", "disclose", "GB-NCA-2026-0001"],
    ["match", "check", "GB-NCA-2026-0001"],
]


@pytest.mark.parametrize("args", COMMANDS, ids=lambda a: " ".join(a[:2]))
@pytest.mark.parametrize(
    ("code", "status"),
    [
        (grpc.StatusCode.UNAVAILABLE, 3),
        (grpc.StatusCode.INTERNAL, 3),
        (grpc.StatusCode.PERMISSION_DENIED, 1),
        (grpc.StatusCode.FAILED_PRECONDITION, 1),
    ],
)
def test_a_nodes_answer_is_one_sentence_and_one_exit_status_for_every_command(
    runner: CliRunner,
    monkeypatch: pytest.MonkeyPatch,
    args: list[str],
    code: grpc.StatusCode,
    status: int,
) -> None:
    fake = FakeNode(error=NodeCallError(code, "The node said no."))
    _serve(monkeypatch, fake)
    result = runner.invoke(app, [*args, "--as", "x.json"])
    assert result.exit_code == status, result.stderr
    assert result.stderr == "error: The node said no.\n"
    assert result.stdout == ""
    assert fake.closed  # the channel is closed on the way out


def test_an_audit_export_that_cannot_reach_the_node_exits_3(
    runner: CliRunner, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    fake = FakeNode(error=NodeCallError(grpc.StatusCode.UNAVAILABLE, "The node is down."))
    _serve(monkeypatch, fake)
    out = tmp_path / "ledger.bin"
    result = runner.invoke(app, ["audit", "export", "--out", str(out), "--as", "x.json"])
    assert result.exit_code == 3
    assert result.stderr == "error: The node is down.\n"
    assert not out.exists()
    assert not list(tmp_path.iterdir())


# -- --json is what it was ------------------------------------------------------------------


@pytest.mark.parametrize("args", [["case", "show", "R"], ["case", "submit", "R"]])
def test_case_json_is_byte_for_byte_what_the_message_gave(
    runner: CliRunner, monkeypatch: pytest.MonkeyPatch, args: list[str]
) -> None:
    wire = _case()
    _serve(monkeypatch, FakeNode(answer=CaseView.from_proto(wire)))
    result = runner.invoke(app, [*args, "--json", "--as", "x.json"])
    assert result.exit_code == 0, result.stderr
    assert result.stdout == _old_json(wire)
    doc = json.loads(result.stdout)
    assert doc["summary"]["case_ref"] == "GB-NCA-2026-0001"
    assert doc["summary"]["opened_at"] == "1700000000000"  # int64: a string, as before
    assert doc["timeline"][1]["details"]["refuse"]["explanation"] == "No."


def test_cases_json_is_byte_for_byte_what_the_messages_gave(
    runner: CliRunner, monkeypatch: pytest.MonkeyPatch
) -> None:
    wires = [_case().summary, cpb.CaseSummary(case_ref="GB-NCA-2026-0002", state="draft")]
    _serve(monkeypatch, FakeNode(answer=[CaseSummary.from_proto(w) for w in wires]))
    result = runner.invoke(app, ["cases", "--json", "--as", "x.json"])
    assert result.exit_code == 0, result.stderr
    assert result.stdout == _old_json(wires)


def test_match_and_download_json_are_byte_for_byte_what_the_messages_gave(
    runner: CliRunner, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    loaded = mpb.LoadRecordsResponse(added=3, removed=1, index_version=9, records=12)
    _serve(monkeypatch, FakeNode(answer=RecordsLoaded.from_proto(loaded)))
    result = runner.invoke(app, ["match", "remove", "r1", "--json", "--as", "x.json"])
    assert result.exit_code == 0, result.stderr
    assert result.stdout == _old_json(loaded)

    info = apb.AttachmentInfo(attachment_id="a1", name="f.bin", size=2, sha256=b"\x05" * 32)
    view = CaseView.from_proto(cpb.CaseView(summary=cpb.CaseSummary(), attachments=[info]))

    class Desk(FakeNode):
        def get(self, *args: object) -> CaseView:
            return view

        def download(self, *args: object, **kwargs: object) -> AttachmentInfo:
            return AttachmentInfo.from_proto(info)

    _serve(monkeypatch, Desk())
    out = tmp_path / "f.bin"
    result = runner.invoke(
        app, ["download", "R", "a1", "--out", str(out), "--json", "--as", "x.json"]
    )
    assert result.exit_code == 0, result.stderr
    assert result.stdout == _old_json(info)
