"""The fault matrix: every way the sequencer may cheat (each one told once, by sequencer/faults.py,
on a live network) and the other side (a lying challenger, a silent sequencer, a verifier killed
mid-game). Each scenario sets up what its lie needs with real traders and oracle moves, tells
the lie, waits for the verdict and reads the outcome back from the base layer.

Order matters where the insurance fund's balance does: the first deficit (a long's) finds the
fund empty, so it is socialised; a short's liquidation later fills the fund, so it can pay.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from contracts_spec import codec, eip712
from harness.lab import Lab, Result
from harness.network import BTC, ETH
from harness.procs import Proc, console, wait_for
from sequencer.trader_client import TraderError

CHALLENGER, SEQUENCER = "challenger", "sequencer"


@dataclass(frozen=True)
class Scenario:
    name: str
    expected: str
    run: Callable[[Lab, Result], None]


def lie(lab: Lab, r: Result, kind: str, params: dict | None = None, defend: dict | None = None,
        trigger: Callable[[], object] | None = None, during: Callable[[dict], None] | None = None) -> None:
    """Tell one lie, make the traffic it needs, wait for the verdict and read it back."""
    started = time.time()
    fid = lab.tell(kind, params, defend)
    if trigger is not None:
        trigger()
    rec = lab.await_fault(fid, ("posted", "refused"), 120)
    if rec["event"] == "posted":
        if during is not None:
            during(rec)
        lab.await_lie_settled(fid)
    else:
        lab.await_fault(fid, ("reposted",), 60)
    lab.fill_from_lie(r, fid, started)


def refused_at_intake(lab: Lab, r: Result, call: Callable[[], object], what: str) -> None:
    """The honest path first: the sequencer's intake refuses what the lie will include anyway."""
    try:
        call()
    except TraderError as exc:
        r.notes.append(f"{what}: refused at intake ({exc.code})")
        return
    r.notes.append(f"{what}: accepted at intake (the lie then adds it again)")


# --- invalid transactions ----------------------------------------------------------------------------


def s_margin(lab: Lab, r: Result) -> None:
    lab.fund(["margin-maker"], 1_000_000)
    lab.fund(["margin-taker"], 2_000)
    price, lots = lab.price(BTC), 30_000  # 180,000 USDC of BTC on 2,000 USDC: 90x
    refused_at_intake(lab, r, lambda: lab.net.trader("margin-taker").place(BTC, True, price, lots, tif="IOC"),
                      "margin-taker's 90x order")
    maker, taker = lab.sign("margin-maker", BTC, False, price, lots), lab.sign("margin-taker", BTC, True, price, lots)
    lie(lab, r, "margin", {"maker": codec.encode_signed_order(maker).hex(),
                           "taker": codec.encode_signed_order(taker).hex(), "lots": lots})


def s_healthy_liquidation(lab: Lab, r: Result) -> None:
    lab.fund(["healthy"], 10_000)
    lab.ensure_funded("cp", 5_000_000)
    lab.open_position("healthy", "cp", BTC, True, 100)
    lie(lab, r, "healthy_liquidation", {"account": "0x" + lab.net.address("healthy").hex(), "market": BTC})


def victim(lab: Lab, name: str, market: int, long: bool, usdc: int) -> int:
    """An account at ~18x leverage; returns its lots."""
    lab.fund([name], usdc)
    lab.ensure_funded("cp", 5_000_000)
    lots = lab.max_lots(usdc, market)
    lab.open_position(name, "cp", market, long, lots)
    return lots


def s_socialised_wrong(lab: Lab, r: Result) -> None:
    lots = victim(lab, "victim-social", BTC, True, 1_000)
    r.notes.append(f"victim long {lots} lots BTC; oracle -10%: a deficit the empty fund cannot pay")
    lie(lab, r, "socialised_wrong", trigger=lambda: lab.move(BTC, -100_000))


def s_deficit_booked_wrong(lab: Lab, r: Result) -> None:
    lots = victim(lab, "victim-deficit", BTC, True, 1_000)
    r.notes.append(f"victim long {lots} lots BTC; oracle -10%: bankrupt")
    lie(lab, r, "deficit_booked_wrong", trigger=lambda: lab.move(BTC, -100_000))


def s_socialised_when_fund_could_pay(lab: Lab, r: Result) -> None:
    lots = victim(lab, "victim-short", ETH, False, 10_000)
    r.notes.append(f"victim short {lots} lots ETH; oracle +10%: bankrupt, the fund takes the short and can pay")
    lie(lab, r, "socialised_when_fund_could_pay", trigger=lambda: lab.move(ETH, 100_000))


