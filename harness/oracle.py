"""The harness's oracle: the dev oracle signers' reports, posted to the sequencer at its clock,
for prices the harness chooses (a scenario's move, the soak's random walk). The two reports of a
quorum differ by a few ticks, so the spec's lower median is the price asked for.
"""

from __future__ import annotations

import threading
from typing import Any

import httpx

from contracts_spec import eip712
from contracts_spec.types import Preset

SPREAD = 3  # ticks: the second report is this much above the price (the lower median)


class OracleDriver:
    def __init__(self, seq_url: str, preset: Preset, keys: list[bytes], prices: dict[int, int], quorum: int,
                 interval: float = 0.25) -> None:
        self.http = httpx.Client(base_url=seq_url, timeout=10)
        self.preset, self.keys, self.quorum, self.interval = preset, keys, quorum, interval
        self.prices = dict(prices)
        self.lock = threading.Lock()
        self.stopped = threading.Event()
        self.paused = threading.Event()
        self.thread = threading.Thread(target=self._run, name="oracle-driver", daemon=True)
        self.last_time = 0
        self.posted = 0
        self.errors = 0

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self.stopped.set()
        self.thread.join(10)
        self.http.close()

    def set(self, market: int, price: int) -> None:
        with self.lock:
            self.prices[market] = price

    def price(self, market: int) -> int:
        with self.lock:
            return self.prices[market]

    def pause(self) -> None:
        self.paused.set()

    def resume(self) -> None:
        self.paused.clear()

    def reports(self, t: int) -> list[dict[str, Any]]:
        out = []
        with self.lock:
            prices = dict(self.prices)
        for market, price in sorted(prices.items()):
            for i, key in enumerate(self.keys[: self.quorum]):
                p = price + (SPREAD if i else 0)
                r = eip712.sign_oracle_report(self.preset, key, market, p, t)
                out.append({"market": market, "price": p, "time": t, "signature": "0x" + r.signature.hex()})
        return out

    def post_once(self) -> bool:
        t = int(self.http.get("/v1/time").json()["time"])
        if t <= self.last_time:
            return False
        self.http.post("/v1/oracle/reports", json={"reports": self.reports(t)}).raise_for_status()
        self.last_time = t
        self.posted += 1
        return True

    def _run(self) -> None:
        while not self.stopped.is_set():
            if not self.paused.is_set():
                try:
                    self.post_once()
                except (httpx.HTTPError, ValueError, KeyError):
                    self.errors += 1  # the sequencer restarting: try again next tick
            self.stopped.wait(self.interval)
