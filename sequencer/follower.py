"""Background loops of a live sequencer: following the base layer (clock, deposits, forced
withdrawals, batch finality, games) and cutting, building and posting batches.

Blocking base-layer calls and batch execution run in worker threads; everything that touches
the core runs on the event loop.

When the base layer loses one of our batches (only a bug or an injected fault can make it), the
batching loop rolls back: the state goes back to the last valid root, every output after it is
re-applied with the spec at once (intake waits for that one step), what the spec now rejects is
busted, the engine is put back on the spec's records, all of it in one journal record
(Kind.ROLLBACK), and the rebuilt batches are posted in order.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from contracts_spec import codec
from contracts_spec.types import Address, Atoms, ForcedEntry
from l1_mock.client import L1Client, L1Error
from sequencer.batcher import Batcher, Built
from sequencer.core import BatchInfo, Core, Kind, encode_governance, encode_queue, final_count
from sequencer.governance_view import effective_changes, read_queue
from sequencer.journal import BatchRow
from sequencer.rollback import Corrections, compute_corrections, encode_corrections

log = logging.getLogger("rampart.follower")


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
        # The base layer's reachability as the follower's polls last found it: an outage is said
        # once when it starts (with the error) and once when it ends (with how long it lasted)
        self.l1_up = True
        self.l1_away_since: float | None = None  # time.monotonic() of the first failed poll
        self.l1_away_polls = 0
        self.l1_last_error: str | None = None
        self._final_prefix = 0  # core.batches[:this] are final, as last seen

    def first_open(self) -> int:
        """How many of our batches, from the first, are final: batches become final in order and
        never stop being final, so each poll looks only at the ones after (a poll that scanned
        every batch since genesis cost ~40 ms of the serving thread after a day of batches)."""
        self._final_prefix = final_count(self.core.batches, self._final_prefix)
        return self._final_prefix

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
        # The whole governance queue, announced changes too (published so traders see what is coming)
        queue = core.governance_queue
        for announced in await asyncio.to_thread(read_queue, client, len(queue)):
            if announced.index not in queue:
                queue[announced.index] = announced
                self.publish("governance_announced", announced.index)
        for index, entry in effective_changes(queue, len(core.governance_entries), core.now):
            # in queue order, each once effective: ApplyGovernance in the next batch
            core.execute(Kind.GOVERNANCE, encode_governance(index, entry), (index, entry))
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
        batcher = self.batcher
        settled = self.first_open()
        open_batches = [b for b in core.batches[settled:] if b.status in ("posted", "challenged")
                        and b.l1_batch_id is not None]
        # A lost batch takes the valid chain's head below it: those of ours above the head (posted
        # before this read) were lost or built on a lost one
        head = int((await asyncio.to_thread(self.client.rollup))["head_index"])
        fallen = [b for b in open_batches if b.index > head]
        open_batches = [b for b in open_batches if b.index <= head] + fallen
        changed = []
        challenged = False
        for b in open_batches:
            view = await asyncio.to_thread(self.client.batch, b.l1_batch_id)  # type: ignore[arg-type]
            status = {"final": "final", "lost": "invalid", "invalid": "invalid"}.get(view["status"])
            if status is None:
                status = "challenged" if view.get("open_games") else "posted"
            challenged = challenged or status == "challenged"
            if status != b.status and self._is_current(b):
                b.status = status
                changed.append(b)
                if status == "invalid" and (batcher.rollback_to is None or b.index < batcher.rollback_to):
                    batcher.rollback_to = b.index
                    log.error("batch %d (base-layer batch %d) lost on the base layer: rolling back", b.index,
                              b.l1_batch_id)
                    self.wake.set()
            if status in ("posted", "challenged") and not fallen:
                break  # finality goes in order: later batches cannot be final before this one
        for b in changed:
            if batcher.journal is not None and self._is_current(b):
                await asyncio.to_thread(batcher.journal.set_batch_status, b.index, b.status)
            self.publish("batch", b)
        settled = self.first_open()
        if self.metrics is not None:
            counts: dict[str, int] = {"final": settled}
            for b in core.batches[settled:]:
                counts[b.status] = counts.get(b.status, 0) + 1
            for status in ("built", "posted", "challenged", "final", "invalid"):
                self.metrics.batches.labels(status).set(counts.get(status, 0))
        core.trim_outputs(core.batches[settled].first_out if settled < len(core.batches) else self.batcher.next_out)
        if challenged:
            games = await asyncio.to_thread(self.client.games, None, None, "open")
            if self.metrics is not None:
                self.metrics.games.labels("open").set(len(games))
            if self.defender is not None and games:
                self.defender.nudge()  # it polls on its own; a game seen here is answered now
        elif self.metrics is not None:
            self.metrics.games.labels("open").set(0)

    def _is_current(self, b: BatchInfo) -> bool:
        """Still the batch at its index (a rollback may have replaced it during an await)."""
        batches = self.core.batches
        return b.index < len(batches) and batches[b.index] is b

    def l1_away(self, exc: L1Error) -> None:
        """A poll found the base layer not answering: said once per outage, then only counted."""
        self.l1_away_polls += 1
        self.l1_last_error = " ".join(str(exc).split())[:300]  # an http_error's body may be a whole page
        if self.metrics is not None:
            self.metrics.l1_up.set(0)
        if not self.l1_up:
            log.debug("base layer still away: %s", exc)
            return
        self.l1_up = False
        self.l1_away_since = time.monotonic()
        log.warning("base layer at %s stopped answering: %s", self._l1_url(), self.l1_last_error)

    def l1_back(self) -> None:
        """A poll reached the base layer: the end of an outage is said once, with its length."""
        if self.metrics is not None:
            self.metrics.l1_up.set(1)
        if self.l1_up:
            return
        away = time.monotonic() - (self.l1_away_since or time.monotonic())
        log.warning("base layer at %s answers again after %.1f s away (%d polls failed; last: %s)", self._l1_url(),
                    away, self.l1_away_polls, self.l1_last_error)
        self.l1_up = True
        self.l1_away_since = None
        self.l1_away_polls = 0

    def l1_away_seconds(self) -> float | None:
        """How long the base layer has not answered, None while it answers."""
        return None if self.l1_away_since is None else time.monotonic() - self.l1_away_since

    def _l1_url(self) -> str:
        http = getattr(self.client, "http", None)
        return str(http.base_url).rstrip("/") if http is not None else "?"

    async def follow(self) -> None:
        while True:
            try:
                await self.follow_once()
            except L1Error as exc:
                self.errors += 1
                if exc.away:
                    self.l1_away(exc)
                else:  # it answered, with a refusal: no outage, but a step that did not happen
                    self.l1_back()
                    log.warning("base layer: %s", exc)
            except asyncio.CancelledError:
                raise
            except Exception:
                self.errors += 1
                log.exception("follower step failed")
            else:
                self.errors = 0
                self.l1_back()
            await asyncio.sleep(self.settings.follow_interval)

    # --- batching ----------------------------------------------------------------------------------

    async def batch_once(self) -> bool:
        """Roll back if the base layer lost a batch of ours; otherwise cut, build and post one
        batch (or post the next rebuilt one); True if one was posted."""
        batcher = self.batcher
        if batcher.halted is not None:
            return False
        if batcher.rollback_to is not None:
            await self.rollback(batcher.rollback_to)
            return bool(batcher.queued)
        if batcher.queued:
            return await self._post_queued()
        if batcher.pending is not None and not await self._retry(batcher.pending):
            return False
        batcher.trim()
        cut = batcher.cut(self.l1_now if self.client is not None else self.core.now)
        if cut is None:
            return False
        built = await asyncio.to_thread(batcher.build, cut)
        if built.info.dropped - self.core.busted:
            # The engine emitted what the spec refuses here: it must forget it as well, so this
            # goes the rollback's way (from the head: nothing was lost)
            batcher.discard(built)
            await self.rollback(built.info.index)
            return bool(batcher.queued)
        await asyncio.to_thread(batcher.save, built.info)
        return await self._post(built)

    # --- rolling back -------------------------------------------------------------------------

    async def rollback(self, index: int) -> None:
        """Re-apply every output from batch `index` on; the batches from `index` on that reached the
        base layer were lost there (or none was, when a fresh batch dropped outputs)."""
        batcher, core = self.batcher, self.core
        if batcher.pending is not None:  # built on what is rolled back; on the chain it is invalid too
            batcher.discard(batcher.pending)
            batcher.pending = None
        l1_now = self.l1_now
        deposits: list[tuple[int, Address, int]] = []
        forced: list[tuple[int, Address, int]] = []
        if self.client is not None:
            l1_now = await asyncio.to_thread(self.client.now)
            self.l1_now = max(self.l1_now, l1_now)
            core.set_time(l1_now)
            deposits, forced = await asyncio.to_thread(self._chain_entries, index)
        # From here to the ROLLBACK record nothing awaits: the engine stands still while the spec
        # re-applies what it emitted, so the two can be compared output for output.
        started = time.perf_counter()
        for i, account, amount in deposits:
            core.deposits[i] = (i, account, amount, core.deposits[i][3])
        for i, account, amount in forced:
            core.forced_entries[i] = ForcedEntry(account, Atoms(amount))
        unrecovered = batcher.unrecovered
        lost_ids = tuple(b.l1_batch_id for b in core.batches[index:] if b.l1_batch_id is not None) + tuple(
            r.l1_batch_id for r in unrecovered if r.l1_batch_id is not None)
        rebuilt, replaced = batcher.reapply(index, l1_now, core.out_end)
        valid_root = rebuilt[0].info.header.prev_root if rebuilt else batcher.state.root()
        busted = sorted(set().union(*(b.info.dropped for b in rebuilt)) - core.busted)
        with batcher.lock:
            accounts, positions, markets = compute_corrections(core.engine, batcher.state, core.withdraw_nonce)
        c = Corrections(index, valid_root, lost_ids, tuple(busted), tuple(deposits), tuple(forced), accounts,
                        positions, markets)
        outcome = core.execute(Kind.ROLLBACK, encode_corrections(c), (c,))
        log.warning("rolled back to batch %d (root 0x%s): %d batches lost, %d rebuilt, %d outputs busted, %d engine "
                    "records corrected, in %.3f s", index, valid_root.hex()[:16], len(lost_ids), len(rebuilt),
                    len(busted), c.engine_records, time.perf_counter() - started)
        if self.metrics is not None:
            self.metrics.rollbacks.inc()
            self.metrics.busted.inc(len(busted))
        # Intake goes on; what follows only records and reports it
        lost = [BatchInfo(b.index, b.first_out, b.end_out, b.dropped, b.header, "invalid", b.l1_batch_id,
                          b.posted_time, b.withdrawal_count) for b in replaced]
        lost += [BatchInfo(r.idx, r.first_out, r.end_out, frozenset(r.dropped), codec.decode_header(r.header),
                           "invalid", r.l1_batch_id, r.posted_time) for r in unrecovered if r.status != "built"]
        lost = [b for b in lost if b.l1_batch_id is not None]  # built, never posted: nothing was lost
        if core.loop is not None:
            # The record first: rows of rebuilt batches without it would be replayed without the
            # corrections (a crash before it leaves the old rows, and the rollback is done again)
            await core.durable(outcome.seq)
        if batcher.journal is not None:
            try:
                await asyncio.to_thread(batcher.journal.replace_batches_from, index, [_row(b) for b in lost],
                                        [_row(b.info) for b in rebuilt], outcome.seq)
            except Exception as exc:  # the journal no longer says what was posted: stop posting
                batcher.halted = f"rollback from batch {index} not recorded: {exc!r}"
                raise
        core.lost_batches.extend(lost)
        batcher.unrecovered = []
        if batcher.rollback_to is not None and batcher.rollback_to >= index:
            batcher.rollback_to = None
        for info in lost + [b.info for b in rebuilt]:
            self.publish("batch", info)

    def _chain_entries(self, index: int) -> tuple[list[tuple[int, Address, int]], list[tuple[int, Address, int]]]:
        """Bridge entries from batch `index` on where ours differ from the base layer's storage
        (which is what the spec reads): re-applied, they must be the base layer's."""
        assert self.client is not None
        core = self.core
        before = core.batches[index - 1].header if 0 < index <= len(core.batches) else None
        deposits: list[tuple[Address, int]] = [(a, amount) for _, a, amount, _ in core.deposits]
        forced: list[tuple[Address, int]] = [(e.account, e.amount) for e in core.forced_entries]
        return (self._differing("deposit", before.deposits_consumed if before else 0, deposits,
                                self.client.deposit_entry),
                self._differing("forced", before.forced_consumed if before else 0, forced, self.client.forced_entry))

    @staticmethod
    def _differing(what: str, start: int, mine: list[tuple[Address, int]], read: Any) -> list[tuple[int, Address, int]]:
        fixes = []
        for i in range(start, len(mine)):
            entry = read(i)
            if entry is not None and (entry.account, entry.amount) != mine[i]:
                log.error("bridge entry %d (%s): ours %r, the base layer's %r", i, what, mine[i],
                          (entry.account, entry.amount))
                fixes.append((i, entry.account, int(entry.amount)))
        return fixes

    async def _post_queued(self) -> bool:
        """Post the next batch a rollback rebuilt, once its outputs are journaled."""
        batcher = self.batcher
        built = batcher.queued[0]
        if built.info.end_out > self.core.out_durable:
            return False
        if built.info.l1_batch_id is None and await asyncio.to_thread(batcher._on_chain, built.info.header):
            assert batcher.client is not None
            view = await asyncio.to_thread(batcher.client.canonical, built.info.index)
            built.info.l1_batch_id, built.info.posted_time = int(view["batch_id"]), int(view["posted_time"])
            built.info.status = "posted"
        else:
            try:
                await asyncio.to_thread(batcher.post, built)
            except L1Error as exc:
                if exc.away:
                    log.warning("posting rebuilt batch %d: %s (will check and retry)", built.info.index, exc)
                elif exc.code == "insufficient_stake":
                    await self._stake_refused(built, exc)
                else:
                    log.error("the base layer refused rebuilt batch %d: %s; rebuilding from it", built.info.index, exc)
                    batcher.rollback_to = built.info.index
                return False
        batcher.queued.pop(0)
        if built.info.l1_batch_id is not None:
            batcher.ours[built.info.l1_batch_id] = built.info.index
        await asyncio.to_thread(batcher.save, built.info)
        self.publish("batch", built.info)
        return True

    async def _stake_refused(self, built: Built, exc: L1Error) -> None:
        """Open games escrow bonds from the stake; in dev the sequencer tops it up itself."""
        if self.settings.auto_stake and self.client is not None:
            log.warning("posting batch %d: %s; topping the stake up (dev)", built.info.index, exc)
            await asyncio.to_thread(self._top_up_stake)
        else:
            log.error("posting batch %d: %s; add stake (register_sequencer) to go on posting", built.info.index, exc)

    def _top_up_stake(self) -> None:
        assert self.client is not None
        need = self.core.preset.sequencer_stake_min - int(self.client.rollup()["stake"])
        if need > 0:
            self.client.faucet(native=need)
            self.client.register_sequencer(need)

    async def _post(self, built: Built) -> bool:
        batcher = self.batcher
        try:
            await asyncio.to_thread(batcher.post, built)
        except L1Error as exc:
            if exc.away or exc.code == "insufficient_stake":
                if exc.code == "insufficient_stake":
                    await self._stake_refused(built, exc)
                else:
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
            except L1Error as exc:
                if not exc.away:
                    log.exception("batch step failed")
                else:  # the base layer away: the follower says so once; the batch is retried
                    log.debug("batch step: %s", exc)
            except Exception:
                log.exception("batch step failed")


def _row(info: BatchInfo) -> BatchRow:
    return BatchRow(info.index, info.first_out, info.end_out, tuple(sorted(info.dropped)), codec.encode_header(info.header),
                    info.status, info.l1_batch_id, info.posted_time)
