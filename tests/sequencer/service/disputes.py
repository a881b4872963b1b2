"""Helpers for the dispute tests against a real sequencer: trading that fills a batch, the chain's
valid state re-executed from the base layer alone, and challengers (the shared player with an
honest or a lying view, or a bare client that opens a game and never plays)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from contracts_spec.dispute import Seat
from contracts_spec.params import DEV
from contracts_spec.state import State
from contracts_spec.stf import Env, apply_batch
from contracts_spec.types import Genesis
from l1_mock.client import ClientBridge, L1Client
from verifier.player import Player, chain_trace, fetch_batch
from verifier.trace import Fault, Trace

from .conftest import BTC, NATIVE, USDC, Net, wait_for

PRICE = 500_000
BOND = DEV.challenger_bond
BURN = -(-BOND * DEV.bond_burn_ppm // 1_000_000)


def trade(net: Net, trader: Callable[[str], Any], fills: int, lots: int = 1) -> list[str]:
    """alice rests `fills` bids, bob sells into each of them in one request: order ids of bob's."""
    traders = net.__dict__.setdefault("traders", {})  # one per name and test: nonces go on
    alice = traders.setdefault("alice", trader("alice"))
    bob = traders.setdefault("bob", trader("bob"))
    bids = [alice.order(True, PRICE - i, lots) for i in range(fills)]
    r = net.http.post("/v1/orders/batch", json={"orders": bids})
    assert all(x["status"] == "ok" for x in r.json()["results"]), r.text
    asks = [bob.order(False, PRICE - i, lots, tif="IOC") for i in range(fills)]
    r = net.http.post("/v1/orders/batch", json={"orders": asks})
    results = r.json()["results"]
    assert all(x["state"] == "filled" for x in results), r.text
    return [x["orderId"] for x in results]


def setup_market(net: Net) -> None:
    net.deposit("alice", 100_000 * USDC)
    net.deposit("bob", 100_000 * USDC)
    net.oracle(BTC, PRICE)


def all_posted(net: Net) -> list[dict[str, Any]]:
    """Wait until every output is in a posted batch; the batches."""
    def done() -> Any:
        h = net.http.get("/health").json()
        batches = net.http.get("/v1/batches", params={"limit": 1000}).json()
        ok = h["batched"] == h["outputs"] and not h["pendingPost"] and all(
            b["status"] in ("posted", "challenged", "final") for b in batches)
        return batches if ok else None
    return list(wait_for(done, "every output posted"))


def biggest(batches: list[dict[str, Any]]) -> dict[str, Any]:
    return max(batches, key=lambda b: b["txCount"])


def chain_state(client: L1Client, genesis: Genesis, upto_index: int) -> State:
    """The state after the valid chain's batches below `upto_index`, from the base layer alone."""
    state = State.from_genesis(genesis)
    bridge = ClientBridge(client)
    for index in range(upto_index):
        batch_id = int(client.canonical(index)["batch_id"])
        header, body = fetch_batch(client, batch_id, genesis)
        apply_batch(state, body, Env(genesis.preset, header.time, bridge))
        state.checkpoint()
        assert state.root() == header.post_root, f"the valid chain's batch {index} does not re-execute"
    return state


def credit(who: bytes, at: int, amount: int = USDC) -> Fault:
    """A wrong view: `who` holds `amount` more after transaction `at` than the rules give."""

    def fault(index: int, state: State) -> None:
        if index == at:
            acct = state.account(who)
            state.set_account(who, replace(acct, collateral=acct.collateral + amount))

    return fault


def verifier_truth(client: L1Client, genesis: Genesis, fault: Fault | None = None) -> Callable[[int], Trace]:
    """A challenger's view of a batch: the chain's data re-executed from the chain's own state
    before it (wrong after one transaction when `fault` is given)."""

    def truth(batch_id: int) -> Trace:
        index = int(client.batch(batch_id)["index"])
        return chain_trace(client, batch_id, chain_state(client, genesis, index), genesis, fault=fault)

    return truth


class Challengers:
    """Keys with native coin, their players (progress in a SQLite file), closed at the end."""

    def __init__(self, net: Net, tmp: Path) -> None:
        self.net, self.tmp = net, tmp
        self.clients: dict[str, L1Client] = {}
        self.players: list[Player] = []

    def client(self, name: str) -> L1Client:
        if name not in self.clients:
            c = self.clients[name] = self.net.l1_client(name)
            c.faucet(native=10 * NATIVE)
        return self.clients[name]

    def player(self, name: str, fault: Fault | None = None) -> Player:
        c = self.client(name)
        p = Player(c, f"sqlite:///{self.tmp / (name + '-player.db')}", Seat.CHALLENGER,
                   verifier_truth(c, self.net.genesis, fault))
        self.players.append(p)
        return p

    def native(self, name: str) -> int:
        return int(self.client(name).account(self.net.keys.addr(name))["native"])

    def close(self) -> None:
        for p in self.players:
            p.close()
        for c in self.clients.values():
            c.close()


def drive(*players: Player, until: Callable[[], Any], what: str, bound: float = 120.0) -> Any:
    """Tick the test's players (the sequencer's defender plays in its own thread) until `until()`."""

    def step() -> Any:
        for p in players:
            p.tick()
        return until()

    return wait_for(step, what, bound)
