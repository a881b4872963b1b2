"""`rampart-l1`: start the base layer. Flags override RAMPART_L1_* settings."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from contracts_spec.errors import BadGenesis
from contracts_spec.params import genesis_from_json
from l1_mock.errors import ChainError
from l1_mock.settings import Settings


def build(settings: Settings) -> Any:
    """The FastAPI app for these settings (creates or reopens the chain's database)."""
    from l1_mock.api import create_app
    from l1_mock.chain import Chain
    from l1_mock.db import make_engine

    genesis = genesis_from_json(settings.genesis.read_text()) if settings.genesis else None
    chain = Chain(make_engine(settings.db, settings.db_schema), settings, genesis)
    return create_app(chain)


def parse(argv: list[str] | None) -> Settings:
    p = argparse.ArgumentParser(prog="rampart-l1", description="Rampart's base layer (a local chain)")
    p.add_argument("--genesis", help="genesis JSON file (needed on first start)")
    p.add_argument("--db", help="SQLAlchemy URL (default sqlite:///rampart-l1.db, WAL)")
    p.add_argument("--db-schema", help="PostgreSQL schema to use")
    p.add_argument("--host")
    p.add_argument("--port", type=int)
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--instant", action="store_true", help="a block per transaction (default)")
    mode.add_argument("--block-time", type=int, help="a block every N seconds")
    p.add_argument("--manual-time", action="store_true", help="time moves only by /admin/increase_time (dev)")
    a = p.parse_args(argv)
    overrides: dict[str, Any] = {k: v for k, v in {
        "genesis": a.genesis, "db": a.db, "db_schema": a.db_schema, "host": a.host, "port": a.port,
        "block_time": a.block_time,
    }.items() if v is not None}
    if a.instant:
        overrides["block_time"] = None
    if a.manual_time:
        overrides["manual_time"] = True
    return Settings(**overrides)


def main(argv: list[str] | None = None) -> None:
    import uvicorn

    settings = parse(argv)
    try:
        app = build(settings)
    except (ChainError, BadGenesis, OSError) as exc:
        print(f"rampart-l1: {exc}", file=sys.stderr)
        raise SystemExit(2) from exc
    print(f"rampart-l1 listening on http://{settings.host}:{settings.port}", flush=True)
    uvicorn.run(app, host=settings.host, port=settings.port, log_level="warning")


if __name__ == "__main__":
    main()
