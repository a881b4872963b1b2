"""The journal: records are acknowledged only once committed, many per commit, and a replay of
them rebuilds the core exactly (book, accounts, outputs, order states)."""

from __future__ import annotations

import asyncio
import random

from contracts_spec import eip712
from contracts_spec.codec import encode_tx
from contracts_spec.types import Cancel, OraclePrice, Order, SignedOrder, TimeInForce
from sequencer.core import Core, Kind, encode_oracle, encode_place, encode_queue
from sequencer.journal import Journal
from sequencer.node import recover_core
from sequencer.scenario import Keys, dev_genesis

PRICE = 500_000


def snapshot(core: Core, accounts: list[bytes]) -> tuple[object, ...]:
    return (core.levels(0, 1000), [core.margin(a) for a in accounts], [repr(o) for o in core.outputs],
            {oid: (core.order_status(i), i.filled) for oid, i in core.orders.items()}, core.seq)


async def drive(core: Core, accounts: list[bytes], rng: random.Random) -> list[int]:
    tx = OraclePrice(0, core.now, ())
    core.execute(Kind.ORACLE, encode_oracle(tx, PRICE), (tx, PRICE))
    for i, a in enumerate(accounts):
        core.execute(Kind.DEPOSIT, encode_queue(i, a, 10**12), (i, a, 10**12))
    resting: list[tuple[bytes, bytes]] = []
    seqs = []
    for n in range(2_000):
        a = accounts[rng.randrange(len(accounts))]
        if resting and rng.random() < 0.2:
            account, oid = resting.pop(rng.randrange(len(resting)))
            c = Cancel(account, oid, bytes(65))  # the core trusts intake's signature checks
            seqs.append(core.execute(Kind.CANCEL, encode_tx(c), (c,)).seq)
            continue
        o = Order(a, 0, rng.random() < 0.5, PRICE + rng.randint(-30, 30), rng.randint(1, 9),  # type: ignore[arg-type]
                  TimeInForce(rng.choice((0, 0, 1, 3))), False, 0, n, 0)
        so = SignedOrder(o, bytes(65))
        oid = n.to_bytes(32, "big")
        out = core.execute(Kind.PLACE, encode_place(so, oid, 0, False), (so, oid, 0, False))
        seqs.append(out.seq)
        if out.reject is None and core.engine.order(a, oid) is not None:
            resting.append((a, oid))
        if n % 100 == 0:
            await asyncio.sleep(0)
    await core.durable(seqs[-1])
    return seqs


def test_group_commit_and_replay_equals_live(db: tuple[str, str | None]) -> None:
    genesis = dev_genesis(Keys())
    accounts = [bytes([0xAB]) + i.to_bytes(19, "big") for i in range(8)]
    journal = Journal.open(db[0], db[1])
    live = Core(genesis, journal)

    async def run() -> None:
        live.attach(asyncio.get_running_loop())
        journal.start()
        await drive(live, accounts, random.Random(7))

    asyncio.run(run())
    journal.close()
    assert journal.committed == live.seq and journal.commits < journal.committed  # grouped
    assert live.counters["fills"] > 100 and any(i.cancelled_by for i in live.orders.values())
    replayed = recover_core(genesis, Journal.open(db[0], db[1]))
    assert snapshot(replayed, accounts) == snapshot(live, accounts)


def test_nothing_is_acknowledged_before_its_commit(db: tuple[str, str | None]) -> None:
    genesis = dev_genesis(Keys())
    journal = Journal.open(db[0], db[1])
    core = Core(genesis, journal)
    key = Keys()["alice"]

    async def run() -> None:
        core.attach(asyncio.get_running_loop())
        o = Order(Keys().addr("alice"), 0, True, PRICE, 1, TimeInForce.GTC, False, 0, 1, 0)  # type: ignore[arg-type]
        so = eip712.sign_order(genesis.preset, o, key)
        oid = eip712.order_digest(genesis.preset, o)
        seq = core.execute(Kind.PLACE, encode_place(so, oid, 0, False), (so, oid, 0, False)).seq
        ack = core.durable(seq)
        await asyncio.sleep(0.05)
        assert not ack.done()  # the writer is not running: nothing committed, nothing acknowledged
        journal.start()
        await ack
        assert core.durable_seq >= seq

    asyncio.run(run())
    journal.close()
    assert [r.seq for r in Journal.open(db[0], db[1]).replay()] == [1]
