"""The intake's signature recovery: inline, in worker chunks, and single messages batched per loop turn
give the same answers as the spec's own recovery, malformed and high-s signatures included."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from pathlib import Path

from contracts_spec import eip712
from contracts_spec.crypto import SECP256K1_N, address_of_private_key, private_key_from_seed
from contracts_spec.types import Order, TimeInForce
from sequencer.intake import Verifier
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


def test_every_mode_recovers_the_same_signers() -> None:
    pairs, expected = signed_pairs(40)

    async def run(workers: int) -> tuple[list[bytes | None], list[bytes | None]]:
        verifier = Verifier(workers, inline_below=4)  # 40 singles in one turn: one chunk on the worker
        try:
            many = await verifier.recover_many(pairs)
            singles = await asyncio.gather(*(verifier.recover(d, s) for d, s in pairs))  # one loop turn: a chunk
            return many, list(singles)
        finally:
            verifier.close()

    for workers in (0, 1):
        many, singles = asyncio.run(run(workers))
        assert [a if a is None else bytes(a) for a in many] == expected
        assert [a if a is None else bytes(a) for a in singles] == expected


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
from test_intake_verifier import signed_pairs
from sequencer.intake import Verifier
if __name__ == "__main__":  # the spawned worker imports this file too
    v = Verifier(1)
    asyncio.run(v.recover_many(signed_pairs(10)[0]))
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
        verifier = Verifier(1)
        try:
            first = await verifier.recover_many(pairs)
            original = verifier.pool
            assert original is not None
            for worker in list(original._processes.values()):
                worker.kill()
                worker.join()
            second = await verifier.recover_many(pairs)  # broken pool: inline, then a new pool
            assert verifier.pool is not original
            third = list(await asyncio.gather(*(verifier.recover(d, s) for d, s in pairs)))
            return first, second + third
        finally:
            verifier.close()

    first, later = asyncio.run(run())
    assert first == expected and later == expected + expected
