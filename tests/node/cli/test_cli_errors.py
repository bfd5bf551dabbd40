"""No `mlax` command shows a Python traceback for an error: one sentence on stderr and a
non-zero exit; with MLAX_DEBUG=1 the traceback comes first, for a bug report."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

import node.cli.node_cmd
import node.transport
from exchange.errors import MlaxError
from node.cli import app, main
from node.devtools.federation import mlax_command

UNEXPECTED = "error: Unexpected error (ValueError: boom); set MLAX_DEBUG=1 for details."


def _one_sentence(stderr: str) -> str:
    assert "Traceback" not in stderr, stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    return lines[0]


def _boom(*args: object, **kwargs: object) -> None:
    raise ValueError("boom\nsecond line")


@pytest.fixture
def runner(monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    monkeypatch.delenv("MLAX_DEBUG", raising=False)
    monkeypatch.setenv("COLUMNS", "300")
    return CliRunner()


def test_an_unexpected_exception_in_a_command_is_one_sentence_and_exit_1(
    runner: CliRunner, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(node.cli.node_cmd, "load_config", _boom)
    result = runner.invoke(app, ["node", "check-config", "--config", str(tmp_path / "x.toml")])
    assert result.exit_code == 1
    assert _one_sentence(result.stderr) == UNEXPECTED
    assert result.stdout == ""


def test_mlax_debug_shows_the_traceback_then_the_sentence(
    runner: CliRunner, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(node.cli.node_cmd, "load_config", _boom)
    monkeypatch.setenv("MLAX_DEBUG", "1")
    result = runner.invoke(app, ["node", "check-config", "--config", str(tmp_path / "x.toml")])
    assert result.exit_code == 1
    assert "Traceback (most recent call last)" in result.stderr
    assert "ValueError: boom" in result.stderr
    assert result.stderr.strip().splitlines()[-1] == UNEXPECTED


def test_mlax_debug_also_shows_where_an_expected_refusal_came_from(
    runner: CliRunner, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise MlaxError("The configuration is refused.")

    monkeypatch.setattr(node.cli.node_cmd, "load_config", refuse)
    args = ["node", "check-config", "--config", str(tmp_path / "x.toml")]
    plain = runner.invoke(app, args)
    assert plain.exit_code == 1
    assert _one_sentence(plain.stderr) == "error: The configuration is refused."
    monkeypatch.setenv("MLAX_DEBUG", "1")
    debug = runner.invoke(app, args)
    assert debug.exit_code == 1
    assert "Traceback (most recent call last)" in debug.stderr
    assert debug.stderr.strip().splitlines()[-1] == "error: The configuration is refused."


def test_what_no_command_caught_is_still_one_sentence(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # main() is the console script: an error before or around the command (here in its
    # set-up) must not escape as a traceback either.
    monkeypatch.delenv("MLAX_DEBUG", raising=False)
    monkeypatch.setattr(node.transport, "bound_buffer_memory", _boom)
    monkeypatch.setattr(sys, "argv", ["mlax", "--help"])
    with pytest.raises(SystemExit) as exit_:
        main()
    assert exit_.value.code == 1
    assert _one_sentence(capsys.readouterr().err) == UNEXPECTED


def test_main_passes_on_the_exit_status_of_a_command(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(sys, "argv", ["mlax", "node", "check-config", "--config", "/nonexistent"])
    with pytest.raises(SystemExit) as exit_:
        main()
    assert exit_.value.code == 1
    assert _one_sentence(capsys.readouterr().err).startswith("error: ")


def _mlax(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    full = {k: v for k, v in os.environ.items() if k != "MLAX_DEBUG"}
    full.update({"COLUMNS": "300", "NO_COLOR": "1", "TERM": "dumb", **env})
    return subprocess.run(
        [*mlax_command(), *args],
        env=full,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        stdin=subprocess.DEVNULL,
    )


def test_the_demo_fails_with_one_sentence_not_a_traceback(tmp_path: Path) -> None:
    # `mlax demo` once had no error handling at all: any failure was a raw traceback.
    not_a_directory = tmp_path / "file"
    not_a_directory.write_text("")
    result = _mlax("demo", "--dir", str(not_a_directory))
    assert result.returncode == 1
    assert _one_sentence(result.stderr) == f"error: File exists: {not_a_directory}."

    debug = _mlax("demo", "--dir", str(not_a_directory), MLAX_DEBUG="1")
    assert debug.returncode == 1
    assert "Traceback (most recent call last)" in debug.stderr
    assert debug.stderr.strip().splitlines()[-1] == f"error: File exists: {not_a_directory}."
