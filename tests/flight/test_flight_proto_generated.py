"""The committed Flight SQL classes are what protoc makes of flight/proto/flight_sql.proto today."""

from __future__ import annotations

from importlib import metadata
from pathlib import Path

from flight import protocol as P
from flight.proto import flight_sql_pb2
from flight.proto.generate import COMMAND, GENERATED, PROTO, ROOT, generate


def test_generated_code_is_up_to_date(tmp_path: Path) -> None:
    fresh = generate(tmp_path)
    pairs = zip(GENERATED, fresh, strict=True)
    stale = [str(path) for path, new in pairs if (ROOT / path).read_bytes() != new.read_bytes()]
    tools = ", ".join(f"{name} {metadata.version(name)}" for name in ("grpcio-tools", "mypy-protobuf"))
    assert not stale, (
        f"stale: {', '.join(stale)} differ from what protoc makes of {PROTO} (generated here with {tools}): "
        f"run `{COMMAND}` and commit the result"
    )


def test_every_message_of_the_proto_is_known_to_unpack() -> None:
    assert set(P.MESSAGES) == set(flight_sql_pb2.DESCRIPTOR.message_types_by_name)
    assert all(cls.DESCRIPTOR.full_name == f"{P.PACKAGE}.{name}" for name, cls in P.MESSAGES.items())
