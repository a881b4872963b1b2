"""`rampart-l1`: start the base layer. Flags override RAMPART_L1_* settings.

A bad setting (each named by its flag or variable), a genesis file that cannot be read or is
refused, another genesis than the database's, or a database that cannot be opened is one line
and a non-zero exit, never a traceback.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

from contracts_spec.params import genesis_from_json
from contracts_spec.types import Genesis
from l1_mock.cli_common import (
    Voice,
    first_line,
    flag_names,
    load_settings,
    named_by,
    quiet_broken_pipe,
    read_genesis,
    shown_url,
)
from l1_mock.errors import ChainError
from l1_mock.settings import Settings

PROG = "rampart-l1"
_VOICE = Voice(PROG)
say, fail = _VOICE.say, _VOICE.fail


def build(settings: Settings, genesis: Genesis | None = None) -> Any:
    """The FastAPI app for these settings (creates or reopens the chain's database)."""
    from l1_mock.api import create_app
    from l1_mock.chain import Chain
    from l1_mock.db import make_engine

    if genesis is None and settings.genesis is not None:
        genesis = genesis_from_json(settings.genesis.read_text())
    chain = Chain(make_engine(settings.db, settings.db_schema), settings, genesis)
    return create_app(chain)


def parse(argv: list[str] | None) -> tuple[Settings, Callable[[str], str]]:
    """The settings, and how to name each one to the user (its flag if given, else its variable)."""
    p = argparse.ArgumentParser(prog=PROG, description="Rampart's base layer (a local chain)")
    p.add_argument("--genesis", help="genesis JSON file (needed on first start)")
    p.add_argument("--db", help="SQLAlchemy URL (default sqlite:///rampart-l1.db, WAL)")
    p.add_argument("--db-schema", help="PostgreSQL schema to use")
    p.add_argument("--host")
    p.add_argument("--port", help="1-65535 (default 8545)")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--instant", action="store_true", help="a block per transaction (default)")
    mode.add_argument("--block-time", help="a block every N seconds (N >= 1)")
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
    name = named_by(flag_names(p), overrides, "RAMPART_L1_")
    return load_settings(lambda: Settings(**overrides), name, say, hidden=("db",)), name


@quiet_broken_pipe
def main(argv: list[str] | None = None) -> None:
    import uvicorn
    from sqlalchemy.exc import SQLAlchemyError

    settings, name = parse(argv)
    genesis = None
    if settings.genesis is not None:
        genesis = read_genesis(settings.genesis, f"{name('genesis')} {settings.genesis}", fail)
    try:
        app = build(settings, genesis)
    except ChainError as exc:
        fail(str(exc))
    except (SQLAlchemyError, ImportError) as exc:
        fail(f"the database {shown_url(settings.db)} ({name('db')}) cannot be opened: {first_line(exc)}", 1)
    print(f"{PROG} listening on http://{settings.host}:{settings.port}", flush=True)
    uvicorn.run(app, host=settings.host, port=settings.port, log_level="warning")


if __name__ == "__main__":
    main()
