#!/usr/bin/env python3
"""`rampart-healthcheck ROLE URL`: exit 0 when the service at URL is ready, else 1 with one line why.

  l1 URL         the base layer answers /info: it serves only once its chain is loaded
  sequencer URL  /health is ok: the journal replayed, the journal writable, the batcher not halted
  oracle URL     every market at the sequencer URL has an oracle price within its staleness bound

The verifier's check is its own CLI: `rampart-verifier status --json`. Standard library only, so a
check costs little at every interval.
"""

from __future__ import annotations

import json
import sys
import urllib.error
import urllib.request
from typing import Any

TIMEOUT = 5.0


class NotReady(Exception):
    pass


def get(url: str) -> Any:
    try:
        with urllib.request.urlopen(url, timeout=TIMEOUT) as r:
            return json.loads(r.read())
    except (urllib.error.URLError, OSError, ValueError) as exc:
        raise NotReady(f"{url}: {exc}") from exc


def check_l1(url: str) -> str:
    info = get(url + "/info")
    return f"base layer up, chain {info.get('chain_id')}"


def check_sequencer(url: str) -> str:
    h = get(url + "/health")
    # Verify the sequencer is serving normally, not halted after a lost batch or a failed journal
    if h.get("status") != "ok" or h.get("journalFailed"):
        raise NotReady(f"sequencer not ok: {json.dumps(h)}")
    return f"sequencer ok at seq {h.get('seq')}, {h.get('batches')} batches"


def check_oracle(url: str) -> str:
    now = int(get(url + "/v1/time")["time"])
    for m in get(url + "/v1/markets"):
        age = now - int(m["oracleTime"])
        # Verify each market has a price young enough for trading, which only a live feeder keeps
        if not m["oraclePrice"] or age > int(m["oracleStaleness"]):
            raise NotReady(f"{m['symbol']}: oracle price {m['oraclePrice']} is {age} s old")
    return "oracle prices fresh"


CHECKS = {"l1": check_l1, "sequencer": check_sequencer, "oracle": check_oracle}


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2 or args[0] not in CHECKS:
        print(f"usage: rampart-healthcheck {{{','.join(CHECKS)}}} URL", file=sys.stderr)
        return 2
    try:
        print(CHECKS[args[0]](args[1].rstrip("/")))
    except (NotReady, KeyError, TypeError, ValueError) as exc:
        print(f"not ready: {exc}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
