"""One sequencer, assembled: settings -> base-layer client -> genesis -> journal -> the newest
snapshot and the records after it (or a full replay) -> batcher recovery -> service, feeds, oracle intake, metrics, the defender of its batches -> the
app with its background loops.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

from contracts_spec import codec
from contracts_spec.crypto import address_of_private_key
from contracts_spec.params import genesis_from_json, genesis_to_json
from contracts_spec.types import Genesis
from l1_mock.cli_common import shown_url
from l1_mock.client import L1Client, L1Error
from sequencer import faults
from sequencer import snapshot as snapshots
from sequencer.batcher import Batcher
from sequencer.core import BatchInfo, Core
from sequencer.defender import Defender
from sequencer.feeds import Hub
from sequencer.follower import Follower
from sequencer.intake import Verifier
from sequencer.journal import BatchRow, Journal
from sequencer.metrics import Metrics
from sequencer.oracle import OracleIntake
from sequencer.service import Service
from sequencer.settings import Settings
from sequencer.snapshot import Snapshot, Snapshotter

log = logging.getLogger("rampart.node")


class GenesisMismatch(Exception):
    pass


def check_genesis(settings: Settings, genesis: Genesis) -> None:
    """What the settings and the genesis alone must satisfy (checked again by a CLI before it waits
    for the base layer): the key is the genesis sequencer's, fault injection only on dev."""
    address = address_of_private_key(settings.key_bytes())
    if address != genesis.sequencer:
        raise GenesisMismatch(f"the sequencer key (RAMPART_SEQUENCER_KEY) signs as 0x{address.hex()}, not as the "
                              f"genesis sequencer 0x{genesis.sequencer.hex()}")
    faults.check(genesis.preset)


def load_genesis(settings: Settings, client: L1Client | None) -> Genesis:
    if settings.genesis is not None:
        return genesis_from_json(settings.genesis.read_text())
    if client is None:
        raise GenesisMismatch("no genesis file and no base layer to read it from")
    return client.genesis()


def recover_core(genesis: Genesis, journal: Journal, snapshot: Snapshot | None = None) -> Core:
    """Replay every journal record through a fresh core, or those after `snapshot` through its core."""
    core = snapshot.core if snapshot is not None else Core(genesis, journal)
    for record in journal.replay(after=snapshot.seq if snapshot is not None else 0):
        core.replay_record(record.kind, record.now, record.body)
    return core


def restore_core(genesis: Genesis, journal: Journal, rows: list[BatchRow]) -> tuple[Core, Snapshot | None]:
    """The core from the newest snapshot that fits and the records after it, else a full replay."""
    snapshot = snapshots.load(genesis, journal)
    if snapshot is not None:
        core = recover_core(genesis, journal, snapshot)
        if snapshots.fits(snapshot, rows):
            log.info("restored from the snapshot at record %d and %d records after it", snapshot.seq,
                     core.seq - snapshot.seq)
            return core, snapshot
        log.warning("snapshot at record %d skipped: the journal's batches do not begin with its final ones",
                    snapshot.seq)
    return recover_core(genesis, journal), None


