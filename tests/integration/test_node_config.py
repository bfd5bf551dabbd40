"""A node refuses a bad configuration at start with one sentence naming what is wrong.

Two levels: `node.config.load_config` raises ConfigError naming the key (fast, in
process), and `mlax node serve --config X` exits non-zero with that one sentence on
stderr, no traceback and no `node_ready` (a real process each). No federation runs here.
"""

from __future__ import annotations

import json
import math
import socket
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from node.config import ConfigError, load_config
from node.devtools.federation import build_federation, free_port

if TYPE_CHECKING:
    from conftest import Cli

pytestmark = pytest.mark.xdist_group("node-config")

GB = "GB-NCA"


def toml(sections: dict[str, Any]) -> str:
    """TOML text for {section: {key: value}}; a non-dict value is written as a top-level key."""
    out = [f"{k} = {_value(v)}" for k, v in sections.items() if not isinstance(v, dict)]
    for name, body in sections.items():
        if isinstance(body, dict):
            out.append(f"\n[{name}]")
            out += [f"{k} = {_value(v)}" for k, v in body.items()]
    return "\n".join(out) + "\n"


def _value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float) and math.isnan(v):
        return "nan"
    if isinstance(v, int | float):
        return repr(v)
    return json.dumps(v)


@dataclass
class NodeHome:
    """A complete node of one agency (identity, data dir, directory installed), not running."""

    root: Path
    keys: Path
    data: Path

    def sections(self, **changes: Any) -> dict[str, Any]:
        """A valid configuration of this node with sections changed: a dict is merged into
        the section, None removes it, anything else replaces it."""
        base: dict[str, Any] = {
            "node": {"agency": GB, "identity_dir": str(self.keys), "data_dir": str(self.data)},
            "federation": {"listen": f"127.0.0.1:{free_port()}"},
            "officer": {"listen": f"127.0.0.1:{free_port()}"},
        }
        for name, change in changes.items():
            if change is None:
                base.pop(name, None)
            elif isinstance(change, dict):
                base[name] = {**base.get(name, {}), **change}
            else:
                base[name] = change
        return base

    def write(self, name: str, text: str | bytes) -> Path:
        path = self.root / name
        if isinstance(text, bytes):
            path.write_bytes(text)
        else:
            path.write_text(text)
        return path


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> NodeHome:
    root = tmp_path_factory.mktemp("config")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MLAX_KDF_PROFILE", "test")
        fed = build_federation(root / "fed", b"pw", b"opw", agencies=((GB, "NCA"),))
    node = fed.nodes[GB]
    return NodeHome(root, node.root / "keys", node.root / "data")


def serve(
    cli: Cli, config: Path, env: dict[str, str | None] | None = None, grpc_log_ok: bool = False
) -> str:
    """Run `mlax node serve`; assert it refuses to start; return its one sentence."""
    try:
        result = cli.run("node", "serve", "--config", config, env=env, timeout=30)
    except subprocess.TimeoutExpired:
        pytest.fail(f"the node started with {config} instead of refusing it")
    assert "node_ready" not in result.stderr + result.stdout
    return cli.refusal(result, 1, grpc_log_ok)


# -- load_config, in process ------------------------------------------------------------

