"""The players the harness adds to a network, each the shared dispute player
(verifier.player.Player) with a verifier node (keyless, not challenging) for the true pre-state:

- the liar's defender: plays, with the sequencer's key, the games against the lies the sequencer
  was told to post (sequencer/faults.py), which the sequencer's own defender leaves alone (they
  are not its batches); it plays the liar's trace (faults.LieTrace) and may stop answering or wait
  for several challengers, as the fault asks. With `lies_only=False` it defends every batch (a
  sequencer run without its own defender);
- a dishonest challenger: challenges one batch with a view that is wrong after one transaction.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from contracts_spec.dispute import Seat
from contracts_spec.state import State
from contracts_spec.types import Atoms
from l1_mock.client import GameInfo, L1Client
from sequencer.faults import LieTrace, lie_of, read_log
from sequencer.scenario import Keys
from verifier.node import Node
from verifier.player import Played, Player, Truth
from verifier.settings import Settings
from verifier.trace import Trace

log = logging.getLogger("rampart.harness")


def keyless_node(l1_url: str, db: str, schema: str | None, work: Path) -> Node:
    """A verifier node that only follows and verifies (the truth for a player)."""
    settings = Settings(l1_url=l1_url, db=db, db_schema=schema, key_file=work / "none.key", challenge=False,
                        join=False, claim=False, workers=1)
    return Node(settings, None)


class StandInPlayer(Player):
    """The sequencer's seat, with what a told lie asks of its defender: stop answering after
    some moves (`silent_after`), or wait until `await_games` games are open on the batch."""

    def __init__(self, *args: Any, lies: Callable[[int], dict[str, Any] | None], lies_only: bool, **kw: Any) -> None:
        super().__init__(*args, **kw)
        self.lies, self.lies_only = lies, lies_only
        self.first_seen: dict[int, float] = {}
        self.last_move: dict[int, tuple[int, float]] = {}  # game -> (moves, when we saw that count)

    def _play(self, info: GameInfo, now: int) -> list[Played]:
        record = self.lies(info.batch_id)
        if record is None and self.lies_only:
            return []
        if record is not None and info.status == "open":
            defend = record.get("defend") or {}
            silent = defend.get("silent_after")
            if silent is not None and info.game.moves >= int(silent):
                return []  # the sequencer stops answering: its clock runs
            delay = float(defend.get("delay") or 0)  # a slow defender: this long before each move
            moves, seen = self.last_move.get(info.game_id, (-1, 0.0))
            if moves != info.game.moves:
                self.last_move[info.game_id] = (info.game.moves, time.monotonic())
                seen = time.monotonic()
            if delay and time.monotonic() - seen < delay:
                return []
            first = defend.get("first")  # play this challenger's game to its end before the others
            if first and info.game.challenger.hex() != str(first).lower().removeprefix("0x"):
                if any("0x" + g.game.challenger.hex() == str(first).lower() and g.status == "open"
                       for g in self.client.games(batch_id=info.batch_id)):
                    return []
            wait = int(defend.get("await_games") or 0)
            first = self.first_seen.setdefault(info.batch_id, time.monotonic())
            if wait and time.monotonic() - first < float(defend.get("await_seconds", 30)):
                if len(self.client.games(batch_id=info.batch_id)) < wait:
                    return []
        return super()._play(info, now)


class StandIn:
    """The sequencer's stand-in defender (see the module docstring)."""

    def __init__(self, l1_url: str, db: str, schema: str | None, fault_log: Path | None, lies_only: bool,
                 work: Path) -> None:
        self.client = L1Client(l1_url, Keys()["sequencer"], timeout=30)
        self.node = keyless_node(l1_url, db, schema, work)
        self.fault_log = fault_log
        self._lies: dict[str, dict[str, Any]] = {}  # header hash -> injected record
        self._batch_lie: dict[int, dict[str, Any] | None] = {}
        self.player = StandInPlayer(self.client, db, Seat.SEQUENCER, self.truth, schema=schema,
                                    lies=self.lie, lies_only=lies_only)

    def close(self) -> None:
        self.player.close()
        self.node.close()
        self.client.close()

    def lie(self, batch_id: int) -> dict[str, Any] | None:
        """The injected-fault record of a batch, if the sequencer posted it as a lie."""
        if batch_id in self._batch_lie and self._batch_lie[batch_id] is not None:
            return self._batch_lie[batch_id]
        if self.fault_log is not None:
            for r in read_log(self.fault_log):
                if r["event"] == "injected" and "at" in r:
                    self._lies[r["header_hash"]] = r
        header_hash = self.client.batch(batch_id)["header_hash"]
        record = self._lies.get(header_hash)
        self._batch_lie[batch_id] = record
        return record

    def truth(self, batch_id: int) -> Truth:
        pre, header, body, env = self.node.pre_state(batch_id)
        record = self.lie(batch_id)
        if record is not None:
            return LieTrace(pre, header, body, env, lie_of(record, body))
        return Trace(pre, header, body, env)

    def run(self, stop: Callable[[], bool], poll: float = 0.1) -> None:
        print("defender ready", flush=True)
        while not stop():
            busy = False
            try:
                busy = self.node.sync().busy
                busy = bool(self.player.tick()) or busy
            except Exception:  # the base layer restarting, a race with a move: next tick
                log.exception("defender tick failed")
            if not busy:
                time.sleep(poll)


