"""Regenerate the committed protobuf/gRPC code from proto/ (the one way to do it).

Generated modules land in bandit_router/v1/, matching the proto package path, so the
imports protoc writes (``from bandit_router.v1 import ...``) resolve inside our package.
Run with ``--check`` to fail when the committed files are stale (used by the tests).
"""

from __future__ import annotations

import argparse
import filecmp
import shutil
import sys
import tempfile
from importlib import resources
from pathlib import Path

from grpc_tools import protoc

ROOT = Path(__file__).resolve().parent.parent
PROTO_DIR = ROOT / "proto"
OUT_PACKAGE = ROOT / "bandit_router" / "v1"
INIT_TEXT = '"""Generated from proto/bandit_router/v1 by scripts/gen_proto.py; do not edit."""\n'


def generate(out_root: Path) -> None:
    protos = sorted(str(p.relative_to(PROTO_DIR)) for p in PROTO_DIR.rglob("*.proto"))
    well_known = str(resources.files("grpc_tools") / "_proto")
    args = [
        "grpc_tools.protoc",
        f"-I{PROTO_DIR}",
        f"-I{well_known}",
        f"--python_out={out_root}",
        f"--pyi_out={out_root}",
        f"--grpc_python_out={out_root}",
        *protos,
    ]
    if protoc.main(args) != 0:
        raise SystemExit("protoc failed")
    (out_root / "bandit_router" / "v1" / "__init__.py").write_text(INIT_TEXT)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--check", action="store_true", help="fail if committed code is stale")
    options = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        out_root = Path(tmp)
        generate(out_root)
        fresh = out_root / "bandit_router" / "v1"
        names = sorted(p.name for p in fresh.iterdir() if p.is_file())
        if options.check:
            committed = sorted(
                p.name for p in OUT_PACKAGE.iterdir() if p.is_file() and p.suffix in {".py", ".pyi"}
            )
            _, mismatch, errors = filecmp.cmpfiles(fresh, OUT_PACKAGE, names, shallow=False)
            if mismatch or errors or committed != names:
                print(f"stale generated code: {mismatch + errors or committed}", file=sys.stderr)
                print("run: python scripts/gen_proto.py", file=sys.stderr)
                return 1
            return 0
        OUT_PACKAGE.mkdir(parents=True, exist_ok=True)
        for stale in OUT_PACKAGE.iterdir():
            if stale.is_file():
                stale.unlink()
        for name in names:
            shutil.copy2(fresh / name, OUT_PACKAGE / name)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
