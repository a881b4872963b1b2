"""The intake's signature recovery: inline, in worker chunks, and single messages batched per loop turn
give the same answers as the spec's own recovery, malformed and high-s signatures included."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from contracts_spec import eip712
from contracts_spec.crypto import SECP256K1_N, address_of_private_key, private_key_from_seed
from contracts_spec.types import Order, TimeInForce
from sequencer.errors import ApiError
from sequencer.intake import CHECKED_LEN, SIGNER_REFUSED_LEN, Verifier, parse_order, signed_order_of
from sequencer.scenario import Keys, dev_genesis


def signed_pairs(n: int) -> tuple[list[tuple[bytes, bytes]], list[bytes | None]]:
    """n (digest, signature) pairs with the address each should recover: every 5th is forged."""
    preset = dev_genesis(Keys()).preset
    pairs: list[tuple[bytes, bytes]] = []
    expected: list[bytes | None] = []
    for i in range(n):
        key = private_key_from_seed(b"intake%d" % (i % 3))
        account = address_of_private_key(key)
        order = Order(account, 0, i % 2 == 0, 100 + i, 1, TimeInForce.GTC, False, 0, i, 0)  # type: ignore[arg-type]
        signed = eip712.sign_order(preset, order, key)
        digest = eip712.order_digest(preset, order)
        sig = signed.signature
        if i % 5 == 4:  # s -> n - s: the same point, refused as high-s
            s = int.from_bytes(sig[32:64], "big")
            sig = sig[:32] + (SECP256K1_N - s).to_bytes(32, "big") + bytes([sig[64] ^ 1])
            expected.append(None)
        elif i % 7 == 6:  # garbage r
            sig = b"\xff" * 32 + sig[32:]
            expected.append(None)
        else:
            expected.append(account)
        pairs.append((digest, sig))
    return pairs, expected


async def together(verifier: Verifier, pairs: list[tuple[bytes, bytes]]) -> list[bytes | None]:
    """Every pair in one turn of the loop: one chunk, on a worker when there is one (and
    `inline_below` is at most len(pairs))."""
    return list(await asyncio.gather(*(verifier.recover(d, s) for d, s in pairs)))


def test_every_mode_recovers_the_same_signers() -> None:
    pairs, expected = signed_pairs(40)

    async def run(workers: int) -> list[bytes | None]:
        verifier = Verifier(workers, inline_below=4)  # 40 singles in one turn: one chunk on the worker
        try:
            return await together(verifier, pairs)
        finally:
            verifier.close()

    for workers in (0, 1):
        assert [a if a is None else bytes(a) for a in asyncio.run(run(workers))] == expected


def test_a_lone_message_is_recovered_inline_even_with_workers() -> None:
    pairs, expected = signed_pairs(3)

    async def run() -> list[bytes | None]:
        verifier = Verifier(1)
        try:
            out = [await verifier.recover(d, s) for d, s in pairs]  # one per turn: below inline_below
            assert verifier.pool is not None and not verifier.pool._processes  # no worker was ever started
            return out
        finally:
            verifier.close()

    assert asyncio.run(run()) == expected


CHILD = """
import asyncio, sys, time
sys.path.insert(0, {root!r}); sys.path.insert(0, {here!r})
from test_intake_verifier import signed_pairs, together
from sequencer.intake import Verifier
if __name__ == "__main__":  # the spawned worker imports this file too
    v = Verifier(1, inline_below=4)
    asyncio.run(together(v, signed_pairs(10)[0]))
    print(*v.pool._processes, flush=True)
    time.sleep(600)
