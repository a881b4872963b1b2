"""Prometheus metrics of one sequencer (its own registry, so tests can run several in a process)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest


class Metrics:
    def __init__(self) -> None:
        r = self.registry = CollectorRegistry()
        self.orders = Counter("rampart_orders", "Orders accepted by the engine", registry=r)
        self.fills = Counter("rampart_fills", "Fills matched", registry=r)
        self.rejects = Counter("rampart_rejects", "Requests refused, by reason", ["reason"], registry=r)
        self.batch_txs = Histogram("rampart_batch_txs", "Transactions per posted batch", registry=r,
                                   buckets=(1, 10, 100, 500, 1000, 2000, 4000, 8000, 16000, 65536))
        self.batch_bytes = Histogram("rampart_batch_bytes", "Compressed bytes per posted batch", registry=r,
                                     buckets=(1e3, 1e4, 1e5, 5e5, 1e6, 2e6, 4e6))
        self.post_latency = Histogram("rampart_batch_post_seconds", "Time to post a batch to the base layer",
                                      registry=r, buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10))
        self.build_latency = Histogram("rampart_batch_build_seconds", "Time to execute and encode a batch",
                                       registry=r, buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10))
        self.batches = Gauge("rampart_batches", "Batches by status", ["status"], registry=r)
        self.games = Gauge("rampart_games", "Dispute games against our batches, by state", ["state"], registry=r)
        self.journal_commits = Gauge("rampart_journal_commits", "Journal commits so far", registry=r)
        self.journal_records = Gauge("rampart_journal_records", "Journal records committed so far", registry=r)
        self.ws_dropped = Counter("rampart_ws_dropped", "WebSocket clients dropped for falling behind", registry=r)
        self.dropped_txs = Counter("rampart_batch_dropped_txs", "Engine outputs the spec refused (never posted)",
                                   registry=r)
        self.rollbacks = Counter("rampart_rollbacks", "Re-applications after a lost batch or a refused output",
                                 registry=r)
        self.busted = Counter("rampart_busted_outputs", "Outputs a rollback busted (fills, withdrawals, ...)",
                              registry=r)

        self._seen: dict[str, int] = {}

    def sync(self, counters: dict[str, int]) -> None:
        """Bring the order and fill counters up to the core's own counts."""
        for name, counter in (("orders", self.orders), ("fills", self.fills)):
            delta = counters[name] - self._seen.get(name, 0)
            if delta > 0:
                counter.inc(delta)
                self._seen[name] = counters[name]

    def render(self) -> bytes:
        return generate_latest(self.registry)
