"""Generate the Python wire layer from proto/ into a target package directory.

Run as `python scripts/gen_proto.py exchange/_proto`. Imports between generated
modules are rewritten to live under `exchange._proto`, so the wire layer is one
self-contained package.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

from grpc_tools import protoc  # type: ignore[import-untyped]

ROOT = Path(__file__).resolve().parent.parent
PROTO_ROOT = ROOT / "proto"
PACKAGE = "exchange._proto"


def generate(out_dir: Path) -> None:
    """Write *_pb2.py, *_pb2.pyi and *_pb2_grpc.py for every .proto under proto/."""
    import grpc_tools

    include = Path(grpc_tools.__file__).parent / "_proto"
    # The mypy-protobuf plugins are installed beside the interpreter running this script.
    bindir = Path(sys.executable).parent
    sources = sorted(str(p.relative_to(PROTO_ROOT)) for p in PROTO_ROOT.rglob("*.proto"))
    out_dir.mkdir(parents=True, exist_ok=True)
    args = [
        "protoc",
        f"-I{PROTO_ROOT}",
        f"-I{include}",
        f"--plugin=protoc-gen-mypy={bindir / 'protoc-gen-mypy'}",
        f"--plugin=protoc-gen-mypy_grpc={bindir / 'protoc-gen-mypy_grpc'}",
        f"--python_out={out_dir}",
        f"--mypy_out={out_dir}",
        f"--grpc_python_out={out_dir}",
        f"--mypy_grpc_out={out_dir}",
        *sources,
    ]
    if protoc.main(args) != 0:
        raise SystemExit("protoc failed")
    for path in out_dir.rglob("*.py*"):
        text = path.read_text()
        fixed = re.sub(r"^from mlax\.v1 import", f"from {PACKAGE}.mlax.v1 import", text, flags=re.M)
        fixed = re.sub(r"^import mlax\.v1\.", f"import {PACKAGE}.mlax.v1.", fixed, flags=re.M)
        fixed = fixed.replace(" mlax.v1.", f" {PACKAGE}.mlax.v1.")
        if fixed != text:
            path.write_text(fixed)
    for pkg in [out_dir, out_dir / "mlax", out_dir / "mlax" / "v1"]:
        (pkg / "__init__.py").touch()


if __name__ == "__main__":
    generate(Path(sys.argv[1]).resolve())