BAD_CONFIGS = [
    pytest.param({"node": {"agency": 1}}, "node.agency", id="agency-not-string"),
    pytest.param({"node": {"agency": "gb"}}, "node.agency", id="agency-not-an-id"),
    pytest.param({"node": {"agnecy": GB}}, "node.agnecy", id="unknown-key"),
    pytest.param({"node": {"identity_dir": ""}}, "node.identity_dir", id="empty-path"),
    pytest.param({"node": {"data_dir": 5}}, "node.data_dir", id="path-not-string"),
    pytest.param({"federation": {"listen": "nowhere"}}, "federation.listen", id="no-port"),
    pytest.param({"federation": {"listen": ":7443"}}, "federation.listen", id="no-host"),
    pytest.param({"federation": {"listen": "127.0.0.1:0"}}, "federation.listen", id="port-0"),
    pytest.param(
        {"federation": {"listen": "127.0.0.1:70000"}}, "federation.listen", id="port-too-big"
    ),
    pytest.param({"officer": {"listen": 7443}}, "officer.listen", id="listen-not-string"),
    pytest.param({"officer": {"max_workers": 0}}, "officer.max_workers", id="zero-workers"),
    pytest.param({"officer": {"max_workers": 1.5}}, "officer.max_workers", id="float-workers"),
    pytest.param({"federation": {"reuse_port": "yes"}}, "federation.reuse_port", id="bool"),
    pytest.param(
        {"delivery": {"max_backoff_seconds": "soon"}},
        "delivery.max_backoff_seconds",
        id="number-is-string",
    ),
    pytest.param(
        {"delivery": {"max_backoff_seconds": -1}}, "delivery.max_backoff_seconds", id="negative"
    ),
    pytest.param(
        {"delivery": {"max_backoff_seconds": True}},
        "delivery.max_backoff_seconds",
        id="number-is-bool",
    ),
    pytest.param(
        {"delivery": {"initial_backoff_seconds": 10, "max_backoff_seconds": 1}},
        "delivery.initial_backoff_seconds",
        id="initial-over-max",
    ),
    pytest.param(
        {"delivery": {"max_backoff_seconds": math.nan}},
        "delivery.max_backoff_seconds",
        id="nan",
    ),
    pytest.param({"limits": {"max_message_bytes": "4MiB"}}, "limits.max_message_bytes", id="int"),
    pytest.param({"log": {"level": "loud"}}, "log.level", id="log-level"),
    pytest.param({"storage": {"url": "mysql://db"}}, "storage.url", id="storage-url"),
    pytest.param({"metrics": {"listen": "9100"}}, "metrics.listen", id="metrics-listen"),
    pytest.param({"nodes": {"agency": GB}}, "[nodes]", id="unknown-section"),
    pytest.param({"delivery": 5}, "[delivery]", id="section-not-table"),
    pytest.param({"federation": None}, "[federation]", id="missing-section"),
]


@pytest.mark.parametrize(("changes", "key"), BAD_CONFIGS)
def test_load_config_names_the_bad_key(
    home: NodeHome, changes: dict[str, Any], key: str, tmp_path: Path
) -> None:
    path = tmp_path / "node.toml"
    path.write_text(toml(home.sections(**changes)))
    with pytest.raises(ConfigError) as exc:
        load_config(path)
    assert key in exc.value.message, exc.value.message


def test_load_config_missing_agency(home: NodeHome, tmp_path: Path) -> None:
    sections = home.sections()
    del sections["node"]["agency"]
    path = tmp_path / "node.toml"
    path.write_text(toml(sections))
    with pytest.raises(ConfigError, match=r"node\.agency is required"):
        load_config(path)


def test_load_config_missing_file_and_invalid_toml(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "absent.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[node\nagency = ")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(bad)


def test_load_config_not_utf8(tmp_path: Path) -> None:
    bad = tmp_path / "latin1.toml"
    bad.write_bytes('[node]\nagency = "GB-NCA" # café\n'.encode("latin-1"))
    with pytest.raises(ConfigError, match=r"latin1\.toml"):
        load_config(bad)


def test_load_config_directory_instead_of_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="directory"):
        load_config(tmp_path)


def test_valid_config_loads(home: NodeHome, tmp_path: Path) -> None:
    path = tmp_path / "node.toml"
    path.write_text(toml(home.sections(delivery={"max_backoff_seconds": 5})))
    cfg = load_config(path)
    assert cfg.node.agency == GB
    assert cfg.delivery.max_backoff_seconds == 5.0
    assert cfg.federation.reuse_port is False


# -- `mlax node serve`, a real process each ---------------------------------------------


def test_serve_missing_file(cli: Cli, tmp_path: Path) -> None:
    assert "does not exist" in serve(cli, tmp_path / "absent.toml")


def test_serve_invalid_toml(cli: Cli, home: NodeHome) -> None:
    path = home.write("invalid.toml", '[node]\nagency = "GB-NCA\n')
    assert "not valid TOML" in serve(cli, path)


