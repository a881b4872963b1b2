"""A network with instruments: the base layer's events watched, the valid chain replayed
honestly, background traders, the fault file, and the outcome of a told lie read back from the
chain (who detected it, each move, the one-step proof, bonds, invalidations, times).
"""

from __future__ import annotations

import json
import random
import threading
import time
from dataclasses import asdict, dataclass, field
from typing import Any

from contracts_spec import codec, eip712
from contracts_spec.types import Order, SignedOrder, TimeInForce
from harness.network import BTC, ETH, Network
from harness.observer import GameLog, Observer
from harness.procs import wait_for
from harness.replay import Replay
from l1_mock.client import L1Client
from sequencer.faults import read_log, tx_summary
from sequencer.trader_client import TraderError


@dataclass
class Result:
    """How one scenario ended; the first six fields are the matrix's JSON contract."""

    name: str
    expected_winner: str  # challenger | sequencer
    winner: str | None = None
    detected_by: str | None = None
    moves: int = 0
    seconds: float | None = None  # from the batch's posting (or the refused post) to the verdict
    balances_match_honest_replay: bool = False
    ok: bool = False
    fault: str | None = None
    what: str | None = None  # the lie, in words
    batch_id: int | None = None
    index: int | None = None
    tx_count: int | None = None
    step: dict[str, Any] | None = None  # the transaction the one-step proof ran
    games: list[dict[str, Any]] = field(default_factory=list)
    bonds: dict[str, int] = field(default_factory=dict)  # net native moved to each player by the games
    invalidated: list[int] = field(default_factory=list)
    detection_seconds: float | None = None
    resolution_seconds: float | None = None
    refused: str | None = None  # the base layer's refusal code, when it refused the post itself
    notes: list[str] = field(default_factory=list)
    balance_detail: str = ""
    error: str | None = None

    def contract(self) -> dict[str, Any]:
        keys = ("name", "expected_winner", "winner", "detected_by", "moves", "seconds", "balances_match_honest_replay")
        return {k: getattr(self, k) for k in keys}

    def full(self) -> dict[str, Any]:
        return asdict(self)


class Background:
    """Two traders crossing a few lots at a time in both markets, a little above the oracle (so the
    funding rate is not zero), until paused or stopped."""

    def __init__(self, net: Network, rate: float = 6.0, seed: int = 7) -> None:
        self.net, self.rate = net, rate
        self.rng = random.Random(seed)
        self.maker, self.taker = net.trader("bg-maker"), net.trader("bg-taker")
        self.stopped, self.paused = threading.Event(), threading.Event()
        self.busy = threading.Lock()
        self.thread = threading.Thread(target=self._run, name="background", daemon=True)
        self.fills = 0
        self.acked: list[str] = []  # order ids the sequencer acknowledged
        self.errors = 0
        self.side = False

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self.stopped.set()
        self.thread.join(30)

    def pause(self) -> None:
        self.paused.set()
        with self.busy:
            pass  # the round in progress is over

    def resume(self) -> None:
        self.paused.clear()

    def round(self) -> None:
        assert self.net.oracle is not None
        market = self.rng.choice((BTC, ETH))
        price = self.net.oracle.price(market) + 5
        lots = self.rng.randint(1, 20)
        self.side = not self.side
        try:
            made = self.maker.place(market, not self.side, price, lots)
            self.acked.append(made.order_id)
            took = self.taker.place(market, self.side, price, lots, tif="IOC")
            self.acked.append(took.order_id)
            self.fills += len(took.result.get("fills", []))
            if took.result.get("filled", 0) < lots:
                self.maker.cancel(made.order_id)
        except TraderError:
            self.errors += 1  # a stale oracle after a time jump, a restart: the next round

    def _run(self) -> None:
        while not self.stopped.is_set():
            if not self.paused.is_set():
                with self.busy:
                    if not self.paused.is_set():
                        self.round()
            self.stopped.wait(1 / self.rate)


