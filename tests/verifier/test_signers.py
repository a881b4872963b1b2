"""Order ids and signers derived ahead of the STF: in a pool or inline they are the same values
`BatchOrders.verify` would compute, orders seen before come from the cache, and a pool that
breaks costs time, never a verdict."""

from __future__ import annotations

import os
import threading
import time
from concurrent.futures import Future
from concurrent.futures.process import BrokenProcessPool
from dataclasses import replace
from pathlib import Path

import pytest

from contracts_spec import codec, eip712
from contracts_spec.crypto import recover_address, sign_digest
from contracts_spec.types import BatchData, Cancel, CancelAll, Order, SignedOrder, TimeInForce, Trade
from sequencer.scenario import Keys, dev_genesis
from verifier import signers as signers_module
from verifier.signers import Pending, Signers, _Chunks, default_pool_size, derive_encoded, derive_messages

keys = Keys("signers-")
genesis = dev_genesis(keys)
PRESET = genesis.preset


def order(name: str, nonce: int, signer: str | None = None) -> SignedOrder:
    o = Order(keys.addr(name), 0, nonce % 2 == 0, 500_000 + nonce, 1 + nonce % 3, TimeInForce.GTC, False, 0,  # type: ignore[arg-type]
              nonce, 0)
    return eip712.sign_order(PRESET, o, keys[signer or name])


def batch(first: int, n: int) -> list[SignedOrder]:
    """n orders by four traders, one forged in another's name and one whose signature is junk."""
    orders = [order(f"t{i % 4}", i) for i in range(first, first + n)]
    orders[1] = order("t1", first + 1, signer="mallory")
    orders[2] = replace(orders[2], signature=b"\xff" * 65)
    return orders


def expected(orders: list[SignedOrder]) -> tuple[dict[int, bytes], dict[int, bytes]]:
    ids = {i: eip712.order_digest(PRESET, so.order) for i, so in enumerate(orders)}
    signers = {}
    for i, so in enumerate(orders):
        try:
            signers[i] = recover_address(ids[i], so.signature)
        except Exception:
            continue
    return ids, signers


def cancels(first: int, n: int) -> list[Cancel | CancelAll]:
    """n cancels and cancel-alls by four traders, one forged in another's name, one with a junk signature."""
    txs: list[Cancel | CancelAll] = []
    for i in range(first, first + n):
        name = f"t{i % 4}"
        if i % 3:
            txs.append(eip712.sign_cancel(PRESET, keys[name], bytes([i % 256]) * 32))
        else:
            txs.append(eip712.sign_cancel_all(PRESET, keys[name], i))
    victim = keys.addr("t1")
    txs[1] = Cancel(victim, bytes(32), sign_digest(keys["mallory"], eip712.cancel_digest(PRESET, victim, bytes(32))))
    txs[2] = replace(txs[2], signature=b"\xff" * 65)
    return txs


def expected_recovered(txs: list[Cancel | CancelAll]) -> dict[tuple[bytes, bytes], bytes]:
    out = {}
    for tx in txs:
        digest = (eip712.cancel_digest(PRESET, tx.account, tx.order_id) if isinstance(tx, Cancel)
                  else eip712.cancel_all_digest(PRESET, tx.account, tx.nonce_floor))
        try:
            out[digest, tx.signature] = recover_address(digest, tx.signature)
        except Exception:
            continue
    return out


@pytest.fixture
def pooled() -> Signers:
    s = Signers(PRESET, workers=2, parallel_orders=1)
    yield s  # type: ignore[misc]
    s.close()


def test_inline_and_pooled_derive_what_the_spec_would(pooled: Signers) -> None:
    orders = batch(0, 24)
    ids, signers = expected(orders)
    inline = Signers(PRESET, workers=1)
    assert inline.for_batch(orders) == (ids, signers)
    pending = pooled.submit(orders)
    assert pending.result() == (ids, signers)
    assert pending.result() == (ids, signers)  # asked again: the same answer
    assert 2 not in signers and signers[1] == keys.addr("mallory") != orders[1].order.account