def s_liquidation_outside_band(lab: Lab, r: Result) -> None:
    victim(lab, "victim-band", BTC, True, 1_000)
    lie(lab, r, "liquidation_outside_band", trigger=lambda: lab.move(BTC, -30_000))


def s_wrong_penalty(lab: Lab, r: Result) -> None:
    victim(lab, "victim-penalty", BTC, True, 1_000)
    lie(lab, r, "wrong_penalty", trigger=lambda: lab.move(BTC, -30_000))


def funding_due(lab: Lab) -> Callable[[], object]:
    """Time past the funding interval: the engine emits a FundingTick in each market."""
    interval = max(m.funding_interval for m in lab.net.genesis.markets)  # type: ignore[union-attr]
    return lambda: lab.net.advance(interval + 1)


def s_funding_not_zero_sum(lab: Lab, r: Result) -> None:
    lie(lab, r, "funding_not_zero_sum", trigger=funding_due(lab))


def s_funding_wrong_rate(lab: Lab, r: Result) -> None:
    lie(lab, r, "funding_wrong_rate", trigger=funding_due(lab))


def s_oracle_not_median(lab: Lab, r: Result) -> None:
    lie(lab, r, "oracle_not_median")


def s_oracle_below_quorum(lab: Lab, r: Result) -> None:
    lie(lab, r, "oracle_below_quorum")


def s_oracle_stale(lab: Lab, r: Result) -> None:
    lie(lab, r, "oracle_stale")


def s_forged_signature(lab: Lab, r: Result) -> None:
    lab.fund(["forge-a", "forge-b"], 10_000)
    lie(lab, r, "forged_signature", {"buyer": "0x" + lab.net.address("forge-a").hex(),
                                     "seller": "0x" + lab.net.address("forge-b").hex(), "market": BTC, "lots": 10})


def s_overfill(lab: Lab, r: Result) -> None:
    lie(lab, r, "overfill")


def s_fill_after_cancel(lab: Lab, r: Result) -> None:
    lab.fund(["cancel-maker", "cancel-taker"], 10_000)
    price = lab.price(ETH) + 500
    resting = lab.net.trader("cancel-maker").place(ETH, False, price, 5)
    taker = lab.sign("cancel-taker", ETH, True, price, 5)
    lie(lab, r, "fill_after_cancel", {"taker": codec.encode_signed_order(taker).hex()},
        trigger=lambda: lab.net.trader("cancel-maker").cancel(resting.order_id))


def s_withdraw_beyond_free(lab: Lab, r: Result) -> None:
    lab.fund(["overdraw"], 1_000)
    refused_at_intake(lab, r, lambda: lab.net.trader("overdraw").withdraw(5_000 * 10**6), "a 5,000 USDC withdrawal")
    tx = eip712.sign_withdraw(lab.preset, lab.net.trader_keys["overdraw"], 5_000 * 10**6, 0)
    lie(lab, r, "withdraw_beyond_free", {"withdraw": codec.encode_tx(tx).hex()})


def s_skip_deposit(lab: Lab, r: Result) -> None:
    late = lab.net.trader("late-depositor")
    lab.accounts.add("late-depositor")

    started = time.time()
    fid = lab.tell("skip_deposit")
    late.faucet(usdc=500 * 10**6)
    late.deposit(500 * 10**6)
    lab.await_fault(fid, ("holding",), 120)
    lab.net.advance(lab.preset.forced_inclusion_delay + 5)
    lab.await_fault(fid, ("refused", "posted"), 120)
    lab.await_fault(fid, ("reposted",), 60)
    lab.fill_from_lie(r, fid, started)
    r.notes.append("the sequencer held the deposit out past the forced-inclusion delay")


# --- lies in the root ---------------------------------------------------------------------------------


def s_inflated_balance(lab: Lab, r: Result) -> None:
    lab.fund(["inflated"], 100)
    lie(lab, r, "inflated_balance", {"account": "0x" + lab.net.address("inflated").hex()})


def s_wrong_fee(lab: Lab, r: Result) -> None:
    lie(lab, r, "wrong_fee")


# --- the other side -----------------------------------------------------------------------------------


def liar(lab: Lab, batch_id: int, lie_at: int) -> Proc:
    """Tell the dishonest challenger (one process, following the chain since the matrix began) to
    challenge `batch_id` with a view wrong after transaction `lie_at`."""
    net = lab.net
    proc = net.procs.get("liar")
    if proc is None or not proc.alive():
        proc = start_liar(lab)
    with (net.work / "liar-commands.jsonl").open("a") as f:
        f.write(json.dumps({"batch_id": batch_id, "lie_at": lie_at}) + "\n")
    return proc


