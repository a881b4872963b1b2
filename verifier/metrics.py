"""Prometheus metrics of a running verifier (`rampart-verifier run --metrics-port N`), what an
operator alerts on: the head followed and verified, the lag behind the base layer, verdicts,
games by outcome, the bond, alerts raised, and running totals whose rate is the replay speed.

Every figure is read at scrape time, from the node's database (which the node commits batch by
batch) and from the base layer: the node's hot path does no bookkeeping for it, and a scrape
never sees a figure the database does not hold. When the base layer does not answer, the
database's figures are still served, with `rampart_verifier_l1_up 0`. Served by a running node,
the process's own figures come along (`process_resident_memory_bytes`, CPU seconds, open files) with
the leaves of the state it holds in memory, which grows by one for every order ever filled or
cancelled.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import ProcessCollector, start_http_server
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector, CollectorRegistry
from sqlalchemy.orm import Session, sessionmaker

from l1_mock.client import L1Client, L1Error
from verifier import views

P = "rampart_verifier_"


class NodeMetrics(Collector):
    """One verifier's metrics, collected on each scrape (scrapes are serialised)."""

    def __init__(self, sessions: sessionmaker[Session], l1_url: str, address: str | None,
                 timeout: float = 5.0, state_records: Callable[[], int | None] | None = None) -> None:
        """`state_records`: how many leaves the node's state holds now (None: none loaded yet)."""
        self.sessions, self.address, self.state_records = sessions, address, state_records
        self.client = L1Client(l1_url, timeout=timeout)  # our own: the node's is its thread's
        self.lock = threading.Lock()

    def close(self) -> None:
        self.client.close()

    def collect(self) -> Iterator[Metric]:
        with self.lock:
            yield from self._collect()

    def _collect(self) -> Iterator[Metric]:
        with self.sessions() as s:
            local, totals = views.local_status(s), views.totals(s)
        verified = local["verified"]
        rollup: dict[str, Any] | None
        info: dict[str, Any] | None
        bond: dict[str, Any] | None
        try:
            rollup, info = self.client.rollup(), self.client.info()
            bond = views.bonds(self.client, self.address) if self.address else None
        except L1Error:
            rollup = info = bond = None

        def gauge(name: str, doc: str, value: float) -> GaugeMetricFamily:
            return GaugeMetricFamily(P + name, doc, value=value)

        def labelled(name: str, doc: str, label: str, values: dict[str, float]) -> GaugeMetricFamily:
            g = GaugeMetricFamily(P + name, doc, labels=[label])
            for key, value in values.items():
                g.add_metric([key], value)
            return g

        yield gauge("l1_up", "1 if the base layer answered this scrape", 0 if info is None else 1)
        yield gauge("followed_block", "Base-layer block the node has read events up to", local["followed"]["block"])
        yield gauge("verified_head_index", "Rollup index of the newest batch verified valid (-1: none)",
                    verified["head_index"])
        yield gauge("unverified_batches", "Pending batches the node has not judged yet", verified["unverified"])
        yield labelled("batches", "Batches judged, by verdict", "verdict",
                       {v: verified["batches"].get(v, 0) for v in ("valid", "invalid")})
        games = dict(local["games"])
        yield gauge("games_overdue", "Open games whose side to move has run out of clock, unresolved",
                    games.pop("overdue"))
        yield labelled("games", "Our games by outcome, and others' open games we watch", "state", games)
        yield labelled("alerts", "Alerts raised so far, by kind", "kind", totals["alerts"])
        yield gauge("checkpoints", "State checkpoints stored", local["checkpoints"])
        held = self.state_records() if self.state_records is not None else None
        if held is not None:
            yield gauge("state_records", "Leaves of the verified head's state held in memory: accounts, positions, "
                        "markets, and one per order ever filled or cancelled", held)
        yield gauge("trades_verified", "Trades in batches verified valid (its rate is the replay speed)",
                    totals["trades_verified"])
        yield gauge("verify_seconds", "Seconds spent judging the batches verified valid", totals["verify_seconds"])
        if rollup is not None and info is not None:
            behind = views.lag(verified, rollup, info)
            yield gauge("rollup_head_index", "Rollup index of the base layer's newest batch", rollup["head_index"])
            yield gauge("lag_batches", "Batches between the rollup head and the verified head", behind["batches"])
            yield gauge("lag_seconds", "Chain seconds since the oldest unjudged batch was posted", behind["seconds"])
        if bond is not None:
            yield labelled("bond_wei", "The operator's base-layer balance, bonds locked in games, and what is "
                           "claimable", "kind", {"balance": bond["balance"], "locked": bond["locked_total"],
                                                 "claimable": bond["claimable"]})


class MetricsServer:
    """`NodeMetrics` served over HTTP (GET /metrics) from a daemon thread, until `close`."""

    def __init__(self, host: str, port: int, sessions: sessionmaker[Session], l1_url: str,
                 address: str | None, state_records: Callable[[], int | None] | None = None) -> None:
        self.metrics = NodeMetrics(sessions, l1_url, address, state_records=state_records)
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(self.metrics)
        ProcessCollector(registry=self.registry)
        self.server, self.thread = start_http_server(port, host, self.registry)
        self.port = self.server.server_port

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)
        self.metrics.close()
