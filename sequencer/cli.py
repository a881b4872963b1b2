"""`rampart-sequencer`: run the sequencer service. Flags override RAMPART_* settings.

What an operator can fix is one line and a non-zero exit, never a traceback: a bad setting (each
named by its flag or variable) or a genesis that does not fit (an unreadable file, another key,
another base layer's, another journal's) exits 2 before anything started. A base layer that does
not answer yet (started after us, or restarting) is waited for, said once; SIGINT or SIGTERM end
the wait.
"""

from __future__ import annotations

import argparse
import gc
import logging
from collections.abc import Callable
from typing import Any

from contracts_spec.errors import BadGenesis
from contracts_spec.params import genesis_to_json
from contracts_spec.types import Genesis
from l1_mock.cli_common import (
    Voice,
    first_line,
    flag_names,
    l1_unreachable,
    load_settings,
    named_by,
    quiet_broken_pipe,
    read_genesis,
    shown_url,
    stopped_by_signals,
    wait_until_up,
)
from l1_mock.client import L1Client, L1Error
from sequencer.settings import Settings, UnsafeSettings

PROG = "rampart-sequencer"
GC_THRESHOLDS = (50_000, 50, 100)  # CPython's defaults: (700, 10, 10)
PROBE_TIMEOUT = 10.0  # seconds per base-layer request while waiting for it at start
_VOICE = Voice(PROG)
say, fail = _VOICE.say, _VOICE.fail


def parse(argv: list[str] | None) -> tuple[Settings, Callable[[str], str]]:
    """The settings, and how to name each one to the user (its flag if given, else its variable).
    Values are checked by the settings model, for flags and variables alike."""
    p = argparse.ArgumentParser(prog=PROG, description="Rampart's sequencer (REST + WebSocket)")
    p.add_argument("--l1", dest="l1_url", help="base-layer URL (default http://127.0.0.1:8545)")
    p.add_argument("--db", help="journal SQLAlchemy URL (default sqlite:///rampart-sequencer.db, WAL)")
    p.add_argument("--db-schema", help="PostgreSQL schema to use")
    p.add_argument("--genesis", help="genesis JSON (default: the base layer's)")
    p.add_argument("--host")
    p.add_argument("--port", help="1-65535 (default 8000)")
    p.add_argument("--batch-interval", help="seconds between batches, > 0")
    p.add_argument("--batch-max-txs")
    p.add_argument("--follow-interval", help="seconds between base-layer polls, > 0")
    p.add_argument("--verify-workers", help="signature-recovery worker processes (0: inline)")
    p.add_argument("--env", help="dev or prod")
    a = p.parse_args(argv)
    overrides: dict[str, Any] = {k: v for k, v in vars(a).items() if v is not None}
    name = named_by(flag_names(p), overrides, "RAMPART_")
    settings = load_settings(lambda: Settings(**overrides), name, say, hidden=("sequencer_key", "db"))
    return settings, name


def local_checks(settings: Settings, name: Callable[[str], str]) -> Genesis | None:
    """What needs no base layer: dev-only settings, and the genesis file when one is given (read,
    valid, naming our key; no fault injection outside dev)."""
    from sequencer.node import GenesisMismatch, check_genesis

    try:
        settings.check()
        if settings.genesis is None:
            return None
        genesis = read_genesis(settings.genesis, f"{name('genesis')} {settings.genesis}", fail)
        check_genesis(settings, genesis)
        return genesis
    except (UnsafeSettings, GenesisMismatch) as exc:
        fail(str(exc))


def base_layer_genesis(settings: Settings) -> Genesis | None:
    """The base layer's genesis, waiting while it does not answer; None if stopped meanwhile."""
    url = settings.l1_url
    client = L1Client(url, timeout=PROBE_TIMEOUT)
    try:
        with stopped_by_signals() as stop:
            return wait_until_up(client.genesis, l1_unreachable,
                                 lambda reason: say(f"waiting for the base layer at {url} ({reason})"),
                                 stop, min(settings.follow_interval * 5, 5.0))
    except L1Error as exc:
        fail(f"{url} does not answer as a base layer: {exc.code} {exc.status or ''}: {first_line(exc.message)[:200]}")
    except (BadGenesis, KeyError, TypeError, ValueError) as exc:
        fail(f"{url} does not answer as a base layer: {type(exc).__name__}: {first_line(exc)[:200]}")
    finally:
        client.close()


@quiet_broken_pipe
def main(argv: list[str] | None = None) -> None:
    import uvicorn
    from sqlalchemy.exc import SQLAlchemyError

    from sequencer.node import GenesisMismatch, create

    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    settings, name = parse(argv)
    genesis = local_checks(settings, name)
    chain = base_layer_genesis(settings)
    if chain is None:
        return  # stopped while waiting
    if genesis is not None and genesis_to_json(genesis) != genesis_to_json(chain):
        fail(f"{name('genesis')} {settings.genesis} is not the genesis of the base layer at {settings.l1_url}")
    try:
        app, _ = create(settings, chain)
    except (UnsafeSettings, GenesisMismatch) as exc:
        fail(str(exc))
    except L1Error as exc:
        reason = l1_unreachable(exc)
        fail(f"the base layer at {settings.l1_url} " + (f"stopped answering ({reason})" if reason is not None
                                                        else f"refused: {exc.code}: {first_line(exc.message)}"), 1)
    except (SQLAlchemyError, ImportError) as exc:
        fail(f"the journal {shown_url(settings.db)} ({name('db')}) cannot be opened: {first_line(exc)}", 1)
    except (OSError, ValueError) as exc:
        fail(str(exc))
    except KeyboardInterrupt:
        raise SystemExit(130) from None
    # The recovered state (snapshot, journal replay) lives as long as the process: out of the
    # collector's sight, and young collections rarer. Measured with bench/api.py: 154-165 us of
    # CPU an order through the batch endpoint instead of 211-228, event-loop lag p99 <= 50 ms
    # instead of <= 250-500 ms. The engine's records hold no cycles; what does is still collected.
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)
    print(f"{PROG} listening on http://{settings.host}:{settings.port}", flush=True)
    uvicorn.run(app, host=settings.host, port=settings.port, log_level="warning", ws="websockets-sansio")


if __name__ == "__main__":
    main()