def start_liar(lab: Lab) -> Proc:
    net = lab.net
    assert net.l1 is not None
    if int(lab.l1.account(net.keys.addr("liar"))["native"]) < 5 * lab.preset.challenger_bond:
        net.l1.faucet(native=20 * lab.preset.challenger_bond, to=net.keys.addr("liar"))
    proc = Proc("liar", [*console("rampart-harness"), "liar", "--l1", net.l1_url, *net.db("liar"),
                         "--key", net.keys["liar"].hex(), "--commands", str(net.work / "liar-commands.jsonl"),
                         "--workdir", str(net.work)], net.work / "liar.log")
    net.procs["liar"] = proc
    proc.start()
    wait_for(lambda: "liar ready" in proc.tail(10**9) or not proc.alive(), "the dishonest challenger to start")
    return proc


def liar_result(proc: Proc, batch_id: int, bound: float = 180.0) -> dict:
    def done() -> dict | None:
        for line in proc.tail(10**7).splitlines():
            if line.startswith('{"game_id"') and json.loads(line)["batch_id"] == batch_id:
                return dict(json.loads(line))
        proc.check_alive()  # a liar that exited is said at once, not after the bound
        return None

    found: dict = wait_for(done, "the dishonest challenger's game", bound, poll=0.2)
    return found


