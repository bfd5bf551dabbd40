"""The shutdown grace periods ([node]) and the readiness settings ([health]): defaults,
accepted values, and one sentence naming the key for a bad one."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
from typer.testing import CliRunner

from node.cli import app
from node.config import ConfigError, load_config

NODE = """
[node]
agency = "GB-NCA"
identity_dir = "keys"
data_dir = "data"
{node}
[federation]
listen = "127.0.0.1:7401"

[officer]
listen = "127.0.0.1:7402"
{rest}
"""


def _write(tmp_path: Path, node: str = "", rest: str = "") -> Path:
    path = tmp_path / "node.toml"
    path.write_text(NODE.format(node=node, rest=rest))
    return path


def test_defaults_are_the_former_fixed_graces(tmp_path: Path) -> None:
    cfg = load_config(_write(tmp_path))
    assert cfg.node.federation_shutdown_grace_seconds == 10.0
    assert cfg.node.officer_shutdown_grace_seconds == 2.0
    assert (cfg.health.check_interval_seconds, cfg.health.probe_timeout_seconds) == (5.0, 10.0)
    assert (cfg.health.min_free_mib, cfg.health.min_free_percent) == (1024, 2.0)


def test_values_are_taken(tmp_path: Path) -> None:
    cfg = load_config(
        _write(
            tmp_path,
            "federation_shutdown_grace_seconds = 25\nofficer_shutdown_grace_seconds = 0.5",
            "[health]\ncheck_interval_seconds = 1\nmin_free_mib = 4096\nmin_free_percent = 0.5",
        )
    )
    assert cfg.node.federation_shutdown_grace_seconds == 25.0
    assert cfg.node.officer_shutdown_grace_seconds == 0.5
    assert cfg.health.check_interval_seconds == 1.0
    assert (cfg.health.min_free_mib, cfg.health.min_free_percent) == (4096, 0.5)


@pytest.mark.parametrize(
    ("node", "rest", "sentence"),
    [
        (
            "federation_shutdown_grace_seconds = 0",
            "",
            "node.federation_shutdown_grace_seconds must be a positive number (got 0).",
        ),
        (
            "officer_shutdown_grace_seconds = 7200",
            "",
            "node.officer_shutdown_grace_seconds must be a number from 0.001 to 3600 (got 7200).",
        ),
        (
            'officer_shutdown_grace_seconds = "soon"',
            "",
            "node.officer_shutdown_grace_seconds must be a positive number (got 'soon').",
        ),
        (
            "",
            "[health]\nmin_free_percent = 60",
            "health.min_free_percent must be a number from 0.001 to 50 (got 60).",
        ),
        (
            "",
            "[health]\nprobe_timeout_seconds = 0.01",
            "health.probe_timeout_seconds must be a number from 0.1 to 3600 (got 0.01).",
        ),
        (
            "",
            "[health]\nmin_free_mib = 1.5",
            "health.min_free_mib must be a positive integer (got 1.5).",
        ),
        ("", "[health]\nmin_free_bytes = 5", "health.min_free_bytes is not a known setting."),
    ],
)
def test_bad_values_name_the_key(tmp_path: Path, node: str, rest: str, sentence: str) -> None:
    with pytest.raises(ConfigError) as exc:
        load_config(_write(tmp_path, node, rest))
    assert str(exc.value) == sentence


def test_check_config_refuses_a_bad_grace(tmp_path: Path) -> None:
    path = _write(tmp_path, "federation_shutdown_grace_seconds = -1")
    result = CliRunner().invoke(app, ["node", "check-config", "--config", str(path)])
    assert result.exit_code == 1
    assert "node.federation_shutdown_grace_seconds must be a positive number" in result.output


def test_node_health_needs_the_metrics_endpoint(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["node", "health", "--config", str(_write(tmp_path))])
    assert result.exit_code == 1
    assert "metrics.listen is not set" in result.output


def test_node_health_of_a_node_that_is_not_running_exits_3(tmp_path: Path) -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    path = _write(tmp_path, rest=f'[metrics]\nlisten = "0.0.0.0:{port}"')
    result = CliRunner().invoke(app, ["node", "health", "--config", str(path)])
    assert result.exit_code == 3
    assert f"The node's metrics at http://127.0.0.1:{port}/metrics cannot be read" in " ".join(
        result.output.split()
    )
