#!/usr/bin/env python3
"""Regenerate the protobuf/gRPC modules in src/pybuildx/buildkit/_pb from their .proto files.

Usage: ``python scripts/gen_protos.py`` (write) or ``python scripts/gen_protos.py --check``
(regenerate into a temporary directory and exit 1 when the committed code differs).
Needs the dev extra (grpcio-tools) and googleapis-common-protos (for google/rpc/*.proto imports).
"""

from __future__ import annotations

import argparse
import filecmp
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SRC = ROOT / "src"
PB_DIR = Path("pybuildx") / "buildkit" / "_pb"
GENERATED_SUFFIXES = ("_pb2.py", "_pb2_grpc.py", "_pb2.pyi")


def _googleapis_include() -> Path:
    """The site-packages directory that holds google/rpc/status.proto."""
    import google.rpc

    for location in google.rpc.__path__:
        candidate = Path(location).parent.parent
        if (candidate / "google" / "rpc" / "status.proto").exists():
            return candidate
    sys.exit("gen_protos: google/rpc/status.proto not found; install googleapis-common-protos")


def _protos() -> list[Path]:
    return sorted((SRC / PB_DIR).glob("*.proto"))


def generate(out_dir: Path) -> None:
    protos = [str(p.relative_to(SRC)) for p in _protos()]
    command = [
        sys.executable,
        "-m",
        "grpc_tools.protoc",
        f"-I{SRC}",
        f"-I{_googleapis_include()}",
        f"--python_out={out_dir}",
        f"--grpc_python_out={out_dir}",
        f"--pyi_out={out_dir}",
        *protos,
    ]
    subprocess.run(command, check=True, cwd=SRC)


def _generated(directory: Path) -> set[str]:
    return {p.name for p in directory.iterdir() if p.name.endswith(GENERATED_SUFFIXES)}


def check() -> int:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        generate(out)
        fresh_dir, committed_dir = out / PB_DIR, SRC / PB_DIR
        fresh, committed = _generated(fresh_dir), _generated(committed_dir)
        stale = sorted(fresh ^ committed)
        stale += sorted(
            name
            for name in fresh & committed
            if not filecmp.cmp(fresh_dir / name, committed_dir / name, shallow=False)
        )
    if stale:
        print("generated protobuf code is stale: " + ", ".join(stale), file=sys.stderr)
        print("run: python scripts/gen_protos.py", file=sys.stderr)
        return 1
    print("generated protobuf code is up to date")
    return 0


def write() -> int:
    target = SRC / PB_DIR
    for name in _generated(target):
        (target / name).unlink()
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        generate(out)
        for name in _generated(out / PB_DIR):
            shutil.copyfile(out / PB_DIR / name, target / name)
    init = target / "__init__.py"
    if not init.exists():
        init.write_text('"""Generated protobuf and gRPC modules (scripts/gen_protos.py)."""\n')
    print(f"generated {len(_generated(target))} files in {target.relative_to(ROOT)}")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail when generated code is stale")
    args = parser.parse_args()
    return check() if args.check else write()


if __name__ == "__main__":
    sys.exit(main())