"""


def test_a_worker_leaves_when_the_sequencer_is_killed(tmp_path: Path) -> None:
    here = Path(__file__).parent
    script = tmp_path / "child.py"
    script.write_text(CHILD.format(root=str(here.parent.parent), here=str(here)))
    parent = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True)
    try:
        assert parent.stdout is not None
        workers = [int(p) for p in parent.stdout.readline().split()]
        assert workers and all(Path(f"/proc/{w}").exists() for w in workers)
    finally:
        parent.kill()
        parent.wait()
    for _ in range(600):  # bounded wait for the orphan to notice; not a timing assertion
        if not any(_alive(w) for w in workers):
            break
        time.sleep(0.1)
    assert not any(_alive(w) for w in workers), "a signature worker outlived its sequencer"


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def test_a_dead_worker_costs_one_inline_chunk_and_a_new_pool() -> None:
    pairs, expected = signed_pairs(20)

    async def run() -> tuple[list[bytes | None], list[bytes | None]]:
        verifier = Verifier(1, inline_below=4)
        try:
            first = await together(verifier, pairs)
            original = verifier.pool
            assert original is not None
            for worker in list(original._processes.values()):
                worker.kill()
                worker.join()
            second = await together(verifier, pairs)  # broken pool: inline, then a new pool
            assert verifier.pool is not original
            third = await together(verifier, pairs)
            return first, second + third
        finally:
            verifier.close()

    first, later = asyncio.run(run())
    assert first == expected and later == expected + expected


# --- the batch endpoint's checks: inline and on workers ---------------------------------------------

PRESET = dev_genesis(Keys()).preset
SYMBOLS = {"BTC-USD": 0, "ETH-USD": 1}


def wire(i: int, market: Any = 0, key_seed: bytes | None = None, **fields: Any) -> dict[str, Any]:
    """A signed order in its wire form, signed by `key_seed`'s key (default: its own account's)."""
    key = private_key_from_seed(b"intake%d" % (i % 3))
    account = address_of_private_key(key)
    mid = market if market.__class__ is int else {**SYMBOLS, "ETH": 1, "SOL": 2}[market]
    order = Order(account, mid, i % 2 == 0, 100 + i, 1 + i % 4, TimeInForce(i % 4), i % 5 == 0, 7 * i, i, 3 * i)  # type: ignore[arg-type]
    signed = eip712.sign_order(PRESET, order, private_key_from_seed(key_seed) if key_seed else key)
    return {"account": "0x" + account.hex(), "market": market, "isBuy": order.is_buy, "price": order.price,
            "lots": str(order.lots) if i % 3 == 0 else order.lots, "tif": TimeInForce(order.tif).name,
            "reduceOnly": order.reduce_only, "expiry": order.expiry, "nonce": order.nonce,
            "clientId": order.client_id, "signature": "0x" + signed.signature.hex(), **fields}


class Poison:
    """Kills the worker process that unpickles it (a worker that dies mid-batch); inline it is
    just not a JSON object."""

    def __reduce__(self) -> tuple[Any, ...]:
        return os._exit, (1,)


def mixed_orders() -> list[Any]:
    """Good orders (by id and by symbol, every time in force) among one of every stateless refusal."""
    good = wire(1)
    high_s = bytes.fromhex(good["signature"][2:])
    s = int.from_bytes(high_s[32:64], "big")
    high_s = high_s[:32] + (SECP256K1_N - s).to_bytes(32, "big") + bytes([high_s[64] ^ 1])
    bad: list[Any] = [
        {**good, "price": 500000.5}, {**good, "lots": 1.0}, {**good, "lots": -1}, {**good, "price": "5e5"},
        {**good, "lots": 1 << 64}, {**good, "lots": True}, {**good, "lots": 0}, {**good, "leverage": 10},
        {k: v for k, v in good.items() if k != "signature"}, {**good, "market": 7}, {**good, "market": "DOGE-USD"},
        {**good, "market": 2}, wire(2, key_seed=b"someone else"), {**good, "lots": 9},
        {**good, "signature": "0x" + "11" * 65}, {**good, "signature": "0x1234"}, {**good, "signature": "0x" + high_s.hex()},
        {**good, "tif": "FOREVER"}, {**good, "tif": 4}, {**good, "isBuy": 1}, {**good, "account": "0x12"},
        {**good, "nonce": "-1"}, {**good, "expiry": None}, [good], "order", None,
    ]
    out: list[Any] = []
    for i, b in enumerate(bad):
        out += [wire(10 + i, market=("BTC-USD", "ETH", 0, 1)[i % 4]), b]
    return out


def _check(workers: int, raws: list[Any], symbols: dict[str, int], markets: Any, chunk: int = 8
           ) -> list[tuple[Any, ...]]:
    async def run() -> list[tuple[Any, ...]]:
        verifier = Verifier(workers, chunk=chunk)
        try:
            parts = verifier.check_orders(PRESET, symbols, markets, raws)
            return [item for part in parts for item in await part]
        finally:
            verifier.close()

    return asyncio.run(run())


def test_batch_checks_agree_inline_and_on_workers() -> None:
    raws = mixed_orders()
    inline = _check(0, raws, SYMBOLS, {0, 1})
    assert _check(1, raws, SYMBOLS, {0, 1}) == inline  # in chunks of 8 on the worker
    assert len(inline) == len(raws)
    codes = [item[0] if len(item) != CHECKED_LEN else "ok" for item in inline]
    assert codes[0::2] == ["ok"] * (len(raws) // 2)
    assert codes[1::2] == ["malformed"] * 9 + ["unknown_market"] * 3 + ["wrong_signer"] * 2 + [
        "bad_signature", "malformed", "bad_signature"] + ["malformed"] * 9
    refused_on_signer = [item for item in inline if len(item) == SIGNER_REFUSED_LEN]
    assert [item[:1] + item[2:3] for item in refused_on_signer] == [("wrong_signer", 403)] * 2 + [("bad_signature", 401)] * 2
    for raw, item in zip(raws[0::2], inline[0::2], strict=True):
        signed = signed_order_of(item)
        assert item[-1] == eip712.order_digest(PRESET, signed.order)
        assert signed == parse_order(raw, SYMBOLS, {0, 1})
    for raw, item in zip(raws, inline, strict=True):
        if len(item) == 3:  # refused before an id: the same refusal as the single-order endpoint's parse
            with pytest.raises(ApiError) as info:
                parse_order(raw, SYMBOLS, {0, 1})
            assert (info.value.code, info.value.message, info.value.status) == item


def test_a_market_added_later_is_seen_by_the_workers() -> None:
    raws = [wire(i, market=("SOL", 2)[i % 2]) for i in range(16)]

    async def run() -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
        verifier = Verifier(1, chunk=8)
        symbols, markets = dict(SYMBOLS), {0, 1}
        try:
            before = [item for part in verifier.check_orders(PRESET, symbols, markets, raws) for item in await part]
            symbols["SOL-USD"] = 2  # governance adds the market: the same worker sees it on the next request
            markets.add(2)
            after = [item for part in verifier.check_orders(PRESET, symbols, markets, raws) for item in await part]
            return before, after
        finally:
            verifier.close()

    before, after = asyncio.run(run())
    assert [item[:1] for item in before] == [("unknown_market",)] * 16
    assert [item[1] for item in after] == [2] * 16 and all(len(item) == CHECKED_LEN for item in after)


def test_a_worker_dying_mid_batch_leaves_every_order_answered() -> None:
    raws: list[Any] = mixed_orders()
    raws.insert(len(raws) // 2, Poison())

    async def run() -> tuple[list[tuple[Any, ...]], bool]:
        verifier = Verifier(1, chunk=8, inline_below=4)
        try:
            await together(verifier, signed_pairs(8)[0])  # the worker is up
            original = verifier.pool
            parts = verifier.check_orders(PRESET, SYMBOLS, {0, 1}, raws)
            items = [item for part in parts for item in await part]
            replaced = verifier.pool is not original
            assert await together(verifier, signed_pairs(8)[0]) == signed_pairs(8)[1]  # the new pool works
            return items, replaced
        finally:
            verifier.close()

    items, replaced = asyncio.run(run())
    assert replaced
    assert items == _check(0, raws, SYMBOLS, {0, 1})
    assert items[len(raws) // 2][:2] == ("malformed", "order must be a JSON object")
