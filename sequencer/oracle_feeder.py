"""`rampart-oracle`: a separate process holding N oracle signer keys that posts signed price
reports to the sequencer, which forms the spec's OraclePrice once a quorum signed.

Prices come from a path (a deterministic random walk from a start price per market, seeded)
or from a replayed file of JSON lines {"market": 0, "price": 500000} (one step per line; a
line may hold several markets as {"prices": {"0": 500000, "1": 30000}}). Report times follow
the sequencer's clock (GET /v1/time, the base layer's time) unless --clock wall.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx

from contracts_spec import eip712
from contracts_spec.params import PRESETS
from contracts_spec.types import Preset


def walk(start: dict[int, int], step_ppm: int, seed: int) -> Iterator[dict[int, int]]:
    """A seeded random walk: each step moves each price by at most step_ppm, never below 1."""
    rng = random.Random(seed)
    prices = dict(start)
    while True:
        yield dict(prices)
        for m, p in prices.items():
            move = p * rng.randint(-step_ppm, step_ppm) // 1_000_000
            prices[m] = max(1, p + move)


def replay(path: Path) -> Iterator[dict[int, int]]:
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line:
            continue
        doc = json.loads(line)
        if "prices" in doc:
            yield {int(m): int(p) for m, p in doc["prices"].items()}
        else:
            yield {int(doc["market"]): int(doc["price"])}


def sign_reports(preset: Preset, keys: list[bytes], prices: dict[int, int], t: int) -> list[dict[str, Any]]:
    out = []
    for market, price in sorted(prices.items()):
        for key in keys:
            r = eip712.sign_oracle_report(preset, key, market, price, t)
            out.append({"market": market, "price": price, "time": t, "signature": "0x" + r.signature.hex()})
    return out


class Feeder:
    def __init__(self, url: str, keys: list[bytes], preset: Preset, clock: str = "sequencer") -> None:
        self.http = httpx.Client(base_url=url.rstrip("/"), timeout=30)
        self.keys = keys
        self.preset = preset
        self.clock = clock
        self.last_time = 0

    def now(self) -> int:
        if self.clock == "wall":
            return int(time.time())
        return int(self.http.get("/v1/time").json()["time"])

    def post(self, prices: dict[int, int]) -> dict[str, Any] | None:
        """Post one step at the current time; None if the clock has not moved since the last one."""
        t = self.now()
        if t <= self.last_time:
            return None
        r = self.http.post("/v1/oracle/reports", json={"reports": sign_reports(self.preset, self.keys, prices, t)})
        r.raise_for_status()
        self.last_time = t
        return dict(r.json())

    def close(self) -> None:
        self.http.close()


def parse_keys(a: argparse.Namespace) -> list[bytes]:
    if a.keys:
        return [bytes.fromhex(k.removeprefix("0x")) for k in a.keys.split(",") if k]
    if a.dev_signers:
        from sequencer.scenario import Keys

        keys = Keys()
        return [keys[f"oracle-{i}"] for i in range(a.dev_signers)]
    raise SystemExit("rampart-oracle: give --keys (hex, comma-separated) or --dev-signers N")


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="rampart-oracle", description="Rampart oracle feeder (N signer keys)")
    p.add_argument("--sequencer", default="http://127.0.0.1:8000")
    p.add_argument("--preset", default="dev", choices=sorted(PRESETS))
    p.add_argument("--keys", help="oracle signer private keys, hex, comma-separated")
    p.add_argument("--dev-signers", type=int, help="use the first N dev oracle keys (oracle-0, oracle-1, ...)")
    p.add_argument("--start", default="0=500000,1=30000", help="path start prices: market=ticks,...")
    p.add_argument("--step-ppm", type=int, default=1000, help="largest move per step of the path")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--file", type=Path, help="replay prices from this JSON-lines file instead of the path")
    p.add_argument("--interval", type=float, default=1.0, help="seconds between steps")
    p.add_argument("--steps", type=int, default=0, help="stop after N posted steps (0: run forever)")
    p.add_argument("--clock", default="sequencer", choices=("sequencer", "wall"))
    a = p.parse_args(argv)
    keys = parse_keys(a)
    start = {int(m): int(v) for m, v in (kv.split("=") for kv in a.start.split(",") if kv)}
    prices = replay(a.file) if a.file else walk(start, a.step_ppm, a.seed)
    feeder = Feeder(a.sequencer, keys, PRESETS[a.preset], a.clock)
    posted = 0
    try:
        step = next(prices, None)
        while step is not None:
            try:
                result = feeder.post(step)
            except httpx.HTTPError as exc:
                print(f"rampart-oracle: {exc}", file=sys.stderr, flush=True)
                result = None
            if result is not None:
                posted += 1
                print(json.dumps({"time": feeder.last_time, "prices": step}), flush=True)
                if a.steps and posted >= a.steps:
                    break
                step = next(prices, None)
            time.sleep(a.interval)
    except KeyboardInterrupt:
        pass
    finally:
        feeder.close()


if __name__ == "__main__":
    main()