class Lab:
    def __init__(self, net: Network, background: bool = True, liar: bool = False) -> None:
        self.net = net
        assert net.genesis is not None
        self.preset = net.genesis.preset
        self.obs = Observer(net.l1_url).start()
        self.l1 = L1Client(net.l1_url, timeout=30)
        self.replay = Replay(self.l1)
        self.accounts: set[str] = set()
        self.names: dict[str, str] = {"0x" + net.keys.addr(v).hex(): v for v in net.verifier_names()}
        self.names["0x" + net.keys.addr("liar").hex()] = "liar"
        self.fault_seq = 0
        self.nonce = time.time_ns() // 1000
        self.bg = Background(net) if background else None
        self.quiet: list[Any] = [self.bg] if self.bg is not None else []  # traders paused for setups and checks
        if liar:
            from harness.scenarios import start_liar

            start_liar(self)  # it follows the chain from now on, to challenge at once when told
        if self.bg is not None:
            net.fund(["bg-maker", "bg-taker"], 2_000_000 * 10**6)
            self.accounts |= {"bg-maker", "bg-taker"}
            self.bg.start()

    def close(self) -> None:
        if self.bg is not None:
            self.bg.stop()
        self.obs.stop()
        self.l1.close()

    # --- traders -----------------------------------------------------------------------------------

    def fund(self, names: list[str], usdc: int) -> None:
        self.net.fund(names, usdc * 10**6)
        self.accounts |= set(names)

    def ensure_funded(self, name: str, usdc: int) -> None:
        if name not in self.accounts:
            self.fund([name], usdc)

    def sign(self, name: str, market: int, is_buy: bool, price: int, lots: int,
             tif: TimeInForce = TimeInForce.GTC) -> SignedOrder:
        self.nonce += 1
        order = Order(self.net.address(name), market, is_buy, price, lots, tif, False, 0, self.nonce, 0)  # type: ignore[arg-type]
        return eip712.sign_order(self.preset, order, self.net.trader_keys[name])

    def price(self, market: int) -> int:
        assert self.net.oracle is not None
        return self.net.oracle.price(market)

    def open_position(self, name: str, counterparty: str, market: int, is_buy: bool, lots: int) -> None:
        """`name` takes `lots` from a resting order of `counterparty` at the oracle price."""
        for q in self.quiet:
            q.pause()  # nobody else may take the resting order first
        try:
            price = self.price(market)
            maker = self.net.trader(counterparty).place(market, not is_buy, price, lots)
            took = self.net.trader(name).place(market, is_buy, price, lots, tif="IOC")
            filled = int(took.result.get("filled", 0))
            if filled < lots:
                try:
                    self.net.trader(counterparty).cancel(maker.order_id)
                except TraderError:
                    pass  # filled by others' orders at the same price: only the rest was left
            if filled * 10 < lots * 9:
                raise RuntimeError(f"{name} could not open {lots} lots: {took.result}")
        finally:
            for q in self.quiet:
                q.resume()

    def max_lots(self, collateral_usdc: int, market: int, share: float = 0.9) -> int:
        """The lots whose initial margin takes `share` of the collateral, at the oracle price."""
        params = self.net.genesis.markets[market]  # type: ignore[union-attr]
        per_lot = self.price(market) * params.atoms_per_lot_tick * params.initial_margin_ppm // 1_000_000
        return int(collateral_usdc * 10**6 * share) // per_lot

    def move(self, market: int, ppm: int) -> int:
        """Move an oracle price by `ppm` (signed) and wait until the sequencer has it."""
        new = self.price(market) * (1_000_000 + ppm) // 1_000_000
        self.net.set_price(market, new)
        return new

    # --- faults --------------------------------------------------------------------------------------

    def tell(self, kind: str, params: dict[str, Any] | None = None, defend: dict[str, Any] | None = None) -> str:
        """Ask the sequencer to tell one lie (in the next batch that allows it); returns its id."""
        self.fault_seq += 1
        fid = f"f{self.fault_seq:03d}-{kind}"
        doc = {"faults": [{"id": fid, "kind": kind, "params": params or {}, "defend": defend or {}}]}
        tmp = self.net.fault_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(doc))
        tmp.replace(self.net.fault_file)
        return fid

    def fault_log(self, fid: str) -> dict[str, dict[str, Any]]:
        """The newest record of each event of one fault."""
        out: dict[str, dict[str, Any]] = {}
        for r in read_log(self.net.fault_file.with_name(self.net.fault_file.name + ".log")):
            if r["id"] == fid:
                out[r["event"]] = r
        return out

    def await_fault(self, fid: str, events: tuple[str, ...], bound: float = 90.0) -> dict[str, Any]:
        def seen() -> dict[str, Any] | None:
            log = self.fault_log(fid)
            if "error" in log:
                raise RuntimeError(f"fault {fid} failed in the sequencer: {log['error'].get('error')}")
            for e in events:
                if e in log:
                    return log[e]
            return None

        found: dict[str, Any] = wait_for(seen, f"fault {fid}: {'/'.join(events)}", bound, poll=0.1)
        return found

    def await_games_over(self, batch_id: int, bound: float = 120.0, at_least: int = 1) -> list[GameLog]:
        def over() -> list[GameLog] | None:
            self.obs.sync()
            games = self.obs.games_on(batch_id)
            if len(games) >= at_least and all(g.status != "open" for g in games):
                return games
            return None

        games: list[GameLog] = wait_for(over, f"the games on batch {batch_id} to end", bound, poll=0.1)
        return games

    def await_lie_settled(self, fid: str, bound: float = 180.0) -> dict[str, Any]:
        """The lie is decided, every game on it closed, and the honest batch posted in its place."""
        verdict = self.await_fault(fid, ("lost", "final", "timeout"), bound)
        posted = self.fault_log(fid)["posted"]
        self.await_games_over(posted["batch_id"], bound)
        if verdict["event"] == "lost":
            self.await_fault(fid, ("reposted",), 60)
        return verdict

    # --- reading an outcome back from the chain -------------------------------------------------------

    def name_of(self, address: str | None) -> str | None:
        if address is None:
            return None
        return self.names.get(address.lower(), address)

    def tx_at(self, batch_id: int, index: int) -> str:
        b = self.obs.batch(batch_id)
        if b is None:
            return f"transaction {index}"
        body = codec.decode_batch_data(self.l1.batch_data(b.data_hash), max_txs=self.preset.max_batch_txs)
        if index >= len(body.txs):
            return f"padding step at {index} (the identity)"
        return f"{index}: {tx_summary(body.txs[index])}"

    def describe_games(self, games: list[GameLog]) -> list[dict[str, Any]]:
        out = []
        for g in games:
            moves = [m for m in g.moves if m["kind"] in ("reveal", "answer", "step")]
            out.append({"game_id": g.game_id, "challenger": self.name_of(g.challenger), "status": g.status,
                        "moves": len(moves), "step": g.step, "payout": g.payout,
                        "opened_block": g.opened_block})
        return out

    def bonds(self, games: list[GameLog]) -> dict[str, int]:
        """Net native coin each player gained (+) or lost (-) through these games, burns apart."""
        moved: dict[str, int] = {}
        for g in games:
            if g.payout is None:
                continue
            game = g.moves[0]["game"]
            bond, escrow = int(game["challenger_bond"]), int(game["sequencer_bond"])
            who = self.name_of(g.challenger) or g.challenger
            moved[who] = moved.get(who, 0) + int(g.payout["challenger"]) - bond
            seq = int(g.payout["sequencer_credit"]) + int(g.payout["sequencer_stake"]) - escrow
            moved["sequencer"] = moved.get("sequencer", 0) + seq
            moved["burnt"] = moved.get("burnt", 0) + int(g.payout["burnt"])
        return moved

    def fill_from_lie(self, result: Result, fid: str, started: float) -> None:
        """Fill a result from the fault's log and the chain's events."""
        log = self.fault_log(fid)
        injected, posted = log.get("injected", {}), log.get("posted")
        result.fault, result.what, result.index = fid, injected.get("what"), injected.get("index")
        result.tx_count = injected.get("tx_count")
        if "refused" in log:
            result.refused = log["refused"].get("code")
            result.winner = "challenger" if result.refused == "forced_inclusion_missed" else None
            result.detected_by = "base_layer"
            result.seconds = round(log["refused"]["wall"] - injected["wall"], 2)
            return
        if posted is None:
            return
        result.batch_id = bid = posted["batch_id"]
        self.obs.sync()
        b = self.obs.batch(bid)
        games = self.obs.games_on(bid)
        result.games = self.describe_games(games)
        result.bonds = self.bonds(games)
        result.invalidated = self.obs.invalidated_since(started)
        if games:
            honest = [g for g in games if self.name_of(g.challenger) != "liar"]
            first = (honest or games)[0]
            result.detected_by = self.name_of(first.challenger)
            result.detection_seconds = round(first.opened_wall - b.posted_wall, 2) if b else None
        decisive = next((g for g in games if g.status == "challenger_won" and g.step is not None), None) \
            or next((g for g in games if g.status == "challenger_won"), None) or (games[0] if games else None)
        if decisive is not None:
            result.moves = sum(1 for m in decisive.moves if m["kind"] in ("reveal", "answer", "step"))
            if decisive.step is not None:
                result.step = {**decisive.step, "tx": self.tx_at(bid, int(decisive.step["index"]))}
        if "lost" in log:
            result.winner = "challenger"
            lost = b.lost_wall if b and b.lost_wall else log["lost"]["wall"]
            result.seconds = result.resolution_seconds = round(lost - (b.posted_wall if b else posted["wall"]), 2)
        elif "final" in log:
            result.winner = "sequencer"
            result.notes.append("the lie became final: nobody caught it")

    # --- balances ------------------------------------------------------------------------------------

    def quiesce(self, bound: float = 60.0) -> None:
        """Everything the sequencer acknowledged is in a posted batch, its newest the chain's head."""

        def quiet() -> bool:
            h = self.net.health()
            if h["outputs"] != h["batched"] or h["pendingPost"] or h["batches"] == 0:
                return False
            last = self.net.seq_batches(after=h["batches"] - 1)[-1]
            head = self.l1.rollup()
            return bool(last["l1BatchId"] == head["head_batch_id"])

        wait_for(quiet, "the sequencer to post everything it acknowledged", bound, poll=0.1)

    def check_balances(self) -> tuple[bool, str]:
        """Every account the lab used: the sequencer's books equal the honest replay of the valid
        chain (collateral, withdrawal nonce, each position with its indices), every valid batch's
        root is the spec's, and money is conserved."""
        for q in self.quiet:
            q.pause()
        assert self.net.oracle is not None
        self.net.oracle.pause()
        try:
            self.quiesce()
            self.replay.sync()
            if self.replay.mismatch:
                return False, self.replay.mismatch
            wrong = []
            for name in sorted(self.accounts):
                t = self.net.trader(name)
                margin, positions = t.margin(), t.positions()
                served = {"collateral": int(margin["collateral"]), "withdrawNonce": int(margin["withdrawNonce"]),
                          "positions": {int(p["market"]): (int(p["lots"]), int(p["fundingIndex"]), int(p["lossIndex"]))
                                        for p in positions}}
                honest = self.replay.account(self.net.address(name))
                if served != honest:
                    wrong.append(f"{name}: served {served}, honest replay {honest}")
            money = self.replay.money()
            if money["collateral"] != money["deposited"] - money["withdrawn"]:
                wrong.append(f"money not conserved: {money}")
            return not wrong, "; ".join(wrong) or f"{len(self.accounts)} accounts match; {money}"
        finally:
            self.net.oracle.resume()
            for q in self.quiet:
                q.resume()
