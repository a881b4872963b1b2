"""The escape hatch over HTTP: freezing when the sequencer stops, claims proven against the last
final root and rebuilt from the base layer's data alone, refunds of deposits that root never
consumed, every refusal changing nothing, and the bridge never paying out more than it holds."""

from __future__ import annotations

from typing import Any

import pytest

from contracts_spec import dispute, escape
from contracts_spec.margin import account_value
from contracts_spec.merkle import withdrawal_proof
from contracts_spec.params import DEV
from contracts_spec.state import State
from contracts_spec.stf import holdings
from contracts_spec.types import WithdrawalLeaf
from contracts_spec.witness import prove_account
from l1_mock.client import L1Client, L1Error
from l1_mock.replay import escape_proof, rebuild_state
from sequencer.scenario import Keys

from .conftest import NATIVE, Node
from .rollup import Sequencer

USDC = 1_000_000
BTC = 0
PRICE = 600_000  # 60,000.0


class World:
    def __init__(self, node: Node, keys: Keys) -> None:
        self.node, self.keys = node, keys
        self.chain = node.client(keys["sequencer"])
        self.seq = Sequencer(node.genesis, keys, self.chain)  # type: ignore[arg-type]
        self.seq.stake()
        self.clients: dict[str, L1Client] = {}
        self.vera = self.c("vera")
        self.vera.faucet(native=10 * NATIVE)

    def c(self, name: str) -> L1Client:
        if name not in self.clients:
            self.clients[name] = self.node.client(self.keys[name])
        return self.clients[name]

    def addr(self, name: str) -> bytes:
        return self.keys.addr(name)

    def usdc(self, name: str) -> int:
        return int(self.chain.account(self.addr(name))["usdc"])

    def deposit(self, name: str, amount: int, consumed: bool = True) -> None:
        if consumed:
            self.seq.deposit(self.c(name), name, amount)
        else:  # on the base layer only: the sequencer never takes it
            self.c(name).faucet(usdc=amount)
            self.c(name).deposit(amount)

    def snapshot(self) -> dict[str, Any]:
        c = self.chain
        events, _ = c.events(limit=1000)
        names = ("alice", "bob", "carol", "dave", "vera")
        return {"rollup": c.rollup(), "escape": c.escape_status(), "events": len(events),
                "accounts": [c.account(self.addr(n)) for n in names],
                "claims": [c.escape_claim(self.addr(n)) for n in names]}

    def stop_and_freeze(self) -> dict[str, Any]:
        """The sequencer posts nothing more; once the escape delay has passed anyone freezes."""
        self.chain.increase_time(DEV.escape_delay + 1)
        return self.vera.freeze()


@pytest.fixture
def world(node: Node, keys: Keys) -> World:
    return World(node, keys)


def value_at(state: State, address: bytes) -> int:
    account = state.account(address)
    return max(0, account_value(account.collateral, holdings(state, address, account)))


def refused(code: str, world: World, call: Any) -> None:
    before = world.snapshot()
    with pytest.raises(L1Error) as e:
        call()
    assert e.value.code == code, e.value
    assert world.snapshot() == before


# --- freezing ---------------------------------------------------------------------------------


def test_freeze_is_refused_while_the_rollup_is_live(world: World) -> None:
    world.seq.post(world.seq.build())
    world.chain.increase_time(DEV.escape_delay)  # exactly the delay: not yet
    assert world.chain.escape_status()["freeze_allowed"] is False
    refused("freeze_refused", world, world.vera.freeze)


def test_freeze_after_no_batch_for_the_escape_delay(world: World) -> None:
    bid = world.seq.post(world.seq.build())
    view = world.stop_and_freeze()
    assert view["reason"] == "no_batch" and (view["batch_id"], view["index"]) == (bid, 0)
    status = world.chain.escape_status()
    assert status["frozen"] and not status["freeze_allowed"]
    refused("already_frozen", world, world.vera.freeze)


def test_freeze_after_an_unserved_forced_request(world: World) -> None:
    world.deposit("carol", 50 * USDC)
    world.seq.post(world.seq.build())
    world.c("carol").request_withdrawal(5 * USDC)
    world.chain.increase_time(DEV.forced_inclusion_delay - 1)
    world.seq.post(world.seq.build())  # batches keep coming, but none serves the request
    refused("freeze_refused", world, world.vera.freeze)
    world.chain.increase_time(2)
    assert world.vera.freeze()["reason"] == "forced_request_overdue"


def test_a_sequencer_that_never_posts_is_frozen_at_the_genesis_root(world: World) -> None:
    world.deposit("carol", 50 * USDC, consumed=False)
    world.c("carol").request_withdrawal(5 * USDC)
    world.chain.increase_time(DEV.forced_inclusion_delay + 1)
    view = world.vera.freeze()
    assert view["index"] == -1 and view["batch_id"] is None
    assert view["root"] == world.chain.rollup()["genesis_root"]
    refused("escape_refused", world, lambda: world.c("carol").escape(escape_proof(world.chain, world.addr("carol"))))
    usdc = world.usdc("carol")
    world.c("carol").refund_deposit(0)
    assert world.usdc("carol") == usdc + 50 * USDC and world.chain.rollup()["bridge_usdc"] == 0


