"""The sequencer's defender: the shared dispute player (verifier.player) in the sequencer's seat.

It answers every game opened against a batch this sequencer posted, backing each move with the
batcher's own pre-state of that batch (its undo log reaches back to the first batch not final)
and the data it posted. Its progress is in the sequencer's database, so a restarted sequencer
resumes its games. It runs in its own thread: a long re-execution never holds up intake.
"""

from __future__ import annotations

import logging
import threading
from collections import Counter
from typing import Any

from contracts_spec import codec, eip712
from contracts_spec.dispute import Seat
from contracts_spec.stf import Env
from contracts_spec.types import Address, Hash32
from l1_mock.client import GameInfo, L1Client, L1Error
from sequencer.batcher import Batcher
from verifier.player import Outcome, Played, Player, Result, fetch_batch
from verifier.trace import Trace, TraceMismatch

log = logging.getLogger("rampart.defender")


class NotOurs(LookupError):
    """A batch this sequencer did not post, or one it already rolled back."""


class SequencerSeat(Player):
    """The player in the sequencer's seat that leaves the open games on batches the sequencer did
    not post (a dev fault injector's deliberate lies) to whoever defends those; it still settles
    them once they are over."""

    def __init__(self, *args: Any, ours: Any, **kw: Any) -> None:
        super().__init__(*args, **kw)
        self._ours = ours

    def _play(self, info: GameInfo, now: int) -> list[Played]:
        if info.status == "open" and not self._ours(info.batch_id):
            return []
        return super()._play(info, now)


class Defender:
    def __init__(self, batcher: Batcher, client: L1Client, db: str, schema: str | None, interval: float) -> None:
        self.batcher = batcher
        self.core = batcher.core
        self.client = client
        self.genesis = batcher.core.genesis
        self.interval = interval
        self.player = SequencerSeat(client, db, Seat.SEQUENCER, self.truth, on_outcome=self._on_outcome,
                                    schema=schema, ours=self.is_ours)
        self.results: Counter[str] = Counter()  # game outcomes reported, by result
        self.errors = 0
        self._stopping = threading.Event()
        self._wakeup = threading.Event()
        self._thread: threading.Thread | None = None

    # --- the player's view -------------------------------------------------------------------

    def is_ours(self, batch_id: int) -> bool:
        """Posted by this sequencer (its games are ours to answer, or to resolve once it fell)."""
        return batch_id in self.batcher.ours

    def truth(self, batch_id: int) -> Trace:
        """Our batch as we built it: its data from the base layer (the very bytes we posted, checked
        against our header) re-executed from our pre-state of it."""
        index = self.batcher.ours.get(batch_id)
        if index is None:
            raise NotOurs(f"batch {batch_id} is not one of ours on the valid chain")
        info = self.core.batches[index]
        if info.l1_batch_id != batch_id:
            raise NotOurs(f"batch {batch_id} is no longer our batch {index}")
        header, body = fetch_batch(self.client, batch_id, self.genesis)
        # Verify the base layer holds the very batch we built
        if codec.encode_header(header) != codec.encode_header(info.header):
            raise TraceMismatch(f"the base layer's batch {batch_id} is not our batch {index}")
        preset = self.genesis.preset
        # Every order was checked at intake and the data is ours: no signature is recovered again
        signers: dict[int, Address] = {i: so.order.account for i, so in enumerate(body.orders)}
        ids: dict[int, Hash32] = {i: eip712.order_digest(preset, so.order) for i, so in enumerate(body.orders)}
        trace = Trace(self.batcher.pre_state(index), header, body, Env(preset, header.time, self.player.bridge),
                      signers=signers, ids=ids)
        if trace.root_at(header.tx_count) != header.post_root:
            # a bug or an injected fault: we never back a wrong root, so this game is lost and the
            # rollback follows the loss
            log.critical("our batch %d (base-layer batch %d) does not re-execute to its posted root: it "
                         "cannot be defended", index, batch_id)
        return trace

    def _on_outcome(self, outcome: Outcome) -> None:
        if not self.is_ours(outcome.batch_id):
            return  # a batch posted by someone else with our key (a dev fault injector's lie)
        self.results[outcome.result.value] += 1
        if outcome.result == Result.LOST:
            log.error("game %d against our batch %d LOST: the batcher rolls back", outcome.game_id, outcome.batch_id)
        elif outcome.result == Result.WON:
            log.warning("game %d against batch %d won: %d credited", outcome.game_id, outcome.batch_id,
                        outcome.credited)

    # --- the thread ---------------------------------------------------------------------------

    def tick(self) -> list[Played]:
        return self.player.tick()

    def open_games(self) -> int:
        return sum(1 for row in self.player.progress() if row.status == "open")

    def nudge(self) -> None:
        """Look at the games now rather than after the poll interval."""
        self._wakeup.set()

    def start(self) -> None:
        self._stopping.clear()
        self._thread = threading.Thread(target=self._run, name="defender", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stopping.is_set():
            played: list[Played] = []
            try:
                played = self.player.tick()
            except L1Error as exc:
                self.errors += 1
                if exc.away:  # the base layer away: the follower says so once
                    log.debug("defender tick: %s", exc)
                else:
                    log.exception("defender tick failed")
            except Exception:  # a database hiccup: next tick
                self.errors += 1
                log.exception("defender tick failed")
            if not played:
                self._wakeup.wait(self.interval)
                self._wakeup.clear()

    def stop(self) -> None:
        self._stopping.set()
        self._wakeup.set()
        if self._thread is not None:
            self._thread.join(60)
            self._thread = None

    def close(self) -> None:
        self.stop()
        self.player.close()
