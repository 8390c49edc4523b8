"""Regenerate (or, with --check, verify) the committed Python code of the .proto files (`make protos`)."""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROTO_DIR = Path("protos/amoeba/v1")
GENERATED_SUFFIXES = ("_pb2.py", "_pb2_grpc.py", "_pb2.pyi")

# Lines stamped with the generator's version: a newer grpcio-tools changes them and nothing else,
# so --check ignores them (the runtime checks they perform still apply).
_VERSION_STAMPS = re.compile(
    r"^(# Protobuf Python Version:.*|GRPC_GENERATED_VERSION = .*|\s*\d+,\s*$)$", re.MULTILINE
)


def protos() -> list[Path]:
    return sorted((ROOT / PROTO_DIR).glob("*.proto"))


def generate(out_root: Path) -> list[Path]:
    """Run protoc on every .proto under PROTO_DIR, writing into ``out_root`` (same relative layout)."""
    from grpc_tools import protoc  # dev dependency: only needed to regenerate

    sources = [str(p.relative_to(ROOT)) for p in protos()]
    include = str(Path(protoc.__file__).parent / "_proto")
    args = [
        "grpc_tools.protoc",
        f"-I{ROOT}",
        f"-I{include}",
        f"--python_out={out_root}",
        f"--pyi_out={out_root}",
        f"--grpc_python_out={out_root}",
        *sources,
    ]
    # protoc runs in its own process: in-process it shares the interpreter with whatever grpc, JAX
    # or TensorFlow threads the caller (a long test session) has started, and has crashed there.
    done = subprocess.run([sys.executable, "-m", *args], cwd=ROOT, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"protoc failed: {done.stderr.strip()}")
    return sorted(p for p in (out_root / PROTO_DIR).iterdir() if p.name.endswith(GENERATED_SUFFIXES))


def normalized(text: str) -> str:
    return _VERSION_STAMPS.sub("", text)


def check() -> list[str]:
    """Names of committed generated files that differ from a fresh generation (empty when up to date)."""
    with tempfile.TemporaryDirectory() as tmp:
        fresh = {p.name: p.read_text() for p in generate(Path(tmp))}
    committed = {p.name: p.read_text() for p in (ROOT / PROTO_DIR).iterdir() if p.name.endswith(GENERATED_SUFFIXES)}
    names = sorted(set(fresh) | set(committed))
    return [n for n in names if normalized(fresh.get(n, "")) != normalized(committed.get(n, ""))]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--check", action="store_true", help="fail when the committed code is out of date")
    args = parser.parse_args(argv)
    if args.check:
        stale = check()
        if stale:
            print(f"generated code is out of date: {', '.join(stale)}; run `make protos`", file=sys.stderr)
            return 1
        print("generated code is up to date")
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        for path in generate(Path(tmp)):
            shutil.copyfile(path, ROOT / PROTO_DIR / path.name)
            print(f"wrote {PROTO_DIR / path.name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
