"""The local network behind ./start: the base layer, the oracle feeder, the sequencer and two
verifiers as real processes on 127.0.0.1, then a demo of traders: signed orders from several
accounts, an oracle move that liquidates one of them, and a withdrawal that becomes final (the
dev preset's time advance stands in for the challenge window) and is claimed on the base layer.
Ctrl-C (or the end of the demo with --exit-after-demo) stops every process it started.
"""

from __future__ import annotations

import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from rich.console import Console
from sqlalchemy import func, select

from harness.network import BTC, ETH, USDC, Network, Options
from harness.procs import wait_for
from sequencer.trader_client import format_usdc

console = Console(stderr=True, highlight=False, soft_wrap=True)

TRADERS = {"alice": 100_000, "bob": 100_000, "carol": 50_000, "dave": 2_000, "erin": 10_000}


def say(text: str) -> None:
    console.print(f"[dim]{datetime.now():%H:%M:%S}[/] {text}")


def verifier_view(net: Network, name: str) -> dict[str, Any]:
    """A verifier's verified head and verdicts, from its own database (what `status` shows)."""
    from verifier.db import BatchRow, NodeRow, make_engine, make_sessions

    url, schema = net.db_url(name)
    engine = make_engine(url, schema)
    try:
        with make_sessions(engine)() as s:
            node = s.get(NodeRow, 1)
            verdicts = dict(s.execute(select(BatchRow.verdict, func.count()).group_by(BatchRow.verdict)).all())
        return {"head": node.head_index if node else -1, "verdicts": {str(k): v for k, v in verdicts.items()}}
    except Exception:  # not created yet
        return {"head": -1, "verdicts": {}}
    finally:
        engine.dispose()


def summary(net: Network, started: float) -> str:
    assert net.l1 is not None
    rollup, h = net.l1.rollup(), net.health()
    final = _final_index(net, int(rollup["head_index"]))
    btc, eth = net.market(BTC), net.market(ETH)
    views = {v: verifier_view(net, v) for v in net.verifier_names()}
    verified = ", ".join(f"{v} head {views[v]['head']} ({views[v]['verdicts'].get('valid', 0)} valid, "
                         f"{views[v]['verdicts'].get('invalid', 0)} invalid)" for v in views)
    return (f"[{time.monotonic() - started:5.0f}s] batches posted {rollup['head_index'] + 1}, final up to {final}; "
            f"orders {h['seq']} inputs, {h['outputs']} outputs; BTC {btc['oraclePrice'] / 10:,.1f} "
            f"ETH {eth['oraclePrice'] / 100:,.2f} OI {btc['openInterest']}/{eth['openInterest']}; {verified}")


def _final_index(net: Network, head: int) -> int:
    assert net.l1 is not None
    lo, hi = -1, head  # finality goes in index order: binary search the last final index
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if net.l1.canonical(mid)["status"] == "final":
            lo = mid
        else:
            hi = mid - 1
    return lo


