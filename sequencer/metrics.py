"""Prometheus metrics of one sequencer (its own registry, so tests can run several in a process)."""

from __future__ import annotations

import asyncio

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, ProcessCollector, generate_latest


class Metrics:
    def __init__(self) -> None:
        r = self.registry = CollectorRegistry()
        ProcessCollector(registry=r)  # process_resident_memory_bytes, process_cpu_seconds_total, open fds, ...
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
        self.l1_up = Gauge("rampart_l1_up", "1 while the follower's polls reach the base layer, 0 while it is away",
                           registry=r)
        self.l1_up.set(1)
        self.games = Gauge("rampart_games", "Dispute games against our batches, by state", ["state"], registry=r)
        self.journal_commits = Gauge("rampart_journal_commits", "Journal commits so far", registry=r)
        self.state_records = Gauge("rampart_state_records", "Leaves of the rollup state the batcher holds in memory: "
                                   "accounts, positions, markets, and one per order ever filled or cancelled",
                                   registry=r)
        self.orders_held = Gauge("rampart_orders_held", "Orders the API can show (every order accepted since "
                                 "genesis, open or not), held in memory", registry=r)
        self.journal_records = Gauge("rampart_journal_records", "Journal records committed so far", registry=r)
        self.ws_dropped = Counter("rampart_ws_dropped", "WebSocket clients dropped for falling behind", registry=r)
        self.dropped_txs = Counter("rampart_batch_dropped_txs", "Engine outputs the spec refused (never posted)",
                                   registry=r)
        self.rollbacks = Counter("rampart_rollbacks", "Re-applications after a lost batch or a refused output",
                                 registry=r)
        self.busted = Counter("rampart_busted_outputs", "Outputs a rollback busted (fills, withdrawals, ...)",
                              registry=r)

        self.ack_latency = Histogram("rampart_trading_answer_seconds",
                                     "From a trading request's body read to its answer (journal commit included)",
                                     registry=r, buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1,
                                                          0.25, 0.5, 1, 2.5))
        self.loop_lag = Histogram("rampart_event_loop_lag_seconds",
                                  "How late a 50 ms timer fires on the serving event loop", registry=r,
                                  buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5))
        self._seen: dict[str, int] = {}

    async def watch_loop(self, period: float = 0.05) -> None:
        """Sample the event loop's lag forever: what every request waits on top of its own work."""
        loop = asyncio.get_running_loop()
        while True:
            start = loop.time()
            await asyncio.sleep(period)
            self.loop_lag.observe(max(0.0, loop.time() - start - period))

    def sync(self, counters: dict[str, int]) -> None:
        """Bring the order and fill counters up to the core's own counts."""
        for name, counter in (("orders", self.orders), ("fills", self.fills)):
            delta = counters[name] - self._seen.get(name, 0)
            if delta > 0:
                counter.inc(delta)
                self._seen[name] = counters[name]

    def render(self) -> bytes:
        return generate_latest(self.registry)