def credit_after(at: int, who: bytes, amount: int = 10**6) -> Callable[[int, State], None]:
    """A wrong view: `who` holds `amount` more after transaction `at` than the rules give."""

    def fault(index: int, state: State) -> None:
        if index == at:
            acct = state.account(who)
            state.set_account(who, replace(acct, collateral=Atoms(acct.collateral + amount)))

    return fault


class Liar:
    """A dishonest challenger that follows the chain all along (so it can challenge at once): each
    line {"batch_id", "lie_at"} appended to its command file makes it open a game against that
    batch and play a view of it wrong after transaction `lie_at`. It prints one JSON line per game
    opened and one per game over."""

    def __init__(self, l1_url: str, key: bytes, db: str, schema: str | None, work: Path) -> None:
        self.client = L1Client(l1_url, key, timeout=30)
        self.node = keyless_node(l1_url, db, schema, work)
        self.lie_at: dict[int, int] = {}
        self.player = Player(self.client, db, Seat.CHALLENGER, self.truth, schema=schema, on_outcome=self.report)

    def close(self) -> None:
        self.player.close()
        self.node.close()
        self.client.close()

    def truth(self, batch_id: int) -> Truth:
        pre, header, body, env = self.node.pre_state(batch_id)
        return Trace(pre, header, body, env, credit_after(self.lie_at.get(batch_id, 0), bytes(19) + b"\x02"))

    def report(self, outcome: Any) -> None:
        print(json.dumps({"game_id": outcome.game_id, "batch_id": outcome.batch_id, "result": outcome.result.value,
                          "credited": outcome.credited, "burnt": outcome.burnt}), flush=True)

    def verified(self, batch_id: int) -> bool:
        from verifier.db import BatchRow

        with self.node.sessions() as s:
            row = s.get(BatchRow, batch_id)
            return row is not None and row.verdict is not None

    def serve(self, commands: Path, stop: Callable[[], bool], poll: float = 0.1) -> None:
        done = 0
        print("liar ready", flush=True)
        while not stop():
            busy = False
            try:
                busy = self.node.sync().busy
                lines = commands.read_text().splitlines() if commands.exists() else []
                for line in lines[done:]:
                    order = json.loads(line)
                    batch_id = int(order["batch_id"])
                    if not self.verified(batch_id):
                        break  # its pre-state is what the lie starts from: follow first
                    self.lie_at[batch_id] = int(order.get("lie_at", 0))
                    game_id = self.player.challenge(batch_id)
                    print(json.dumps({"opened": game_id, "batch_id": batch_id}), flush=True)
                    done += 1
                busy = bool(self.player.tick()) or busy
            except Exception:  # a race with a move, the base layer busy: next tick
                log.exception("liar tick failed")
            if not busy:
                time.sleep(poll)