def demo(net: Network) -> dict[str, Any]:
    """The traders' story; returns what happened (and raises if a step does not happen)."""
    assert net.genesis is not None and net.l1 is not None
    preset = net.genesis.preset
    say(f"funding {', '.join(TRADERS)} from the base layer's faucet and depositing into the rollup")
    for name, usdc in TRADERS.items():
        net.fund([name], usdc * USDC)
    alice, bob, carol, dave, erin = (net.trader(n) for n in TRADERS)
    btc = net.market(BTC)["oraclePrice"]
    eth = net.market(ETH)["oraclePrice"]
    say(f"alice quotes both markets around the oracle (BTC {btc / 10:,.1f}, ETH {eth / 100:,.2f})")
    placed = 0
    for market, p in ((BTC, btc), (ETH, eth)):
        for k in range(1, 4):
            alice.place(market, True, p - 20 * k, 200 * k)
            alice.place(market, False, p + 20 * k, 200 * k)
            placed += 2
    fills = 0
    for who, market, is_buy, p, lots in ((bob, BTC, True, btc + 100, 300), (carol, BTC, False, btc - 100, 250),
                                         (bob, ETH, False, eth - 100, 150), (carol, ETH, True, eth + 100, 400),
                                         (erin, BTC, True, btc + 40, 50)):
        res = who.place(market, is_buy, p, lots, tif="IOC")
        placed += 1
        fills += len(res.result["fills"])
    say(f"bob, carol and erin take liquidity: {fills} fills from {placed} signed orders")
    # dave: long BTC at about 18x, against a resting order of alice's
    price = net.market(BTC)["oraclePrice"]
    params = net.genesis.markets[BTC]
    lots = int(TRADERS["dave"] * USDC * 0.9) // (price * params.atoms_per_lot_tick * params.initial_margin_ppm // 1_000_000)
    alice.place(BTC, False, price, lots)
    dave.place(BTC, True, price, lots, tif="IOC")
    m = dave.margin()
    say(f"dave goes long {lots} lots of BTC (about 18x on his {TRADERS['dave']:,} USDC): account value "
        f"{format_usdc(m['value'])}, maintenance margin {format_usdc(m['maintenanceRequirement'])}")
    drop = price * 96 // 100
    say(f"the oracle feeder moves BTC down 4% to {drop / 10:,.1f}")
    net.start_feeder({BTC: drop, ETH: net.market(ETH)["oraclePrice"]}, seed=2)
    wait_for(lambda: not dave.positions(), "dave's liquidation", 60, poll=0.2)
    m = dave.margin()
    say(f"dave is liquidated: the insurance fund took his position; he keeps {format_usdc(m['collateral'])} USDC")
    # erin withdraws: signed on the rollup, final after the challenge window, claimed on the base layer
    amount = 1_000 * USDC
    before = int(erin.balances()["usdc"])
    erin.withdraw(amount)
    say(f"erin withdraws {format_usdc(amount)} USDC through the sequencer")
    wait_for(lambda: erin.withdrawals()[-1]["life"] in ("posted", "final"), "erin's withdrawal to be posted", 60, 0.2)
    say(f"its batch is posted; the dev preset advances the base layer's time past the {preset.challenge_window} s "
        "challenge window")
    net.advance(preset.challenge_window + 1)
    wait_for(lambda: erin.withdrawals()[-1]["claim"] is not None, "erin's withdrawal to be final", 60, 0.2)
    paid = erin.claim()
    after = int(erin.balances()["usdc"])
    say(f"final: erin claims it on the base layer with its Merkle proof (leaf {paid[0]['leafIndex']}); her base-layer "
        f"USDC {format_usdc(before)} -> {format_usdc(after)}")
    if after - before != amount:
        raise RuntimeError(f"erin was paid {after - before}, not {amount}")
    head = int(net.l1.rollup()["head_index"])
    for v in net.verifier_names():
        def caught_up(v: str = v) -> bool:
            return bool(verifier_view(net, v)["head"] >= head)

        wait_for(caught_up, f"{v} to verify up to index {head}", 60, 0.2)
    views = {v: verifier_view(net, v) for v in net.verifier_names()}
    if any(view["verdicts"].get("invalid") for view in views.values()):
        raise RuntimeError(f"a verifier found an invalid batch: {views}")
    say(f"both verifiers re-executed every batch up to index {head} from the base layer's data: all valid")
    return {"orders": placed + 2, "fills": fills, "liquidated": "dave", "withdrawn": amount, "verified_head": head}


def banner(net: Network) -> None:
    console.print()
    console.rule("[bold]Rampart local network[/]")
    console.print(f"trading API      {net.seq_url}/docs   (REST, WebSocket at {net.seq_url.replace('http', 'ws')}/ws)")
    console.print(f"base layer       {net.l1_url}/docs   (rollup: {net.l1_url}/rollup)")
    for v in net.verifier_names():
        console.print(f"{v:<16} {net.status_command(v)}")
        console.print(f"{'':<16} metrics http://127.0.0.1:{net.metrics_ports[v]}/metrics")
    console.print(f"processes        base layer, oracle feeder, sequencer, {len(net.verifier_names())} verifiers: "
                  + ", ".join(f"{p.name} (pid {p.pid})" for p in net.procs.values()))
    console.print(f"logs, databases  {net.work}" + (f" (PostgreSQL schemas rampart_{net.run_id}_*)" if net.opts.postgres else ""))
    console.rule()


def run(postgres: str | None, exit_after_demo: bool, workdir: Path | None) -> int:
    work = workdir or Path(tempfile.mkdtemp(prefix="rampart-local-"))
    net = Network(Options(work.resolve(), postgres=postgres, oracle="feeder", feeder_step_ppm=300,
                          batch_interval=1.0, follow_interval=0.25, verifier_poll=0.5))
    started = time.monotonic()
    from harness.cli import _stop_on_signals

    _stop_on_signals()
    code = 0
    try:
        say("starting the base layer, the sequencer, two verifiers and the oracle feeder"
            + (" on PostgreSQL" if postgres else " on SQLite"))
        net.start()
        banner(net)
        try:
            done = demo(net)
            say(f"demo done: {done}")
        except Exception as exc:
            say(f"[red]demo failed:[/] {type(exc).__name__}: {exc}")
            code = 1
        console.print(summary(net, started))
        if not exit_after_demo:
            say("the network keeps running; Ctrl-C stops every process")
            while True:
                time.sleep(10)
                console.print(summary(net, started))
    except KeyboardInterrupt:
        say("stopping")
    finally:
        net.stop()
        alive = [p.name for p in net.procs.values() if p.alive()]
        say("every process stopped" if not alive else f"[red]still running:[/] {alive}")
    return code
