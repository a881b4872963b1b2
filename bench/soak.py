"""A bounded soak of a whole local network on loopback (it stops by itself): traders at a steady
rate, random oracle moves with liquidations, a verifier and the sequencer killed (-9) and
restarted, and one injected fault every N batches. Afterwards it checks that no acknowledged
order was lost, every fault was caught, no honest batch was invalidated and money is conserved,
and prints the figures.

    PYTHONPATH=. .venv/bin/python bench/soak.py --minutes 3
    PYTHONPATH=. .venv/bin/python bench/soak.py --minutes 2 --postgres postgresql+psycopg://postgres@127.0.0.1:5432/test
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

# bench/verifier.py would shadow the verifier package: the repository root goes first
_ROOT = str(Path(__file__).resolve().parents[1])
sys.path[:] = [_ROOT] + [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

from harness.lab import Lab  # noqa: E402
from harness.network import BTC, ETH, Network, Options  # noqa: E402
from harness.procs import wait_for  # noqa: E402
from sequencer.faults import read_log  # noqa: E402
from sequencer.trader_client import TraderError  # noqa: E402

# Faults that need nothing but ordinary traffic (the matrix covers the rest, with their setups)
FAULTS = ["inflated_balance", "wrong_fee", "oracle_not_median", "oracle_below_quorum", "oracle_stale", "overfill",
          "forged_signature"]
TRADERS = [f"soak-{i}" for i in range(6)]


class Traders:
    """Accounts placing limit orders around the oracle (resting and crossing), and cancelling some,
    at a steady rate; every acknowledged order id is kept."""

    def __init__(self, lab: Lab, rate: float, seed: int) -> None:
        self.lab, self.rate, self.rng = lab, rate, random.Random(seed)
        self.acked: dict[str, list[str]] = {n: [] for n in TRADERS}
        self.resting: dict[str, list[str]] = {n: [] for n in TRADERS}
        self.placed = self.rejected = self.unreachable = self.cancels = self.fills = 0
        self.withdrawn = self.withdrawals = 0
        self.stopped, self.paused, self.busy = threading.Event(), threading.Event(), threading.Lock()
        self.thread = threading.Thread(target=self.run, name="soak-traders", daemon=True)

    def pause(self) -> None:
        self.paused.set()
        with self.busy:
            pass

    def resume(self) -> None:
        self.paused.clear()

    def one(self) -> None:
        rng, lab = self.rng, self.lab
        name = rng.choice(TRADERS)
        t = lab.net.trader(name)
        if rng.random() < 0.02:
            try:
                t.withdraw(100 * 10**6)
                self.withdrawals += 1
                self.withdrawn += 100 * 10**6
            except TraderError:
                self.rejected += 1
            return
        if self.resting[name] and rng.random() < 0.25:
            oid = self.resting[name].pop(rng.randrange(len(self.resting[name])))
            try:
                t.cancel(oid)
                self.cancels += 1
            except TraderError:
                pass  # filled meanwhile
            return
        market = rng.choice((BTC, ETH))
        price = lab.price(market) + rng.randint(-40, 40)
        is_buy = rng.random() < 0.5
        tif = "IOC" if rng.random() < 0.4 else "GTC"
        try:
            placed = t.place(market, is_buy, price, rng.randint(1, 50), tif=tif)
        except TraderError as exc:
            if exc.code == "unreachable" or exc.status >= 500:
                self.unreachable += 1
            else:
                self.rejected += 1
            return
        self.placed += 1
        self.acked[name].append(placed.order_id)
        self.fills += len(placed.result.get("fills", []))
        if placed.result.get("state") == "open":
            self.resting[name].append(placed.order_id)

    def run(self) -> None:
        while not self.stopped.is_set():
            if not self.paused.is_set():
                with self.busy:
                    if not self.paused.is_set():
                        self.one()
            self.stopped.wait(1 / self.rate)


def settled(lab: Lab, fid: str) -> bool:
    return any(r["id"] == fid and r["event"] in ("reposted", "final", "timeout", "error", "refused")
               for r in read_log(lab.net.fault_file.with_name(lab.net.fault_file.name + ".log")))


def run(args: argparse.Namespace) -> dict[str, Any]:
    work = Path(args.workdir or tempfile.mkdtemp(prefix="rampart-soak-"))
    rng = random.Random(args.seed)
    net = Network(Options(work, postgres=args.postgres, faults=True, batch_interval=0.5))
    figures: dict[str, Any] = {"workdir": str(work)}
    try:
        net.start()
        lab = Lab(net)
        try:
            lab.fund(TRADERS, 1_000_000)
            lab.ensure_funded("cp", 5_000_000)
            traders = Traders(lab, args.rate, args.seed)
            lab.quiet.append(traders)
            traders.thread.start()
            started = time.monotonic()
            end = started + args.minutes * 60
            told: list[str] = []
            in_flight: str | None = None
            last_fault_batch = 0
            moves = liquidation_setups = 0
            next_move = started + 5
            restarts: list[str] = []
            killed_verifier = killed_sequencer = False
            while time.monotonic() < end:
                now = time.monotonic()
                lab.obs.sync()
                posted = len(lab.obs.batches)
                if in_flight is not None and settled(lab, in_flight):
                    in_flight = None
                    last_fault_batch = len(lab.obs.batches)
                if in_flight is None and posted - last_fault_batch >= args.fault_every:
                    kind = rng.choice(FAULTS)
                    params = {"account": "0x" + net.address(rng.choice(TRADERS)).hex(),
                              "buyer": "0x" + net.address(TRADERS[0]).hex(), "seller": "0x" + net.address(TRADERS[1]).hex(),
                              "market": BTC, "lots": 5}
                    in_flight = lab.tell(kind, params)
                    told.append(in_flight)
                if now >= next_move and in_flight is None:
                    market = rng.choice((BTC, ETH))
                    if rng.random() < 0.5:
                        # a leveraged account the next move liquidates
                        name = f"soak-victim-{liquidation_setups}"
                        lab.fund([name], 1_000)
                        long = rng.random() < 0.5
                        try:
                            lab.open_position(name, "cp", market, long, lab.max_lots(1_000, market))
                            lab.move(market, -30_000 if long else 30_000)
                            liquidation_setups += 1
                        except (RuntimeError, TraderError, TimeoutError) as exc:
                            figures.setdefault("setup_errors", []).append(repr(exc))
                    else:
                        lab.move(market, rng.randint(-15_000, 15_000))
                    moves += 1
                    next_move = now + rng.uniform(4, 10)
                if not killed_verifier and now > started + (end - started) / 3 and in_flight is None:
                    net.restart("verifier-2", kill9=True)
                    restarts.append("verifier-2 (kill -9)")
                    killed_verifier = True
                if not killed_sequencer and now > started + 2 * (end - started) / 3 and in_flight is None:
                    net.restart("sequencer", kill9=True)
                    restarts.append("sequencer (kill -9)")
                    killed_sequencer = True
                time.sleep(0.2)
            traders.stopped.set()
            traders.thread.join(30)
            if in_flight is not None:
                wait_for(lambda: settled(lab, in_flight), f"fault {in_flight} to settle", 240, poll=0.2)
            figures.update(check(lab, traders, told, started))
            figures["bridge"] = claim_all(lab)
            figures["checks"]["bridge_conserved"] = figures["bridge"]["conserved"]
            figures["ok"] = figures["ok"] and figures["bridge"]["conserved"]
            figures.update({"minutes": args.minutes, "oracle_moves": moves, "liquidation_setups": liquidation_setups,
                            "restarts": restarts, "traders": {"placed": traders.placed, "rejected": traders.rejected,
                                                              "unreachable": traders.unreachable,
                                                              "cancels": traders.cancels, "fills_at_placement": traders.fills,
                                                              "withdrawals": traders.withdrawals},
                            "background": {"fills": lab.bg.fills if lab.bg else 0}})
        finally:
            lab.close()
    finally:
        net.stop()
    return figures


def check(lab: Lab, traders: Traders, told: list[str], started: float) -> dict[str, Any]:
    ok_balances, detail = lab.check_balances()
    log = read_log(lab.net.fault_file.with_name(lab.net.fault_file.name + ".log"))
    events = {(r["id"], r["event"]): r for r in log}
    lie_headers = {r["header_hash"] for r in log if r["event"] == "injected"}
    caught = [f for f in told if (f, "lost") in events or (f, "refused") in events]
    final_lies = [f for f in told if (f, "final") in events]
    never = [f for f in told if (f, "injected") not in events]
    invalidated = lab.obs.invalidated_since(0)
    honest_invalidated = [b for b in invalidated if lab.obs.batch(b) and lab.obs.batch(b).header_hash not in lie_headers]  # type: ignore[union-attr]
    # every acknowledged order is still known to the sequencer, and no fill of it was busted
    acked = dict(traders.acked)
    if lab.bg is not None:
        acked["bg-maker"], acked["bg-taker"] = lab.bg.acked[0::2], lab.bg.acked[1::2]
    lost_orders, busted = [], 0
    for name, ids in acked.items():
        t = lab.net.trader(name)
        known = {o["orderId"] for o in t.orders(limit=1000)}
        for oid in ids:
            if oid in known:
                continue
            try:
                t.order(oid)
            except TraderError:
                lost_orders.append(oid)
        busted += sum(1 for f in t.fills(limit=1000) if f["life"] == "busted")
    games = [g for g in lab.obs.games.values()]
    detection = [g.opened_wall - lab.obs.batch(g.batch_id).posted_wall for g in games  # type: ignore[union-attr]
                 if lab.obs.batch(g.batch_id) and min(x.game_id for x in lab.obs.games_on(g.batch_id)) == g.game_id]
    resolution = [b.lost_wall - b.posted_wall for b in lab.obs.batches.values() if b.lost_wall]
    money = lab.replay.money()
    counts = lab.replay.tx_counts()
    seconds = time.monotonic() - started
    checks = {
        "no_acknowledged_order_lost": not lost_orders and busted == 0,
        "every_fault_caught": len(caught) == len([f for f in told if f not in never]) and not final_lies,
        "no_honest_batch_invalidated": not honest_invalidated,
        "money_conserved": money["collateral"] == money["deposited"] - money["withdrawn"],
        "balances_match_honest_replay": ok_balances,
    }
    return {
        "ok": all(checks.values()), "checks": checks, "balance_detail": detail if not ok_balances else "",
        "orders_acknowledged": sum(len(v) for v in acked.values()),
        "orders_lost": lost_orders[:10], "fills_busted": busted,
        "faults": {"told": len(told), "injected": len(told) - len(never), "caught": len(caught),
                   "became_final": final_lies, "never_applicable": never,
                   "kinds": sorted({f.split("-", 1)[1] for f in told})},
        "batches": {"posted": len(lab.obs.batches), "valid_chain": int(lab.l1.rollup()["head_index"]) + 1,
                    "invalidated": len(invalidated),
                    "honest_invalidated": honest_invalidated},
        "games": {"played": len(games), "challenger_won": sum(g.status == "challenger_won" for g in games),
                  "sequencer_won": sum(g.status == "sequencer_won" for g in games)},
        "detection_seconds": _stats(detection), "resolution_seconds": _stats(resolution),
        "transactions": counts, "liquidations": counts.get("Liquidate", 0), "trades": counts.get("Trade", 0),
        "trades_per_second": round(counts.get("Trade", 0) / seconds, 1), "money": money, "seconds": round(seconds, 1),
    }


def claim_all(lab: Lab) -> dict[str, Any]:
    """Finality by the dev time advance, every withdrawal claimed on the base layer; the bridge then
    holds exactly what was deposited and not paid out."""
    lab.quiesce()
    lab.net.advance(lab.preset.challenge_window + 1)
    claimed = 0
    for name in TRADERS:
        t = lab.net.trader(name)
        wait_for(lambda t=t: all(w["claim"] for w in t.withdrawals()),  # type: ignore[misc]
                 f"{name}'s withdrawals to be final", 60, 0.2)
        claimed += sum(int(c["amount"]) for c in t.claim())
    deposited, index = 0, 0
    while (entry := lab.l1.deposit_entry(index)) is not None:
        deposited += entry.amount
        index += 1
    bridge = int(lab.l1.rollup()["bridge_usdc"])
    return {"deposited": deposited, "claimed": claimed, "bridge_usdc": bridge, "conserved": bridge == deposited - claimed}


def _stats(xs: list[float]) -> dict[str, float] | None:
    if not xs:
        return None
    return {"n": len(xs), "mean": round(statistics.mean(xs), 2), "max": round(max(xs), 2)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--minutes", type=float, default=3.0)
    p.add_argument("--rate", type=float, default=8.0, help="soak traders' orders per second (besides the background)")
    p.add_argument("--fault-every", type=int, default=12, help="batches between injected faults")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--postgres", help="PostgreSQL URL (default SQLite files)")
    p.add_argument("--workdir")
    p.add_argument("--json", action="store_true", help="print only the JSON figures")
    args = p.parse_args()
    figures = run(args)
    if args.json:
        print(json.dumps(figures, default=str))
    else:
        print(json.dumps(figures, indent=2, default=str))
        print("soak " + ("PASSED" if figures.get("ok") else "FAILED"))
    sys.exit(0 if figures.get("ok") else 1)


if __name__ == "__main__":
    main()
