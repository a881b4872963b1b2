"""The rollup, games and bridge contracts over HTTP with real batches built by the spec."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from contracts_spec import codec, dispute
from contracts_spec.crypto import keccak
from contracts_spec.dispute import Status
from contracts_spec.merkle import withdrawal_proof
from contracts_spec.params import DEV
from contracts_spec.types import BatchData, WithdrawalLeaf
from l1_mock.client import L1Client, L1Error
from sequencer.scenario import Keys

from .conftest import NATIVE, Node
from .rollup import Built, Sequencer, credit_mallory, play

USDC = 1_000_000
BTC, ETH = 0, 1
BTC_PRICE = 600_000


class World:
    def __init__(self, node: Node, keys: Keys) -> None:
        self.node, self.keys = node, keys
        self.seq_client = node.client(keys["sequencer"])
        self.seq = Sequencer(node.genesis, keys, self.seq_client)  # type: ignore[arg-type]
        self.users = {n: node.client(keys[n]) for n in ("alice", "bob", "carol", "mallory", "vera", "victor")}
        self.seq.stake()
        for n in ("vera", "victor", "mallory"):
            self.users[n].faucet(native=10 * NATIVE)

    def c(self, name: str) -> L1Client:
        return self.users[name]

    def every_kind_batch(self) -> Built:
        """Deposits, oracle prices, trades, a cancel, a cancel-all, funding, a withdrawal."""
        b, t = self.seq.b, self.seq_client.now()
        self.seq.deposit(self.c("alice"), "alice", 100_000 * USDC)
        self.seq.deposit(self.c("bob"), "bob", 100_000 * USDC)
        b.oracle(BTC, BTC_PRICE, t - 1)
        b.oracle(ETH, 300_000, t - 1)
        b.match("alice", "bob", BTC, maker_buys=True, price=BTC_PRICE, lots=100)
        resting = b.order("alice", ETH, True, 290_000, 10)
        b.cancel("alice", resting)
        b.cancel_all("bob", 5)
        b.withdraw("alice", 10 * USDC, 0)
        return self.seq.build(t)

    def snapshot(self) -> dict[str, Any]:
        c = self.seq_client
        events, _ = c.events(limit=1000)
        return {"rollup": c.rollup(), "batches": c.batches(), "games": [g.status for g in c.games()],
                "events": len(events), "accounts": [c.account(self.keys.addr(n)) for n in ("sequencer", "vera")]}


@pytest.fixture
def world(node: Node, keys: Keys) -> World:
    return World(node, keys)


def test_post_batches_finality_and_data(world: World) -> None:
    c = world.seq_client
    built = world.every_kind_batch()
    bid = world.seq.post(built)
    view = c.batch(bid)
    assert view["status"] == "pending" and view["tx_count"] == len(built.body.txs)
    assert c.batch_data(view["data_hash"]) == built.data
    assert codec.decode_batch_data(c.batch_data(built.header.data_hash)) == built.body
    assert c.batch_header(bid) == built.header and c.canonical(0)["batch_id"] == bid
    assert c.rollup()["head_root"] == "0x" + built.header.post_root.hex()
    bid2 = world.seq.post(world.seq.build())  # an empty batch keeps its parent's root
    c.increase_time(DEV.challenge_window - 1)
    assert c.batch(bid)["status"] == "pending"
    c.increase_time(1)
    assert c.batch(bid)["status"] == "final" and c.batch(bid2)["status"] == "final"
    names = [e.name for e in c.follow()]
    assert names.count("BatchPosted") == 2 and names.count("Deposited") == 2


def test_reading_a_batch_costs_the_same_however_long_the_chain(world: World) -> None:
    """Finality is cached as batches are posted: a batch's status walks back only over the batches
    not yet known final, never the whole chain once per read (that made every poll of the base
    layer O(chain) and a long-lived network's base layer busy with nothing else)."""
    from sqlalchemy import event

    c, engine = world.seq_client, world.node.chain.engine  # type: ignore[union-attr]
    statements = [0]

    def count(*_: Any) -> None:
        statements[0] += 1

    def cost_of_reading(batch_id: int) -> int:
        c.batch(batch_id)  # warm: the first read of a route may load more than the next
        before = statements[0]
        view = c.batch(batch_id)
        assert view["status"] == "final"
        return statements[0] - before

    def grow(batches: int) -> int:
        for _ in range(batches):
            bid = world.seq.post(world.seq.build())
        c.increase_time(DEV.challenge_window + 1)
        world.seq.post(world.seq.build())  # posting caches what became final meanwhile
        c.increase_time(DEV.challenge_window + 1)
        return bid

    event.listen(engine, "before_cursor_execute", count)
    try:
        short = cost_of_reading(grow(5))
        long = cost_of_reading(grow(40))
    finally:
        event.remove(engine, "before_cursor_execute", count)
    assert long <= short, (short, long)


# --- posting refusals ---------------------------------------------------------------------------


def _lie(built: Built, **fields: Any) -> Built:
    return replace(built, header=replace(built.header, **fields))


POST_REFUSALS: list[tuple[str, Any, str]] = [
    ("wrong index", lambda w, b: _lie(b, index=5), "bad_parent"),
    ("wrong parent root", lambda w, b: _lie(b, prev_root=keccak(b"x")), "bad_parent"),
    ("time in the future", lambda w, b: _lie(b, time=b.header.time + 1), "bad_batch_time"),
    ("time below the parent", lambda w, b: _lie(b, time=w.node.genesis.genesis_time - 1), "bad_batch_time"),
    ("data hash", lambda w, b: _lie(b, data_hash=keccak(b"other")), "header_mismatch"),
    ("tx count", lambda w, b: _lie(b, tx_count=b.header.tx_count + 1), "header_mismatch"),
    ("tx root", lambda w, b: _lie(b, tx_root=keccak(b"r")), "header_mismatch"),
    ("orders root", lambda w, b: _lie(b, orders_root=keccak(b"r")), "header_mismatch"),
    ("deposits consumed", lambda w, b: _lie(b, deposits_consumed=0), "header_mismatch"),
    ("withdrawal root", lambda w, b: _lie(b, withdrawal_root=keccak(b"w")), "header_mismatch"),
    ("globals proof", lambda w, b: replace(b, globals_proof=b.globals_proof[:-1]), "header_mismatch"),
    ("undecodable data", lambda w, b: replace(_lie(b, data_hash=keccak(b"\x01junk")), data=b"\x01junk"), "bad_batch_data"),
    ("oversize data", lambda w, b: replace(b, data=bytes(DEV.max_batch_bytes + 1)), "bad_batch_data"),
]


@pytest.mark.parametrize("name,mutate,code", POST_REFUSALS, ids=[r[0] for r in POST_REFUSALS])
def test_posting_refusals_change_nothing(world: World, name: str, mutate: Any, code: str) -> None:
    built = world.every_kind_batch()
    bad = mutate(world, built)
    before = world.snapshot()
    with pytest.raises(L1Error) as e:
        world.seq_client.post_batch(bad.header, bad.data, bad.globals_proof)
    assert e.value.code == code, e.value
    assert world.snapshot() == before
    world.seq.post(built)  # the honest batch still goes through


def test_posting_needs_the_staked_sequencer(world: World) -> None:
    built = world.every_kind_batch()
    with pytest.raises(L1Error) as e:
        world.c("mallory").post_batch(built.header, built.data, built.globals_proof)
    assert e.value.code == "not_sequencer"
    with pytest.raises(L1Error) as e:
        world.c("mallory").register_sequencer(1)
    assert e.value.code == "not_sequencer"


def test_posting_refused_without_stake(node_factory: Any, genesis: Any, keys: Keys) -> None:
    node = node_factory(genesis)
    seq = Sequencer(genesis, keys, node.client(keys["sequencer"]))
    with pytest.raises(L1Error) as e:
        seq.client.post_batch(*_parts(seq.build()))
    assert e.value.code == "insufficient_stake"


def _parts(b: Built) -> tuple[Any, bytes, bytes]:
    return b.header, b.data, b.globals_proof


def test_duplicate_header_and_stale_time(world: World) -> None:
    built = world.every_kind_batch()
    world.seq.post(built)
    with pytest.raises(L1Error) as e:
        world.seq_client.post_batch(*_parts(built))
    assert e.value.code == "bad_parent"
    old = world.seq.build()
    world.seq_client.increase_time(DEV.max_time_lag + 1)
    with pytest.raises(L1Error) as e:
        world.seq_client.post_batch(*_parts(old))
    assert e.value.code == "bad_batch_time"


@pytest.mark.parametrize("queue", ["deposit", "forced"])
def test_forced_inclusion(world: World, queue: str) -> None:
    c = world.c("carol")
    if queue == "deposit":
        c.faucet(usdc=5 * USDC)
        c.deposit(5 * USDC)
    else:
        c.request_withdrawal(5 * USDC)
    world.seq_client.increase_time(DEV.forced_inclusion_delay - 1)
    world.seq.post(world.seq.build())  # not yet due: an empty batch is fine
    world.seq_client.increase_time(1)
    with pytest.raises(L1Error) as e:
        world.seq_client.post_batch(*_parts(world.seq.build()))
    assert e.value.code == "forced_inclusion_missed"
    if queue == "deposit":
        world.seq.b.deposit("carol", 5 * USDC)
    else:
        world.seq.b.forced_withdraw("carol", 5 * USDC)
    world.seq.post(world.seq.build())


# --- games --------------------------------------------------------------------------------------


def _lying_batch(world: World, where: str) -> Built:
    built = world.every_kind_batch()
    n = len(built.body.txs)
    lie_at = {"first": 0, "middle": n // 2, "last": n - 1}[where]
    world.seq.b.txs, world.seq.b.orders = list(built.body.txs), list(built.body.orders)
    return world.seq.build(built.header.time, lie_at=lie_at, tamper=credit_mallory(world.keys))


@pytest.mark.parametrize("where", ["first", "middle", "last"])
def test_lying_sequencer_loses(world: World, where: str) -> None:
    c, vera = world.seq_client, world.c("vera")
    before_stake = c.rollup()["stake"]
    built = _lying_batch(world, where)
    bid = world.seq.post(built)
    gid = vera.open_game(bid).game_id
    assert c.rollup()["stake"] == before_stake - DEV.challenger_bond
    assert vera.bonds(world.keys.addr("vera"))["locked_total"] == DEV.challenger_bond
    info, counts = play(gid, c, vera, built, built.trace(), built.truth())
    k = dispute.compute_depth(len(built.body.txs))
    assert info.status == "challenger_won" and counts == {"reveal": k, "answer": k, "step": 1}
    # The batch is lost, the head rolled back, the challenger paid from the sequencer's escrow
    assert c.batch(bid)["status"] == "lost" and c.rollup()["head_index"] == -1
    burn = -(-DEV.challenger_bond * DEV.bond_burn_ppm // 1_000_000)
    assert vera.bonds(world.keys.addr("vera")) == {
        "address": "0x" + world.keys.addr("vera").hex(), "locked": [], "locked_total": 0,
        "claimable": 2 * DEV.challenger_bond - burn}
    native = vera.account(world.keys.addr("vera"))["native"]
    assert vera.claim() == 2 * DEV.challenger_bond - burn
    assert vera.account(world.keys.addr("vera"))["native"] == native + 2 * DEV.challenger_bond - burn
    with pytest.raises(L1Error) as e:
        vera.claim()
    assert e.value.code == "nothing_to_claim"
    assert c.rollup()["burnt"] == burn
    # The sequencer tops its stake up and re-posts on the last valid root: the genesis root here
    with pytest.raises(L1Error) as e:
        c.post_batch(*_parts(world.seq.build()))
    assert e.value.code == "insufficient_stake"
    c.register_sequencer(DEV.challenger_bond)
    world.seq.rollback(world.seq.state.__class__.from_genesis(world.node.genesis), 0)  # type: ignore[arg-type]
    world.seq.b.bridge.deposits.clear()
    for name in ("alice", "bob"):
        world.seq.b.deposit(name, 100_000 * USDC)
    assert c.batch(world.seq.post(world.seq.build()))["index"] == 0


def test_rejected_transaction_claimed_valid_loses(world: World) -> None:
    world.seq.deposit(world.c("alice"), "alice", 100 * USDC)
    world.seq.b.withdraw("alice", 500 * USDC, 0)  # more than alice has: the rules reject it
    built = world.seq.build(skip_invalid=True)
    bid = world.seq.post(built)
    gid = world.c("vera").open_game(bid).game_id
    info, _ = play(gid, world.seq_client, world.c("vera"), built, built.trace(), built.truth())
    assert info.status == "challenger_won"
    stepped = [e for e in world.seq_client.follow(names=["Stepped"])]
    assert stepped[-1].data["rejected"] is True and stepped[-1].data["index"] == 1


@pytest.mark.parametrize("policy", ["agree", "disagree"])
def test_honest_sequencer_beats_lying_challenger(world: World, policy: str) -> None:
    c, mallory = world.seq_client, world.c("mallory")
    built = world.every_kind_batch()
    bid = world.seq.post(built)
    gid = mallory.open_game(bid).game_id
    info, counts = play(gid, c, mallory, built, built.trace(), built.trace(),
                        chal_answers=lambda g: policy == "agree")
    assert info.status == "sequencer_won" and counts["step"] == 1
    burn = -(-DEV.challenger_bond * DEV.bond_burn_ppm // 1_000_000)
    assert c.bonds(world.keys.addr("sequencer"))["claimable"] == DEV.challenger_bond - burn
    assert c.rollup()["stake"] == DEV.sequencer_stake_min
    c.increase_time(DEV.challenge_window)
    assert c.batch(bid)["status"] == "final"


def test_incomplete_witness_and_bad_proofs_are_refused(world: World) -> None:
    """A lying challenger tries to win the step by leaving a leaf out: refused, nothing changes."""
    c, mallory = world.seq_client, world.c("mallory")
    world.seq.deposit(world.c("alice"), "alice", 100 * USDC)
    built = world.seq.build()
    bid = world.seq.post(built)
    gid = mallory.open_game(bid).game_id
    info = mallory.game(gid)
    assert dispute.get_phase(info.game) == dispute.Phase.STEP  # one transaction: straight to the step
    good = built.step_proof(0)
    assert good is not None
    cases = {
        "witness_incomplete": built.step_proof(0, drop_leaf=True),
        "bad_proof": replace(good, tx_proof=(keccak(b"x"),) * len(good.tx_proof)) if good.tx_proof
        else replace(good, tx=codec.encode_tx(codec.decode_tx(good.tx).__class__(5))),  # type: ignore[call-arg]
    }
    before = world.snapshot()
    for code, proof in cases.items():
        with pytest.raises(L1Error) as e:
            mallory.step(gid, proof)
        assert e.value.code == code
        assert world.snapshot() == before
    assert c.step(gid, good).status == "sequencer_won"


def test_moves_out_of_turn_after_clock_and_by_strangers(world: World) -> None:
    c, vera = world.seq_client, world.c("vera")
    built = world.every_kind_batch()
    bid = world.seq.post(built)
    gid = vera.open_game(bid).game_id
    before = world.snapshot()
    for call, code in (
        (lambda: vera.reveal(gid, keccak(b"r")), "not_your_turn"),
        (lambda: c.answer(gid, True), "wrong_move"),
        (lambda: world.c("bob").reveal(gid, keccak(b"r")), "not_a_player"),
        (lambda: vera.resolve(gid), "clock_running"),
        (lambda: c.step(gid, None), "wrong_move"),
    ):
        with pytest.raises(L1Error) as e:
            call()
        assert e.value.code == code, (code, e.value)
    assert world.snapshot() == before
    c.increase_time(DEV.game_clock + 1)
    before = world.snapshot()
    with pytest.raises(L1Error) as e:
        c.reveal(gid, built.roots[4])
    assert e.value.code == "clock_expired"
    assert world.snapshot() == before


@pytest.mark.parametrize("sleeper", ["sequencer", "challenger"])
def test_timeouts(world: World, sleeper: str) -> None:
    c, vera = world.seq_client, world.c("vera")
    built = world.every_kind_batch()
    bid = world.seq.post(built)
    g = vera.open_game(bid)
    if sleeper == "challenger":
        g = c.move(g.game_id, dispute.next_move(g.game, dispute.Seat.SEQUENCER, built.trace()))  # type: ignore[arg-type]
    assert g.deadline is not None
    c.increase_time(g.deadline - c.now())
    with pytest.raises(L1Error):
        world.c("bob").resolve(g.game_id)  # anyone may resolve, but not before the deadline
    c.increase_time(1)
    info = world.c("bob").resolve(g.game_id)
    assert info.status == ("challenger_won" if sleeper == "sequencer" else "sequencer_won")
    assert c.batch(bid)["status"] == ("lost" if sleeper == "sequencer" else "pending")


def test_two_challengers_one_honest(world: World) -> None:
    """On a lying batch a sybil of the sequencer plays to lose; the honest challenger still wins
    its own game, paid from its own escrow, and the sybil's game, still open, goes to it too."""
    c, vera, mallory = world.seq_client, world.c("vera"), world.c("mallory")
    built = _lying_batch(world, "middle")
    bid = world.seq.post(built)
    sybil = mallory.open_game(bid).game_id
    honest = vera.open_game(bid).game_id
    assert c.rollup()["stake"] == DEV.sequencer_stake_min - 2 * DEV.challenger_bond
    # the sybil answers once then stalls; the honest challenger plays to the end
    g = c.move(sybil, dispute.next_move(c.game(sybil).game, dispute.Seat.SEQUENCER, built.trace()))  # type: ignore[arg-type]
    info, _ = play(honest, c, vera, built, built.trace(), built.truth())
    assert info.status == "challenger_won"
    assert mallory.resolve(sybil).status == "challenger_won"  # the batch is proven wrong
    assert g.game.status == Status.OPEN
    burn = -(-DEV.challenger_bond * DEV.bond_burn_ppm // 1_000_000)
    for name in ("vera", "mallory"):
        assert c.bonds(world.keys.addr(name))["claimable"] == 2 * DEV.challenger_bond - burn


def test_batch_on_an_invalid_batch_falls_with_it(world: World) -> None:
    c, vera, victor = world.seq_client, world.c("vera"), world.c("victor")
    built = _lying_batch(world, "first")
    bad = world.seq.post(built)
    world.seq.deposit(world.c("carol"), "carol", 7 * USDC)
    child = world.seq.post(world.seq.build())
    g_child = victor.open_game(child).game_id
    gid = vera.open_game(bad).game_id
    play(gid, c, vera, built, built.trace(), built.truth())
    assert c.batch(bad)["status"] == "lost" and c.batch(child)["status"] == "invalid"
    assert c.rollup()["head_index"] == -1
    with pytest.raises(L1Error) as e:
        c.reveal(g_child, keccak(b"r"))
    assert e.value.code == "batch_invalidated"
    with pytest.raises(L1Error) as e:
        world.c("bob").open_game(child)
    assert e.value.code == "batch_invalidated"
    refunded = victor.resolve(g_child)
    assert refunded.status == "refunded" and refunded.payout == {
        "challenger": DEV.challenger_bond, "sequencer_stake": DEV.challenger_bond, "sequencer_credit": 0, "burnt": 0}
    c.increase_time(DEV.challenge_window)
    assert c.batch(child)["status"] == "invalid"


def test_opening_refusals(world: World) -> None:
    c = world.seq_client
    bid = world.seq.post(world.seq.build())  # empty
    for who, bid_, code in ((world.c("vera"), bid, "nothing_to_dispute"), (c, bid, "sequencer_cannot_challenge"),
                            (world.c("vera"), 99, "not_found")):
        with pytest.raises(L1Error) as e:
            who.open_game(bid_)
        assert e.value.code == code
    world.seq.deposit(world.c("alice"), "alice", USDC)
    bid2 = world.seq.post(world.seq.build())
    with pytest.raises(L1Error) as e:
        world.c("alice").open_game(bid2)
    assert e.value.code == "insufficient_balance"
    c.increase_time(DEV.challenge_window)
    with pytest.raises(L1Error) as e:
        world.c("vera").open_game(bid2)
    assert e.value.code == "outside_window"


# --- bridge -------------------------------------------------------------------------------------


def test_withdrawal_paid_once_from_a_final_batch(world: World) -> None:
    c, alice = world.seq_client, world.c("alice")
    built = world.every_kind_batch()
    bid = world.seq.post(built)
    leaf = WithdrawalLeaf(0, world.keys.addr("alice"), 10 * USDC)  # type: ignore[arg-type]
    proof = withdrawal_proof([dispute.compute_withdrawal_leaf_hash(leaf)], 0)
    with pytest.raises(L1Error) as e:
        alice.withdraw(bid, leaf, proof)
    assert e.value.code == "not_final"
    c.increase_time(DEV.challenge_window)
    before = world.snapshot()
    with pytest.raises(L1Error) as e:
        alice.withdraw(bid, replace(leaf, amount=11 * USDC), proof)  # type: ignore[arg-type]
    assert e.value.code == "bad_proof" and world.snapshot() == before
    usdc = alice.account(world.keys.addr("alice"))["usdc"]
    world.c("bob").withdraw(bid, leaf, proof)  # anyone may submit; alice is paid
    assert alice.account(world.keys.addr("alice"))["usdc"] == usdc + 10 * USDC
    assert alice.withdrawal_paid(0)
    with pytest.raises(L1Error) as e:
        alice.withdraw(bid, leaf, proof)
    assert e.value.code == "already_paid"


def test_deposit_refusals(world: World) -> None:
    for args, code in (({"amount": 0}, "malformed"), ({"amount": 10**12}, "insufficient_balance")):
        with pytest.raises(L1Error) as e:
            world.c("carol").send("deposit", args)
        assert e.value.code == code
    assert world.c("carol").deposit_entry(0) is None


def test_state_survives_restart(world: World) -> None:
    built = _lying_batch(world, "last")
    bid = world.seq.post(built)
    gid = world.c("vera").open_game(bid).game_id
    c = world.seq_client
    c.reveal(gid, built.roots[dispute.trace_index(dispute.bisection_point(0, c.game(gid).game.hi), len(built.roots) - 1)])
    before = (c.rollup(), c.batches(), c.game(gid), list(c.follow()), c.batch_data(built.header.data_hash))
    world.node.restart()
    c = world.node.client(world.keys["sequencer"])
    assert (c.rollup(), c.batches(), c.game(gid), list(c.follow()), c.batch_data(built.header.data_hash)) == before


def test_batchdata_roundtrip_guard() -> None:
    assert codec.decode_batch_data(codec.encode_batch_data(BatchData((), ()))) == BatchData((), ())