def test_a_request_served_only_by_a_lost_batch_is_unserved_again(world: World) -> None:
    """Liveness reads the valid head: a lying batch that 'served' a forced request does not count."""
    from .rollup import credit_mallory

    world.deposit("carol", 50 * USDC)
    world.seq.post(world.seq.build())
    world.c("carol").request_withdrawal(5 * USDC)
    world.seq.b.forced_withdraw("carol", 5 * USDC)
    built = world.seq.build(lie_at=0, tamper=credit_mallory(world.keys))
    bid = world.seq.post(built)
    gid = world.vera.open_game(bid).game_id
    from .rollup import play

    assert play(gid, world.chain, world.vera, built, built.trace(), built.truth())[0].status == "challenger_won"
    world.chain.increase_time(DEV.forced_inclusion_delay + 1)
    assert world.vera.freeze()["reason"] == "forced_request_overdue"


def test_after_a_freeze_no_batch_game_deposit_or_request_is_accepted(world: World) -> None:
    world.deposit("alice", 100 * USDC)
    bid = world.seq.post(world.seq.build())
    world.stop_and_freeze()
    late = world.seq.build()
    refused("frozen", world, lambda: world.chain.post_batch(late.header, late.data, late.globals_proof))
    refused("frozen", world, lambda: world.vera.open_game(bid))
    world.c("bob").faucet(usdc=10 * USDC)
    refused("frozen", world, lambda: world.c("bob").deposit(10 * USDC))
    refused("frozen", world, lambda: world.c("alice").request_withdrawal(USDC))


# --- escaping -----------------------------------------------------------------------------------