@pytest.mark.parametrize(
    ("changes", "key"),
    [
        pytest.param({"nodes": {"x": 1}}, "[nodes]", id="unknown-section"),
        pytest.param({"delivery": {"max_retries": 3}}, "delivery.max_retries", id="unknown-key"),
        pytest.param(
            {"delivery": {"max_backoff_seconds": "soon"}},
            "delivery.max_backoff_seconds",
            id="wrong-type",
        ),
        pytest.param({"federation": {"listen": "localhost"}}, "federation.listen", id="listen"),
    ],
)
def test_serve_names_the_bad_key(
    cli: Cli, home: NodeHome, changes: dict[str, Any], key: str, tmp_path: Path
) -> None:
    path = tmp_path / "node.toml"
    path.write_text(toml(home.sections(**changes)))
    assert key in serve(cli, path)


def test_serve_missing_agency(cli: Cli, home: NodeHome, tmp_path: Path) -> None:
    sections = home.sections()
    del sections["node"]["agency"]
    path = tmp_path / "node.toml"
    path.write_text(toml(sections))
    assert "node.agency" in serve(cli, path)


def test_serve_wrong_passphrase(cli: Cli, home: NodeHome, tmp_path: Path) -> None:
    path = tmp_path / "node.toml"
    path.write_text(toml(home.sections()))
    sentence = serve(cli, path, env={"MLAX_KEY_PASSPHRASE": "not the passphrase"})
    assert "passphrase" in sentence


def test_serve_without_passphrase_and_terminal(cli: Cli, home: NodeHome, tmp_path: Path) -> None:
    path = tmp_path / "node.toml"
    path.write_text(toml(home.sections()))
    sentence = serve(cli, path, env={"MLAX_KEY_PASSPHRASE": None})
    assert "MLAX_KEY_PASSPHRASE" in sentence


def test_serve_agency_not_matching_identity(cli: Cli, home: NodeHome, tmp_path: Path) -> None:
    path = tmp_path / "node.toml"
    path.write_text(toml(home.sections(node={"agency": "FR-OCRTEH"})))
    sentence = serve(cli, path)
    assert "FR-OCRTEH" in sentence
    assert GB in sentence


def test_serve_missing_identity(cli: Cli, home: NodeHome, tmp_path: Path) -> None:
    path = tmp_path / "node.toml"
    path.write_text(toml(home.sections(node={"identity_dir": str(tmp_path / "no-keys")})))
    assert "no-keys" in serve(cli, path)


def test_serve_without_directory_installed(cli: Cli, home: NodeHome, tmp_path: Path) -> None:
    path = tmp_path / "node.toml"
    path.write_text(toml(home.sections(node={"data_dir": str(tmp_path / "fresh-data")})))
    sentence = serve(cli, path)
    assert "directory" in sentence
    assert "mlax node directory update" in sentence


# -- ports already in use -----------------------------------------------------------------


@dataclass
class PortInUse:
    port: int
    result: subprocess.CompletedProcess[str]


@pytest.fixture(scope="module", params=["federation", "officer"])
def port_in_use(request: pytest.FixtureRequest, cli: Cli, home: NodeHome) -> Any:
    """`mlax node serve` with one listener on a port another socket holds, sharing allowed
    (SO_REUSEPORT on, as a gRPC server sets it by default): the node must not share it."""
    listener = request.param
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        path = home.root / f"port-in-use-{listener}.toml"
        path.write_text(toml(home.sections(**{listener: {"listen": f"127.0.0.1:{port}"}})))
        try:
            result = cli.run("node", "serve", "--config", path, timeout=30)
        except subprocess.TimeoutExpired:
            pytest.fail(f"the node started on {listener} port {port}, already in use")
        yield PortInUse(port, result)


def test_serve_on_a_port_in_use_does_not_start(port_in_use: PortInUse) -> None:
    result = port_in_use.result
    assert result.returncode != 0
    assert "node_ready" not in result.stderr + result.stdout


def test_serve_on_a_port_in_use_says_so_in_one_sentence(cli: Cli, port_in_use: PortInUse) -> None:
    sentence = cli.refusal(port_in_use.result, 1, grpc_log_ok=True)
    assert f"127.0.0.1:{port_in_use.port}" in sentence or ".listen" in sentence