def test_orders_seen_before_are_not_recovered_again(pooled: Signers) -> None:
    first = batch(0, 24)
    pooled.for_batch(first)
    again = first[10:] + batch(100, 6)  # resting orders filled again, and new ones
    pending = pooled.submit(again)
    assert len(pending.todo) == 6
    assert pending.result() == expected(again)


def test_the_next_batch_is_derived_while_this_one_is_collected(pooled: Signers) -> None:
    one, two = batch(0, 16), batch(200, 16)
    p1, p2 = pooled.submit(one), pooled.submit(two)
    assert p2.result() == expected(two) and p1.result() == expected(one)


def test_a_worker_dying_mid_batch_costs_time_not_a_verdict(pooled: Signers) -> None:
    orders = batch(0, 8)
    real = pooled.submit(orders)
    real.result()
    broken: Future[list[tuple[bytes, bytes | None]]] = Future()
    broken.set_exception(BrokenProcessPool("a worker died"))
    chunks = _Chunks(PRESET, derive_encoded, real.keys, None, len(real.keys))
    chunks.derived, chunks.futures = None, [broken]  # type: ignore[list-item]
    pending = Pending(pooled, {}, {}, real.todo, real.keys, chunks, {}, _Chunks(PRESET, derive_messages, [], None, 1))
    assert pending.result() == expected(orders)
    # the broken pool is dropped; the next big batch gets a new one
    assert pooled._pool is None
    assert pooled.submit(batch(300, 8)).result() == expected(batch(300, 8))


def test_a_pool_broken_before_the_batch_costs_time_not_a_verdict(pooled: Signers) -> None:
    pooled.for_batch(batch(500, 4))  # the pool is up
    assert pooled._pool is not None
    with pytest.raises(BrokenProcessPool):
        pooled._pool.submit(os._exit, 1).result()  # a worker dies (killed, out of memory)
    orders, txs = batch(0, 8), cancels(600, 4)
    trades = [Trade(i, i + 1, 1, 500_000) for i in range(0, len(orders), 2)]  # type: ignore[arg-type]
    pending = pooled.submit(orders, txs=[*trades, *txs])
    assert pending.result() == expected(orders) and pending.recovered() == expected_recovered(txs)
    assert pooled._pool is None
    assert pooled.submit(batch(300, 8)).result() == expected(batch(300, 8))


def _hold(gate: str) -> None:
    """Keeps a pool's worker busy until the file `gate` exists."""
    while not os.path.exists(gate):
        time.sleep(0.01)


def test_the_node_recovers_the_chunks_no_worker_has_started(tmp_path: Path) -> None:
    s = Signers(PRESET, workers=1, parallel_orders=1, chunk_orders=2)
    s.pool_size = 1  # one worker (workers=1 means inline)
    try:
        orders = batch(0, 16)
        s.submit(batch(500, 4)).result()  # the pool is up
        assert s._pool is not None
        gate = tmp_path / "gate"
        held = s._pool.submit(_hold, str(gate))
        pending = s.submit(orders)
        parts = list(pending.orders.futures)
        assert len(parts) == 8

        def release() -> None:  # once the node has taken the last chunk itself, let the worker go on
            deadline = time.monotonic() + 60
            while not parts[-1].cancelled() and time.monotonic() < deadline:  # type: ignore[union-attr]
                time.sleep(0.01)
            gate.touch()

        threading.Thread(target=release, daemon=True).start()
        assert pending.result() == expected(orders)
        # the worker is held until then, and the pool's queue holds at most two calls: the last
        # chunk was never started by a worker, so the node recovered it
        assert parts[-1].cancelled()  # type: ignore[union-attr]
        held.result()
    finally:
        s.close()


def test_a_cancelled_batch_is_never_collected(pooled: Signers) -> None:
    pending = pooled.submit(batch(0, 8))
    pending.cancel()
    assert pending.done