def test_users_escape_with_their_value_after_the_sequencer_stops(world: World) -> None:
    b, keys = world.seq.b, world.keys
    # Batch 0 (becomes final): deposits, a price, a position each for alice and bob, a withdrawal
    t = world.chain.now()
    for name, amount in (("alice", 100_000), ("bob", 100_000), ("carol", 2_000)):
        world.deposit(name, amount * USDC)
    b.oracle(BTC, PRICE, t - 1)
    b.match("alice", "bob", BTC, maker_buys=True, price=PRICE, lots=1_000)
    b.withdraw("alice", 10 * USDC, 0)
    final = world.seq.build(t)
    bid0 = world.seq.post(final)
    world.chain.increase_time(DEV.challenge_window)
    assert world.chain.batch(bid0)["status"] == "final"
    # bob asks the base layer for a forced withdrawal, which the sequencer never serves
    world.c("bob").request_withdrawal(USDC)
    world.deposit("dave", 700 * USDC, consumed=False)  # never consumed by any batch
    world.chain.increase_time(DEV.forced_inclusion_delay - 1)
    # Batch 1 (still pending at the freeze): the price moves, bob withdraws
    t = world.chain.now()
    b.oracle(BTC, PRICE + 30_000, t - 1)
    b.withdraw("bob", 5 * USDC, 0)
    pending = world.seq.build(t)
    bid1 = world.seq.post(pending)
    bridge_before = world.chain.rollup()["bridge_usdc"]

    # The sequencer stops; the forced request is overdue; anyone freezes
    world.chain.increase_time(2)
    view = world.vera.freeze()
    assert view["reason"] == "forced_request_overdue"
    assert (view["batch_id"], view["index"]) == (bid0, 0)
    assert view["root"] == "0x" + final.header.post_root.hex()
    assert view["reserved_deposits"] == 700 * USDC
    world.chain.increase_time(DEV.challenge_window)
    assert world.chain.batch(bid1)["status"] == "pending"  # no game can open: it never becomes final

    # carol never talked to the sequencer after depositing: she rebuilds the state from the base
    # layer's data alone and takes her value back
    carol_usdc = world.usdc("carol")
    receipt = world.c("carol").escape(escape_proof(world.c("carol"), world.addr("carol")))
    assert receipt["value"] == receipt["paid"] == 2_000 * USDC
    assert world.usdc("carol") == carol_usdc + 2_000 * USDC

    # alice and bob are paid their value at the final root, positions marked at its oracle price
    state = rebuild_state(world.chain, 0)
    for name in ("alice", "bob"):
        expected = value_at(state, world.addr(name))
        assert expected > 0 and state.account(world.addr(name)).markets == (BTC,)
        before = world.usdc(name)
        assert world.vera.escape(prove_account(state, world.addr(name)), world.addr(name))["paid"] == expected
        assert world.usdc(name) == before + expected

    # a second claim, a forged proof, a proof of another account, a proof against a non-final root
    refused("already_escaped", world, lambda: world.c("carol").escape(prove_account(state, world.addr("carol"))))
    dave_proof = bytearray(prove_account(state, world.addr("dave")))
    dave_proof[len(dave_proof) // 2] ^= 1
    refused("bad_proof", world, lambda: world.c("dave").escape(bytes(dave_proof)))
    refused("witness_incomplete", world, lambda: world.c("dave").escape(prove_account(state, world.addr("alice"))))
    refused("bad_proof", world, lambda: world.c("dave").escape(prove_account(pending.post, world.addr("dave"))))
    refused("escape_refused", world, lambda: world.c("dave").escape(prove_account(state, world.addr("dave"))))
    refused("escape_refused", world, lambda: world.vera.escape(prove_account(state, keys.addr("x")), bytes(19) + b"\x01"))

    # withdrawals: the final root's tree stays payable, the pending batch's never is
    leaf = WithdrawalLeaf(0, world.addr("alice"), 10 * USDC)  # type: ignore[arg-type]
    world.vera.withdraw(bid0, leaf, withdrawal_proof([dispute.compute_withdrawal_leaf_hash(leaf)], 0))
    bob_leaf = WithdrawalLeaf(1, world.addr("bob"), 5 * USDC)  # type: ignore[arg-type]
    hashes = [dispute.compute_withdrawal_leaf_hash(x) for x in (leaf, bob_leaf)]
    refused("not_final", world, lambda: world.vera.withdraw(bid1, bob_leaf, withdrawal_proof(hashes, 1)))

    # dave's deposit was never consumed: it goes back whole, once; carol's was consumed
    dave_usdc = world.usdc("dave")
    assert world.vera.refund_deposit(3)["amount"] == 700 * USDC
    assert world.usdc("dave") == dave_usdc + 700 * USDC and world.chain.deposit_refunded(3)
    refused("already_refunded", world, lambda: world.vera.refund_deposit(3))
    refused("escape_refused", world, lambda: world.vera.refund_deposit(2))
    refused("not_found", world, lambda: world.vera.refund_deposit(9))

    # everything paid out came from the bridge, which is never overdrawn
    status = world.chain.escape_status()["freeze"]
    paid = status["escaped_total"] + status["refunded_deposits"] + 10 * USDC
    assert world.chain.rollup()["bridge_usdc"] == bridge_before - paid >= 0


def test_escape_and_refund_need_a_freeze(world: World) -> None:
    world.deposit("carol", 50 * USDC)
    world.seq.post(world.seq.build())
    state = world.seq.state
    refused("not_frozen", world, lambda: world.c("carol").escape(prove_account(state, world.addr("carol"))))
    refused("not_frozen", world, lambda: world.vera.refund_deposit(0))
    with pytest.raises(L1Error) as e:
        escape_proof(world.chain, world.addr("carol"))
    assert e.value.code == "not_frozen"


LONGS = [f"long{i}" for i in range(6)]
SHORTS = [f"short{i}" for i in range(6)]


@pytest.mark.parametrize("drop_ppm", [0, 100_000], ids=["healthy", "longs-bankrupt"])
def test_escape_claims_never_exceed_the_bridge(world: World, drop_ppm: int) -> None:
    """Twelve accounts at 20x; a 10% drop leaves every long bankrupt (value floored at zero), so the
    winners' values add up to more than the bridge holds: claims are paid in full until the bridge
    (less the reserved unconsumed deposits) runs dry, and never beyond."""
    b = world.seq.b
    t = world.chain.now()
    for name in LONGS:
        world.deposit(name, 1_000 * USDC)
    for name in SHORTS:
        world.deposit(name, 10_000 * USDC)
    b.oracle(BTC, PRICE, t - 2)
    for long, short in zip(LONGS, SHORTS, strict=True):
        b.match(short, long, BTC, maker_buys=False, price=PRICE, lots=3_000)  # longs take 18,000 USDC at 20x
    b.oracle(BTC, PRICE - PRICE * drop_ppm // 1_000_000, t - 1)
    built = world.seq.build(t)
    world.seq.post(built)
    world.chain.increase_time(DEV.challenge_window)
    world.deposit("dave", 300 * USDC, consumed=False)
    world.stop_and_freeze()

    state = rebuild_state(world.chain, 0)
    assert state.root() == built.header.post_root
    values = {n: value_at(state, world.addr(n)) for n in LONGS + SHORTS}
    if drop_ppm:
        assert all(values[n] == 0 for n in LONGS)
    available = world.chain.escape_status()["freeze"]["available"]
    total_paid = 0
    for name in SHORTS + LONGS:
        proof = prove_account(state, world.addr(name))
        left = world.chain.escape_status()["freeze"]["available"]
        if escape.compute_escape_payment(values[name], left) == 0:
            refused("escape_refused", world, lambda p=proof, n=name: world.vera.escape(p, world.addr(n)))
            continue
        receipt = world.vera.escape(proof, world.addr(name))
        assert receipt["value"] == values[name] and receipt["paid"] == min(values[name], left)
        total_paid += receipt["paid"]
    assert total_paid == min(sum(values.values()), available) <= available
    if drop_ppm:
        assert sum(values.values()) > available  # the cap was needed
    # the reserved deposit is still there for its owner
    assert world.vera.refund_deposit(len(LONGS) + len(SHORTS))["amount"] == 300 * USDC
    assert world.chain.rollup()["bridge_usdc"] >= 0