def s_dishonest_verifier(lab: Lab, r: Result) -> None:
    now = time.time()

    def honest_batch() -> int | None:
        lab.obs.sync()
        fresh = [b for b in lab.obs.batches.values() if b.posted_wall >= now and b.tx_count >= 4]
        return fresh[-1].batch_id if fresh else None

    bid: int = wait_for(honest_batch, "an honest batch to challenge", 60, poll=0.1)
    b = lab.obs.batch(bid)
    assert b is not None
    proc = liar(lab, bid, b.tx_count // 2)
    outcome = liar_result(proc, bid)
    games = lab.await_games_over(bid)
    r.batch_id, r.index, r.tx_count = bid, b.index, b.tx_count
    r.games, r.bonds = lab.describe_games(games), lab.bonds(games)
    g = games[0]
    r.winner = SEQUENCER if g.status == "sequencer_won" else CHALLENGER
    r.detected_by = None  # nothing was wrong
    r.moves = sum(1 for m in g.moves if m["kind"] in ("reveal", "answer", "step"))
    if g.step is not None:
        r.step = {**g.step, "tx": lab.tx_at(bid, int(g.step["index"]))}
    r.seconds = r.resolution_seconds = round((g.resolved_wall or time.time()) - g.opened_wall, 2)
    r.invalidated = lab.obs.invalidated_since(now)
    r.notes.append(f"the liar's view is wrong after transaction {b.tx_count // 2}; its game: {outcome.get('result')}")


def s_sequencer_silent(lab: Lab, r: Result) -> None:
    lab.fund(["inflated-2"], 100)

    def stall(rec: dict) -> None:
        bid = rec["batch_id"]

        def stalled() -> bool:
            games = lab.obs.games_on(bid)
            if not games:
                return False
            if any(g.status != "open" for g in games):
                return True
            return all(len([m for m in g.moves if m["kind"] in ("reveal", "answer")]) >= 2
                       and g.moves[-1]["game"]["turn"] == 0 and time.time() - g.moves[-1]["wall"] > 1.0
                       for g in games)

        wait_for(stalled, "the defender to fall silent", 60, poll=0.1)
        lab.net.advance(lab.preset.game_clock + lab.preset.clock_extension + 2)
        r.notes.append(f"the sequencer stopped answering after 2 moves; time advanced {lab.preset.game_clock + lab.preset.clock_extension + 2} s")

    lie(lab, r, "inflated_balance", {"account": "0x" + lab.net.address("inflated-2").hex()},
        defend={"silent_after": 2}, during=stall)
    over = [g for g in r.games if g["status"] == "challenger_won"]
    r.notes.append(f"{len(over)} game(s) won by the challenger on the clock" if over and not any(
        g["step"] for g in r.games) else "")


def s_honest_and_dishonest(lab: Lab, r: Result) -> None:
    lab.fund(["inflated-3"], 100)
    joined: dict[str, Any] = {}

    def join(rec: dict) -> None:
        joined["batch"] = rec["batch_id"]
        joined["proc"] = liar(lab, rec["batch_id"], 0)

    lie(lab, r, "inflated_balance", {"account": "0x" + lab.net.address("inflated-3").hex()},
        defend={"await_games": 3, "await_seconds": 45, "first": "0x" + lab.net.keys.addr("liar").hex()}, during=join)
    if "proc" in joined:
        outcome = liar_result(joined["proc"], joined["batch"])
        r.notes.append(f"the dishonest verifier (wrong after transaction 0) challenged the same batch: "
                       f"its game {outcome.get('game_id')} ended {outcome.get('result')}")


def s_verifier_restart(lab: Lab, r: Result) -> None:
    lab.fund(["inflated-4"], 100)
    lab.net.procs["verifier-2"].stop()

    def restart(rec: dict) -> None:
        bid = rec["batch_id"]

        # Killed on the slow defender's turn, which lasts a second (its delay): after verifier-1
        # has answered once where the batch has room for an answer (4 transactions or more: three
        # moves in was too late there, the challenger's last answer and its step following the
        # third at once), else right after its opening (a batch of 2: reveal, then the step).
        lab.obs.sync()
        batch = lab.obs.batch(bid)
        answered_first = batch is None or batch.tx_count >= 4

        def midgame() -> bool:
            games = lab.obs.games_on(bid)
            return any(g.status != "open" or (g.moves[-1].get("game", {}).get("turn") == 0
                                              and (not answered_first or any(m["kind"] == "answer" for m in g.moves)))
                       for g in games)

        wait_for(midgame, "verifier-1's game to be under way", 60, poll=0.02)
        games = lab.obs.games_on(bid)
        if any(g.status != "open" for g in games):
            raise RuntimeError("the game ended before verifier-1 could be killed mid-game")
        at = max(len(g.moves) - 1 for g in games)
        lab.net.restart("verifier-1", kill9=True)
        r.notes.append(f"verifier-1 killed (-9) after {at} moves and restarted; it resumed from its database")

    try:
        lie(lab, r, "inflated_balance", {"account": "0x" + lab.net.address("inflated-4").hex()},
            defend={"delay": 1.0}, during=restart)
    finally:
        lab.net.start_verifier("verifier-2")


SCENARIOS: list[Scenario] = [
    Scenario("trade below initial margin", CHALLENGER, s_margin),
    Scenario("liquidation of a healthy account", CHALLENGER, s_healthy_liquidation),
    Scenario("loss socialised wrong", CHALLENGER, s_socialised_wrong),
    Scenario("insurance-fund deficit booked wrong", CHALLENGER, s_deficit_booked_wrong),
    Scenario("loss socialised when the fund could pay", CHALLENGER, s_socialised_when_fund_could_pay),
    Scenario("liquidation price outside the band", CHALLENGER, s_liquidation_outside_band),
    Scenario("wrong liquidation penalty", CHALLENGER, s_wrong_penalty),
    Scenario("funding not zero-sum", CHALLENGER, s_funding_not_zero_sum),
    Scenario("funding at a rate other than the spec's", CHALLENGER, s_funding_wrong_rate),
    Scenario("oracle price not the median", CHALLENGER, s_oracle_not_median),
    Scenario("oracle price below quorum", CHALLENGER, s_oracle_below_quorum),
    Scenario("stale oracle price", CHALLENGER, s_oracle_stale),
    Scenario("forged order signature", CHALLENGER, s_forged_signature),
    Scenario("overfill", CHALLENGER, s_overfill),
    Scenario("fill after a cancel", CHALLENGER, s_fill_after_cancel),
    Scenario("withdrawal beyond free collateral", CHALLENGER, s_withdraw_beyond_free),
    Scenario("skipped deposit (forced inclusion)", CHALLENGER, s_skip_deposit),
    Scenario("balance inflated with no transaction", CHALLENGER, s_inflated_balance),
    Scenario("wrong fee", CHALLENGER, s_wrong_fee),
    Scenario("dishonest verifier challenges an honest batch", SEQUENCER, s_dishonest_verifier),
    Scenario("sequencer stops answering (clock runs out)", CHALLENGER, s_sequencer_silent),
    Scenario("honest and dishonest verifier on one batch", CHALLENGER, s_honest_and_dishonest),
    Scenario("verifier restarted mid-game", CHALLENGER, s_verifier_restart),
]


def run_scenario(lab: Lab, s: Scenario) -> Result:
    r = Result(s.name, s.expected)
    t0 = time.monotonic()
    t1 = t0
    try:
        s.run(lab, r)
        t1 = time.monotonic()
        r.balances_match_honest_replay, r.balance_detail = lab.check_balances()
    except Exception as exc:  # one scenario's failure is its own row, the matrix goes on
        r.error = f"{type(exc).__name__}: {exc}"
    r.notes = [n for n in r.notes if n]
    r.ok = r.error is None and r.winner == r.expected_winner and r.balances_match_honest_replay
    r.notes.append(f"scenario took {time.monotonic() - t0:.1f} s ({t1 - t0:.1f} s to the verdict, "
                   f"{time.monotonic() - t1:.1f} s to check balances)")
    return r