def test_derive_leaves_out_what_does_not_recover() -> None:
    orders = batch(0, 4)
    got = derive_encoded(PRESET, [codec.encode_signed_order(so) for so in orders])
    assert [oid for oid, _, _ in got] == [eip712.order_digest(PRESET, so.order) for so in orders]
    assert got[2][1] is None and got[0][1] == orders[0].order.account


@pytest.mark.parametrize(("workers", "cpus", "pool"), [(0, 1, 0), (0, 2, 1), (0, 8, 7), (1, 8, 0), (3, 2, 3)])
def test_pool_size(workers: int, cpus: int, pool: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """0: a worker per CPU but the node's own; 1: inline; N: N workers."""
    monkeypatch.setattr("verifier.signers.usable_cpus", lambda: cpus)
    assert Signers(PRESET, workers=workers).pool_size == pool
    if workers == 0:
        assert default_pool_size(cpus) == pool


@pytest.mark.parametrize("where", ["inline", "pool", "cache"])
@pytest.mark.parametrize("from_data", [False, True])
def test_the_orders_root_leaves_come_along(where: str, from_data: bool, pooled: Signers) -> None:
    """Whether the orders are encoded here or their encodings come from the batch data."""
    orders = batch(0, 12)
    s = Signers(PRESET, workers=1) if where == "inline" else pooled
    if where == "cache":
        s.for_batch(orders)
    body = codec.encode_batch_body(BatchData(tuple(orders), ()))
    pending = s.submit(orders, codec.signed_order_encodings(body) if from_data else None)
    assert pending.result() == expected(orders)
    assert pending.leaves() == [codec.signed_order_hash(so) for so in orders]


@pytest.fixture
def no_keys_known(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("verifier.signers._PUBLIC_KEYS", {})


def counting_recoveries(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    calls = [0]
    real = signers_module.recover_public_key

    def counted(digest: bytes, signature: bytes) -> bytes:
        calls[0] += 1
        return real(digest, signature)

    monkeypatch.setattr(signers_module, "recover_public_key", counted)
    return calls


def test_orders_of_accounts_seen_before_are_checked_together(no_keys_known: None,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """The first batch recovers every order and learns the traders' keys (not mallory's, who
    signed in t1's name); the next one's orders by those traders are checked together."""
    first = batch(0, 80)
    calls = counting_recoveries(monkeypatch)
    derive_encoded(PRESET, [codec.encode_signed_order(so) for so in first])
    assert calls[0] == 80
    assert sorted(signers_module._PUBLIC_KEYS) == sorted(keys.addr(f"t{i}") for i in range(4))
    honest = [order(f"t{i % 4}", i) for i in range(1000, 1080)] + [order("newcomer", 7)]
    got = derive_encoded(PRESET, [codec.encode_signed_order(so) for so in honest])
    assert calls[0] == 81  # the newcomer alone
    ids, signers = expected(honest)
    assert [(oid, signer) for oid, signer, _ in got] == [(ids[i], signers[i]) for i in range(len(honest))]
    assert keys.addr("newcomer") in signers_module._PUBLIC_KEYS


@pytest.mark.parametrize("bad", ["forged", "junk"])
def test_one_bad_order_among_them_sends_each_to_recovery(bad: str, no_keys_known: None,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    derive_encoded(PRESET, [codec.encode_signed_order(so) for so in batch(0, 8)])
    orders = [order(f"t{i % 4}", i) for i in range(2000, 2080)]
    orders[40] = (order("t0", 2040, signer="mallory") if bad == "forged"
                  else replace(orders[40], signature=orders[40].signature[:64] + b"\x1d"))
    calls = counting_recoveries(monkeypatch)
    got = derive_encoded(PRESET, [codec.encode_signed_order(so) for so in orders])
    assert calls[0] == len(orders)
    ids, signers = expected(orders)
    assert [(oid, signer) for oid, signer, _ in got] == [(ids[i], signers.get(i)) for i in range(80)]
    assert got[40][1] == (keys.addr("mallory") if bad == "forged" else None)


@pytest.mark.parametrize("where", ["inline", "pooled"])
def test_the_cancels_signers_come_along(where: str, pooled: Signers, no_keys_known: None,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """Each cancel's and cancel-all's (digest, signature) -> the signer the STF would recover:
    a forged one's is the forger, a junk one is left out (the STF then refuses it itself). The
    next batch's, the traders' keys known, are checked together and agree."""
    signers = Signers(PRESET, workers=1) if where == "inline" else pooled
    txs = cancels(0, 150)
    got = signers.submit([], txs=[order("t0", 1), *txs]).recovered()  # type: ignore[list-item]
    assert got == expected_recovered(txs)
    assert got[eip712.cancel_digest(PRESET, txs[1].account, txs[1].order_id), txs[1].signature] == keys.addr("mallory")  # type: ignore[union-attr]
    honest = cancels(1000, 150)[3:]
    calls = counting_recoveries(monkeypatch)
    assert signers.submit([], txs=honest).recovered() == expected_recovered(honest)
    if where == "inline":
        assert calls[0] == 0  # all checked together


def test_a_batch_judged_with_its_cancels_signers_handed_over_is_judged_the_same() -> None:
    """apply_batch with `recovered` from Signers gives the same post-state as recovering in the STF."""
    from contracts_spec.state import State
    from contracts_spec.stf import apply_batch
    from sequencer.scenario import BatchBuilder

    b = BatchBuilder(genesis, keys)
    for i in range(4):
        b.deposit(f"t{i}", 10**12)
    env = b.env(genesis.genesis_time + 10)
    b.apply(pre := State.from_genesis(genesis), genesis.genesis_time + 5)
    body = BatchData((), tuple(cancels(0, 12)[3:]))
    one, two = pre.copy(), pre.copy()
    apply_batch(one, body, env)
    apply_batch(two, body, env, recovered=Signers(PRESET, workers=1).submit([], txs=body.txs).recovered())
    assert one.root() == two.root() != pre.root()


def test_orders_no_trade_names_are_not_recovered(no_keys_known: None, monkeypatch: pytest.MonkeyPatch) -> None:
    """Junk orders no trade uses (the STF never checks them) would fail every together-check they
    were in and send its orders to recovery one by one: they get their orders_root leaf only."""
    derive_encoded(PRESET, [codec.encode_signed_order(so) for so in batch(0, 8)])  # the traders' keys
    honest = [order(f"t{i % 4}", i) for i in range(3000, 3080)]
    junk = [replace(order("t2", 4000 + i), signature=b"\xff" * 65) for i in range(3)]
    orders = honest[:10] + junk[:1] + honest[10:50] + junk[1:] + honest[50:]
    used = [i for i, so in enumerate(orders) if so.signature != b"\xff" * 65]
    txs = [Trade(used[j], used[j + 1], 1, 500_000) for j in range(0, len(used), 2)]  # type: ignore[arg-type]
    calls = counting_recoveries(monkeypatch)
    pending = Signers(PRESET, workers=1).submit(orders, txs=txs)
    ids, signers = pending.result()
    assert calls[0] == 0  # the used orders all checked together
    want_ids, want_signers = expected(orders)
    assert ids == {i: want_ids[i] for i in used} and signers == {i: want_signers[i] for i in used}
    assert pending.leaves() == [codec.signed_order_hash(so) for so in orders]


def test_a_message_without_a_digest_is_left_to_the_stf() -> None:
    good = eip712.sign_cancel_all(PRESET, keys["t0"], 5)
    got = derive_messages(PRESET, [(good.account, 2**64, good.signature), (good.account, 5, good.signature)])
    assert got == [(None, None), (eip712.cancel_all_digest(PRESET, good.account, 5), good.account)]
