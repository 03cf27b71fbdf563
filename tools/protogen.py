"""Generate the Python code for the wire contract in ``proto/``.

The generated ``*_pb2.py``, ``*_pb2_grpc.py`` and ``.pyi`` stubs are committed
beside the ``.proto`` sources; ``tests/test_protogen.py`` regenerates them into a
temporary folder and fails when anything differs. Run after editing a ``.proto``::

    python -m tools.protogen
"""

from __future__ import annotations

import argparse
import sys
from importlib import resources
from pathlib import Path

PROTO_ROOT = Path(__file__).resolve().parent.parent / "proto"


def proto_sources(root: Path = PROTO_ROOT) -> list[Path]:
    return sorted(root.rglob("*.proto"))


def generate(out_dir: Path, root: Path = PROTO_ROOT) -> list[Path]:
    """Write the generated modules for every ``.proto`` under *root* to *out_dir*."""
    from grpc_tools import protoc  # dev-only dependency, imported when used

    include = str(resources.files("grpc_tools") / "_proto")
    sources = [str(p.relative_to(root)) for p in proto_sources(root)]
    out = str(out_dir)
    code = protoc.main(
        [
            "grpc_tools.protoc",
            f"-I{root}",
            f"-I{include}",
            f"--python_out={out}",
            f"--grpc_python_out={out}",
            f"--mypy_out={out}",
            f"--mypy_grpc_out={out}",
            *sources,
        ]
    )
    if code != 0:
        raise RuntimeError(f"protoc failed with exit code {code}")
    return sorted(p for p in out_dir.rglob("*") if p.suffix in {".py", ".pyi"} and "_pb2" in p.name)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.protogen", description=__doc__)
    parser.parse_args(argv)
    for path in generate(PROTO_ROOT):
        print(path.relative_to(PROTO_ROOT.parent))
    return 0


if __name__ == "__main__":
    sys.exit(main())