class Node:
    def __init__(self, settings: Settings, client: L1Client | None = None, genesis: Genesis | None = None) -> None:
        settings.check()
        self.settings = settings
        key = settings.key_bytes()
        self.client = client if client is not None else L1Client(settings.l1_url, key)
        self.genesis = genesis or load_genesis(settings, self.client)
        # Verify the key is the genesis sequencer's and the journal belongs to this genesis
        check_genesis(settings, self.genesis)
        self.journal = Journal.open(settings.db, settings.db_schema, settings.journal_group)
        stored = self.journal.get_meta("genesis")
        if stored is None:
            self.journal.set_meta("genesis", genesis_to_json(self.genesis))
        elif stored != genesis_to_json(self.genesis):
            raise GenesisMismatch(f"the journal {shown_url(settings.db)} was written under another genesis")
        self.metrics = Metrics()
        rows = self.journal.batches()
        self.core, snapshot = restore_core(self.genesis, self.journal, rows)
        self.batcher = Batcher(self.core, self.journal, self.client, settings.batch_max_txs, self.metrics,
                               post=settings.post_batches)
        if snapshot is not None:
            rows = snapshots.resume(self.batcher, snapshot, rows)
        self.batcher.recover(rows)
        self.snapshotter = Snapshotter(self.core, self.batcher, self.journal, settings.snapshot_every,
                                       snapshot.seq if snapshot is not None else 0)
        for _, row in self.journal.lost():
            self.core.lost_batches.append(BatchInfo(row.idx, row.first_out, row.end_out, frozenset(row.dropped),
                                                    codec.decode_header(row.header), "invalid", row.l1_batch_id,
                                                    row.posted_time))
            if row.l1_batch_id is not None:
                self.batcher.ours.setdefault(row.l1_batch_id, None)  # its games are ours to resolve
        self.service = Service(self.core, settings, Verifier(settings.verify_workers))
        self.service.metrics = self.metrics
        self.hub = Hub(self.service)
        self.oracle = OracleIntake(self.service)
        # The shared dispute player in the sequencer's seat, its progress next to the journal
        self.defender = Defender(self.batcher, self.client, settings.db, settings.db_schema, settings.follow_interval) \
            if settings.defend and settings.post_batches else None
        self.follower = Follower(self.core, self.batcher, self.client, settings, self.metrics,
                                 publish=self.hub.on_core, defender=self.defender)
        self.tasks: list[asyncio.Task[Any]] = []

    def stake(self) -> None:
        """Dev: make sure the sequencer is registered with enough stake to post."""
        if not (self.settings.auto_stake and self.settings.post_batches):
            return
        rollup = self.client.rollup()
        need = self.genesis.preset.sequencer_stake_min
        if rollup["registered"] and rollup["stake"] >= need:
            return
        self.client.faucet(native=need * 2)
        self.client.register_sequencer(need)

    @contextlib.asynccontextmanager
    async def lifespan(self, app: Any) -> AsyncIterator[None]:
        await self.start()
        try:
            yield
        finally:
            await self.stop()

    async def start(self) -> None:
        # Journal first: what the first look at the base layer executes (deposits and forced
        # withdrawals made while we were down, governance, the clock) is an input like any other,
        # and orders acknowledged after it may rely on it; unjournaled, a restart before the next
        # snapshot replayed those orders without it (tests/sequencer/service/test_crash.py)
        self.core.attach(asyncio.get_running_loop())
        self.journal.start()
        try:
            await asyncio.to_thread(self.stake)
            await self.follower.follow_once()
        except L1Error as exc:
            if exc.away:
                self.follower.l1_away(exc)  # said once; its follow loop says when it answers again
            else:
                log.warning("base layer not ready at start: %s", exc)
        self.hub.reset_books()
        self.tasks = [asyncio.create_task(self.follower.follow(), name="follow"),
                      asyncio.create_task(self.follower.batches(), name="batches"),
                      asyncio.create_task(self.snapshotter.run(), name="snapshots"),
                      asyncio.create_task(self.metrics.watch_loop(), name="loop-lag")]
        if self.defender is not None:
            self.defender.start()

    async def stop(self) -> None:
        for task in self.tasks:
            task.cancel()
        for task in self.tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self.tasks = []
        if self.journal.failed is None:
            try:
                await self.snapshotter.take(wait=True)  # the next start replays nothing
            except Exception:
                log.exception("snapshot at shutdown failed")
        if self.defender is not None:
            await asyncio.to_thread(self.defender.close)
        await asyncio.to_thread(self.journal.close)
        self.service.verifier.close()
        self.client.close()


def create(settings: Settings, genesis: Genesis | None = None) -> Any:
    from sequencer.api import create_app

    node = Node(settings, genesis=genesis)
    return create_app(node), node
