"""The committed generated code must be exactly what the pinned generator produces."""

from __future__ import annotations

from pathlib import Path

from tools.protogen import PROTO_ROOT, generate, proto_sources


def test_regenerating_the_wire_contract_changes_nothing(tmp_path: Path) -> None:
    generated = generate(tmp_path)
    assert generated, "protoc produced no files"
    expected = {p.relative_to(tmp_path) for p in generated}
    committed = {
        p.relative_to(PROTO_ROOT)
        for p in PROTO_ROOT.rglob("*")
        if p.suffix in {".py", ".pyi"} and "_pb2" in p.name
    }
    assert committed == expected, "generated files differ from the committed set"
    for rel in sorted(expected):
        fresh = (tmp_path / rel).read_bytes()
        assert (PROTO_ROOT / rel).read_bytes() == fresh, (
            f"{rel} is stale: run python -m tools.protogen"
        )


def test_every_proto_has_generated_code() -> None:
    sources = proto_sources()
    assert sources
    for proto in sources:
        stem = proto.with_suffix("")
        for suffix in ("_pb2.py", "_pb2.pyi", "_pb2_grpc.py", "_pb2_grpc.pyi"):
            assert Path(f"{stem}{suffix}").exists(), f"{proto.name}: missing {suffix}"
