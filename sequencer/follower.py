"""Background loops of a live sequencer: following the base layer (clock, deposits, forced
withdrawals, batch finality, games) and cutting, building and posting batches.

Blocking base-layer calls and batch execution run in worker threads; everything that touches
the core runs on the event loop.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from contracts_spec.types import Address
from l1_mock.client import L1Client, L1Error
from sequencer.batcher import Batcher, Built
from sequencer.core import Core, Kind, encode_queue

log = logging.getLogger("rampart.follower")

_TRANSIENT = {"unreachable", "http_error"}


class Follower:
    def __init__(self, core: Core, batcher: Batcher, client: L1Client | None, settings: Any, metrics: Any,
                 publish: Any = None, defender: Any = None) -> None:
        self.core = core
        self.batcher = batcher
        self.client = client
        self.settings = settings
        self.metrics = metrics
        self.publish = publish or (lambda topic, payload: None)
        self.defender = defender
        self.l1_now = core.now
        self.last_tick = core.now
        self.wake = asyncio.Event()
        self.errors = 0

    # --- following ---------------------------------------------------------------------------------

    async def follow_once(self) -> None:
        client = self.client
        core = self.core
        if client is None:
            return
        self.l1_now = await asyncio.to_thread(client.now)
        core.set_time(self.l1_now)
        deposits = await asyncio.to_thread(self._new_entries, client.deposit_entry, core.engine.deposits)
        for index, account, amount in deposits:
            core.execute(Kind.DEPOSIT, encode_queue(index, account, amount), (index, account, amount))
        forced = await asyncio.to_thread(self._new_entries, client.forced_entry, core.forced_next)
        for index, account, amount in forced:
            core.execute(Kind.FORCED, encode_queue(index, account, amount), (index, account, amount))
        if core.now > self.last_tick:
            core.execute(Kind.TICK, b"", ())
            self.last_tick = core.now
        await self._statuses()
        if core.out_durable - self.batcher.next_out >= self.batcher.max_txs:
            self.wake.set()

    @staticmethod
    def _new_entries(read: Any, start: int, most: int = 1000) -> list[tuple[int, Address, int]]:
        out = []
        for index in range(start, start + most):
            entry = read(index)
            if entry is None:
                break
            out.append((index, entry.account, entry.amount))
        return out

    async def _statuses(self) -> None:
        assert self.client is not None
        core = self.core
        open_batches = [b for b in core.batches if b.status in ("posted", "challenged") and b.l1_batch_id is not None]
        changed = []
        for b in open_batches:
            view = await asyncio.to_thread(self.client.batch, b.l1_batch_id)  # type: ignore[arg-type]
            status = {"final": "final", "lost": "invalid", "invalid": "invalid"}.get(view["status"])
            if status is None:
                status = "challenged" if view.get("open_games") else "posted"
            if status != b.status:
                b.status = status
                changed.append(b)
                if status == "invalid" and self.batcher.halted is None:
                    self.batcher.halted = f"batch {b.index} was lost on the base layer"
                    log.error("batch %d lost on the base layer: posting halted (rollback: issue 6)", b.index)
            if status in ("posted", "challenged"):
                break  # finality goes in order: later batches cannot be final before this one
        for b in changed:
            await asyncio.to_thread(self.batcher.journal.set_batch_status, b.index, b.status) \
                if self.batcher.journal is not None else None
            self.publish("batch", b)
        if self.metrics is not None:
            counts: dict[str, int] = {}
            for b in core.batches:
                counts[b.status] = counts.get(b.status, 0) + 1
            for status in ("built", "posted", "challenged", "final", "invalid"):
                self.metrics.batches.labels(status).set(counts.get(status, 0))
        final = [b for b in core.batches if b.status != "final"]
        core.trim_outputs(final[0].first_out if final else self.batcher.next_out)
        if any(b.status == "challenged" for b in core.batches):
            games = await asyncio.to_thread(self.client.games, None, None, "open")
            if self.metrics is not None:
                self.metrics.games.labels("open").set(len(games))
            if self.defender is not None:
                for game in games:
                    await asyncio.to_thread(self.defender, game)

    async def follow(self) -> None:
        while True:
            try:
                await self.follow_once()
                self.errors = 0
            except L1Error as exc:
                self.errors += 1
                log.warning("base layer: %s", exc)
            except asyncio.CancelledError:
                raise
            except Exception:
                self.errors += 1
                log.exception("follower step failed")
            await asyncio.sleep(self.settings.follow_interval)

    # --- batching ----------------------------------------------------------------------------------

    async def batch_once(self) -> bool:
        """Cut, build and post one batch; True if one was posted."""
        batcher = self.batcher
        if batcher.halted is not None:
            return False
        if batcher.pending is not None and not await self._retry(batcher.pending):
            return False
        cut = batcher.cut(self.l1_now if self.client is not None else self.core.now)
        if cut is None:
            return False
        built = await asyncio.to_thread(batcher.build, cut)
        await asyncio.to_thread(batcher.save, built.info)
        return await self._post(built)

    async def _post(self, built: Built) -> bool:
        batcher = self.batcher
        try:
            await asyncio.to_thread(batcher.post, built)
        except L1Error as exc:
            if exc.code in _TRANSIENT:
                log.warning("posting batch %d: %s (will check and retry)", built.info.index, exc)
                batcher.pending = built
                return False
            log.error("the base layer refused batch %d: %s", built.info.index, exc)
            batcher.discard(built)
            if batcher.journal is not None:
                await asyncio.to_thread(batcher.journal.delete_batches_from, built.info.index)
            return False
        batcher.pending = None
        batcher.accept(built)
        await asyncio.to_thread(batcher.save, built.info)
        self.publish("batch", built.info)
        return True

    async def _retry(self, built: Built) -> bool:
        """A post whose answer was lost: on the chain already, or post it again."""
        batcher = self.batcher
        if await asyncio.to_thread(batcher._on_chain, built.info.header):
            assert batcher.client is not None
            view = await asyncio.to_thread(batcher.client.canonical, built.info.index)
            built.info.l1_batch_id = int(view["batch_id"])
            built.info.posted_time = int(view["posted_time"])
            built.info.status = "posted"
            batcher.pending = None
            batcher.accept(built)
            await asyncio.to_thread(batcher.save, built.info)
            self.publish("batch", built.info)
            return True
        batcher.pending = None
        return await self._post(built)

    async def batches(self) -> None:
        while True:
            try:
                await asyncio.wait_for(self.wake.wait(), self.settings.batch_interval)
            except TimeoutError:
                pass
            self.wake.clear()
            try:
                while await self.batch_once():
                    if self.core.out_durable - self.batcher.next_out < self.batcher.max_txs:
                        break
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("batch step failed")
