"""Regenerate libs/cdp_proto/src from proto/ with the pinned grpcio-tools.

Usage: python libs/cdp_proto/generate.py [--check]
--check regenerates into a temporary folder and fails (exit 1) on any difference.
"""

from __future__ import annotations

import filecmp
import shutil
import sys
import tempfile
from pathlib import Path

import grpc_tools
from grpc_tools import protoc

ROOT = Path(__file__).resolve().parents[2]
PROTO = ROOT / "proto"
OUT = Path(__file__).resolve().parent / "src"


def generate(out: Path) -> None:
    files = sorted(str(p.relative_to(PROTO)) for p in PROTO.rglob("*.proto"))
    include = Path(grpc_tools.__file__).parent / "_proto"
    args = [
        "protoc",
        f"-I{PROTO}",
        f"-I{include}",
        f"--python_out={out}",
        f"--pyi_out={out}",
        f"--grpc_python_out={out}",
        *files,
    ]
    if protoc.main(args) != 0:
        raise SystemExit("protoc failed")
    for pkg in {p.parent for p in out.rglob("*_pb2.py")}:
        (pkg / "py.typed").touch()


def tree(root: Path) -> dict[str, Path]:
    return {str(p.relative_to(root)): p for p in root.rglob("*") if p.is_file() and "__pycache__" not in p.parts}


def main() -> int:
    if "--check" in sys.argv:
        with tempfile.TemporaryDirectory() as tmp:
            generate(Path(tmp))
            new, old = tree(Path(tmp)), tree(OUT / "cdp")
            new = {k: v for k, v in new.items()}
            old = {str(Path("cdp") / k): v for k, v in old.items()}
            diff = sorted(
                set(new) ^ set(old) | {k for k in set(new) & set(old) if not filecmp.cmp(new[k], old[k], shallow=False)}
            )
            if diff:
                print("generated code is stale; run `make proto`:\n  " + "\n  ".join(diff))
                return 1
            print(f"proto-check: {len(new)} generated files up to date")
            return 0
    shutil.rmtree(OUT / "cdp", ignore_errors=True)
    OUT.mkdir(parents=True, exist_ok=True)
    generate(OUT)
    print(f"generated {len(tree(OUT / 'cdp'))} files into {OUT.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
