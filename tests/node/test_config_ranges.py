"""Every configuration value has a sane range, checked where the file is read: values
that `mlax node serve` would choke on (OverflowError in gRPC, a NUL in a path, a wait
too long for a thread) are refused by `mlax node check-config` with one sentence naming
the key, and change nothing."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from node.cli import app
from node.config import ConfigError, load_config

BASE = """
[node]
agency = "GB-NCA"
identity_dir = "keys"
data_dir = "data"

[federation]
listen = "127.0.0.1:7401"

[officer]
listen = "127.0.0.1:7402"
"""

BAD = [
    # (section, key = value, what the sentence must say)
    pytest.param("limits", "max_message_bytes = 3000000000", "limits.max_message_bytes", id="2^31"),
    pytest.param(
        "delivery", "rpc_timeout_seconds = 1e300", "delivery.rpc_timeout_seconds", id="1e300"
    ),
    pytest.param("delivery", "lease_seconds = 1e12", "delivery.lease_seconds", id="lease"),
    pytest.param(
        "ledger",
        "checkpoint_every_entries = 9999999999",
        "ledger.checkpoint_every_entries",
        id="int",
    ),
    pytest.param("officer", "max_workers = 100000", "officer.max_workers", id="workers"),
    pytest.param(
        "limits",
        "max_watchers = 40\nmax_streams = 24",
        "limits.max_watchers",
        id="more-watchers-than-streams",
    ),
    pytest.param("storage", "pool_size = 1000000", "storage.pool_size", id="pool"),
    pytest.param("cases", "urgent_ack_seconds = 1e-9", "cases.urgent_ack_seconds", id="tiny"),
    pytest.param("metrics", 'listen = "127.0.0.1:\u00b2"', "metrics.listen", id="superscript-port"),
    pytest.param(
        "metrics", 'listen = "127.0.0.1:\u0661\u0662"', "metrics.listen", id="arabic-digits"
    ),
    pytest.param("metrics", 'listen = "local host:9100"', "metrics.listen", id="space-in-host"),
    pytest.param(
        "storage", 'attachments_dir = "a\\u0000b"', "storage.attachments_dir", id="nul-path"
    ),
    pytest.param(
        "node", 'passphrase_file = "pass\\nword"', "node.passphrase_file", id="newline-path"
    ),
    pytest.param("officer", 'advertise = "host\\u0000:1"', "officer.advertise", id="nul-text"),
]


def _config(tmp_path: Path, section: str, line: str) -> Path:
    text = BASE
    header = f"[{section}]\n"
    text = (
        text.replace(header, header + line + "\n")
        if header in text
        else text + f"\n{header}{line}\n"
    )
    path = tmp_path / "node.toml"
    path.write_text(text)
    return path


@pytest.mark.parametrize(("section", "line", "key"), BAD)
def test_load_config_refuses_impossible_values_naming_the_key(
    tmp_path: Path, section: str, line: str, key: str
) -> None:
    with pytest.raises(ConfigError) as exc:
        load_config(_config(tmp_path, section, line))
    assert exc.value.message.startswith(key), exc.value.message
    assert exc.value.message.endswith(".")


@pytest.mark.parametrize(("section", "line", "key"), BAD)
def test_check_config_says_it_in_one_sentence(
    tmp_path: Path, section: str, line: str, key: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("MLAX_DEBUG", raising=False)
    monkeypatch.setenv("COLUMNS", "300")
    path = _config(tmp_path, section, line)
    result = CliRunner().invoke(app, ["node", "check-config", "--config", str(path)])
    assert result.exit_code == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"error: {key} must "), lines[0]
    assert "Unexpected" not in lines[0]
    assert not (tmp_path / "data").exists()  # nothing created


def test_the_range_is_in_the_sentence(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as exc:
        load_config(_config(tmp_path, "limits", "max_message_bytes = 3000000000"))
    assert exc.value.message == (
        "limits.max_message_bytes must be an integer from 65536 to 1073741824 (got 3000000000)."
    )
    with pytest.raises(ConfigError) as exc:
        load_config(_config(tmp_path, "delivery", "rpc_timeout_seconds = 1e300"))
    assert exc.value.message == (
        "delivery.rpc_timeout_seconds must be a number from 0.001 to 3600 (got 1e+300)."
    )


def test_a_data_dir_that_is_a_file_is_refused(tmp_path: Path) -> None:
    (tmp_path / "data").write_text("not a directory")
    with pytest.raises(ConfigError, match=r"^node\.data_dir .* is a file, not a directory\.$"):
        load_config(_config(tmp_path, "node", ""))


@pytest.mark.parametrize(
    ("section", "line"),
    [
        ("limits", "max_message_bytes = 1073741824"),
        ("delivery", "rpc_timeout_seconds = 3600\nlease_seconds = 86400"),
        ("delivery", "give_up_after_seconds = 31536000"),
        ("cases", "ordinary_response_seconds = 157680000"),
        ("federation", 'advertise = "[2001:db8::1]:7401"'),
        ("metrics", 'listen = "0.0.0.0:9100"'),
    ],
)
def test_values_at_the_edge_of_their_range_are_accepted(
    tmp_path: Path, section: str, line: str
) -> None:
    load_config(_config(tmp_path, section, line))
