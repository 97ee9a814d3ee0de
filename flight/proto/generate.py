"""Regenerate `flight_sql_pb2.py` and its typed stub `flight_sql_pb2.pyi` from `flight_sql.proto`.

    python -m flight.proto.generate          # or: make proto

Needs the dev extras (grpcio-tools ships protoc; mypy-protobuf writes the stub). Their versions
are pinned in pyproject.toml because the generated files name the protobuf version that made
them, and tests/flight/test_flight_proto_generated.py compares the committed files with a fresh
generation.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]  # protoc's include root: the names in the descriptor start here
PROTO = Path("flight/proto/flight_sql.proto")
GENERATED = (PROTO.with_name("flight_sql_pb2.py"), PROTO.with_name("flight_sql_pb2.pyi"))
COMMAND = "make proto  (or: .venv/bin/python -m flight.proto.generate)"


def generate(out_root: Path = ROOT) -> list[Path]:
    """Run protoc on the .proto file; the generated files land under `out_root` at their repo paths."""
    from grpc_tools import protoc  # dev extra: only regeneration needs it

    # The plugin sits next to the interpreter; PATH may not include the venv.
    plugin = Path(sys.executable).parent / "protoc-gen-mypy"
    out_root.mkdir(parents=True, exist_ok=True)
    status = protoc.main(
        [
            "protoc",
            f"--proto_path={ROOT}",
            f"--plugin=protoc-gen-mypy={plugin}",
            f"--python_out={out_root}",
            f"--mypy_out={out_root}",
            str(ROOT / PROTO),
        ]
    )
    if status != 0:
        raise RuntimeError(f"protoc failed ({status}) on {PROTO}")
    return [out_root / path for path in GENERATED]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT, help="root to write under (default: the repository)")
    args = parser.parse_args(argv)
    for path in generate(args.out):
        print(path)


if __name__ == "__main__":
    main()
