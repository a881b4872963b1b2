"""`rampart-sequencer`: run the sequencer service. Flags override RAMPART_* settings."""

from __future__ import annotations

import argparse
import logging
import sys
from typing import Any

from sequencer.settings import Settings, UnsafeSettings


def parse(argv: list[str] | None) -> Settings:
    p = argparse.ArgumentParser(prog="rampart-sequencer", description="Rampart's sequencer (REST + WebSocket)")
    p.add_argument("--l1", dest="l1_url", help="base-layer URL (default http://127.0.0.1:8545)")
    p.add_argument("--db", help="journal SQLAlchemy URL (default sqlite:///rampart-sequencer.db, WAL)")
    p.add_argument("--db-schema", help="PostgreSQL schema to use")
    p.add_argument("--genesis", help="genesis JSON (default: the base layer's)")
    p.add_argument("--host")
    p.add_argument("--port", type=int)
    p.add_argument("--batch-interval", type=float)
    p.add_argument("--batch-max-txs", type=int)
    p.add_argument("--follow-interval", type=float)
    p.add_argument("--verify-workers", type=int, help="signature-recovery worker processes (0: inline)")
    p.add_argument("--env", help="dev or prod")
    a = p.parse_args(argv)
    overrides: dict[str, Any] = {k: v for k, v in vars(a).items() if v is not None}
    return Settings(**overrides)


def main(argv: list[str] | None = None) -> None:
    import uvicorn

    from sequencer.node import create

    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    settings = parse(argv)
    try:
        app, _ = create(settings)
    except (UnsafeSettings, OSError, ValueError) as exc:
        print(f"rampart-sequencer: {exc}", file=sys.stderr)
        raise SystemExit(2) from exc
    print(f"rampart-sequencer listening on http://{settings.host}:{settings.port}", flush=True)
    uvicorn.run(app, host=settings.host, port=settings.port, log_level="warning", ws="websockets")


if __name__ == "__main__":
    main()
