"""Watching the base layer: every event, stamped with the wall clock when first seen, indexed by
batch and by game. What the reports are made of: who opened which game when, each move with the
game's interval and clocks, the one-step proof, payouts, invalidations.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any

from l1_mock.client import Event, L1Client, L1Error


@dataclass
class GameLog:
    game_id: int
    batch_id: int
    challenger: str
    opened_wall: float
    opened_block: int
    moves: list[dict[str, Any]] = field(default_factory=list)  # reveal/answer/step with the game after it
    status: str = "open"
    payout: dict[str, int] | None = None
    resolved_wall: float | None = None
    step: dict[str, Any] | None = None


@dataclass
class BatchLog:
    batch_id: int
    index: int
    header_hash: str
    posted_wall: float
    posted_time: int
    tx_count: int
    data_hash: str
    lost_wall: float | None = None
    status: str = "pending"  # pending, lost, invalid (as the events tell)


class Observer:
    def __init__(self, l1_url: str, poll: float = 0.05) -> None:
        self.client = L1Client(l1_url, timeout=30)
        self.poll = poll
        self.cursor = 0
        self.events: list[tuple[float, Event]] = []
        self.batches: dict[int, BatchLog] = {}
        self.games: dict[int, GameLog] = {}
        self.by_header: dict[str, int] = {}
        self.blocks: dict[int, int] = {}  # block -> timestamp, when asked
        self.lock = threading.Lock()
        self._polling = threading.Lock()
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._run, name="observer", daemon=True)

    def start(self) -> Observer:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.stopped.set()
        self.thread.join(10)
        self.client.close()

    def _run(self) -> None:
        while not self.stopped.is_set():
            try:
                self.poll_once()
            except L1Error:
                pass  # the base layer is busy or restarting
            self.stopped.wait(self.poll)

    def poll_once(self) -> int:
        with self._polling:
            return self._poll()

    def _poll(self) -> int:
        n = 0
        while True:
            page, nxt = self.client.events(after=self.cursor, limit=1000)
            if not page:
                return n
            now = time.time()
            with self.lock:
                for e in page:
                    self._handle(now, e)
                self.cursor = nxt
            n += len(page)

    def _handle(self, wall: float, e: Event) -> None:
        self.events.append((wall, e))
        d = e.data
        if e.name == "BatchPosted":
            self.batches[d["batch_id"]] = BatchLog(d["batch_id"], d["index"], d["header_hash"], wall, d["posted_time"],
                                                  d["tx_count"], d["data_hash"])
            self.by_header[d["header_hash"]] = d["batch_id"]
        elif e.name == "BatchInvalidated":
            b = self.batches.get(d["batch_id"])
            if b is not None:
                b.status, b.lost_wall = "lost", wall
        elif e.name == "GameOpened":
            self.games[d["game_id"]] = GameLog(d["game_id"], d["batch_id"], d["challenger"], wall, e.block,
                                               [{"kind": "open", "wall": wall, "block": e.block, "game": d["game"]}])
        elif e.name == "Moved":
            g = self.games.get(d["game_id"])
            if g is not None:
                g.moves.append({"kind": d["move"], "seat": d["seat"], "wall": wall, "block": e.block,
                                "game": d["game"], **{k: d[k] for k in ("root", "agree") if k in d}})
        elif e.name == "Stepped":
            g = self.games.get(d["game_id"])
            if g is not None:
                g.step = {"seat": d["seat"], "index": d["index"], "rejected": d["rejected"], "outcome": d["outcome"]}
                g.moves.append({"kind": "step", "seat": d["seat"], "wall": wall, "block": e.block, **g.step})
        elif e.name == "GameResolved":
            g = self.games.get(d["game_id"])
            if g is not None:
                g.status, g.payout, g.resolved_wall = d["status"], d["payout"], wall
                g.moves.append({"kind": "resolve", "wall": wall, "block": e.block, "status": d["status"]})

    # --- queries ----------------------------------------------------------------------------------

    def games_on(self, batch_id: int) -> list[GameLog]:
        with self.lock:
            return sorted((g for g in self.games.values() if g.batch_id == batch_id), key=lambda g: g.game_id)

    def open_games(self) -> list[GameLog]:
        with self.lock:
            return [g for g in self.games.values() if g.status == "open"]

    def batch(self, batch_id: int) -> BatchLog | None:
        with self.lock:
            return self.batches.get(batch_id)

    def invalidated_since(self, wall: float) -> list[int]:
        with self.lock:
            return [e.data["batch_id"] for w, e in self.events if e.name == "BatchInvalidated" and w >= wall]

    def block_time(self, block: int) -> int:
        if block not in self.blocks:
            self.blocks[block] = int(self.client.block(block)["timestamp"])
        return self.blocks[block]

    def sync(self) -> None:
        """Catch up now (on top of the polling thread)."""
        try:
            self.poll_once()
        except L1Error:
            pass
