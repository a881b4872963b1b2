"""The chain over HTTP: blocks and time, signed transactions, refusals that change nothing,
events paged and kept across restarts."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from contracts_spec.params import MAINNET
from l1_mock.client import L1Client, L1Error
from l1_mock.envelope import hex0x, sign_tx
from l1_mock.errors import Forbidden
from sequencer.scenario import Keys, dev_genesis

from .conftest import NATIVE, T0, Node


def snapshot(c: L1Client, *addresses: bytes) -> dict[str, Any]:
    """Everything a refused transaction must leave unchanged."""
    info = c.info()
    events, _ = c.events(limit=1000)
    return {
        "head": (info["head_block"], info["head_time"]),
        "accounts": [c.account(a) for a in addresses],
        "events": len(events),
        "rollup": c.rollup(),
    }


def test_info_blocks_and_time(node: Node) -> None:
    c = node.client()
    info = c.info()
    assert info["chain_id"] == 31337 and info["preset"] == "dev" and info["head_block"] == 0
    assert info["time"] == T0 and c.block(0)["timestamp"] == T0
    assert c.increase_time(100) == {"block": 1, "time": T0 + 100}
    assert c.now() == T0 + 100 and c.block()["number"] == 1
    assert c.genesis() == node.genesis


def test_the_api_document_says_what_is_answered(node: Node) -> None:
    """A request that does not validate is a 400 {"error": {"code": "malformed"}}, and the OpenAPI
    document says so instead of FastAPI's default 422."""
    r = httpx.get(node.url + "/blocks/latest-ish")
    assert r.status_code == 400 and r.json()["error"]["code"] == "malformed"
    spec = httpx.get(node.url + "/openapi.json").json()
    assert spec["paths"]["/blocks/{number}"]["get"]["responses"]["400"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/Error"}
    assert "HTTPValidationError" not in httpx.get(node.url + "/openapi.json").text
    assert all("422" not in op["responses"] for path in spec["paths"].values() for m, op in path.items() if m == "get")


def test_faucet_transfer_and_nonces(node: Node, keys: Keys) -> None:
    alice, bob = node.client(keys["alice"]), node.client(keys["bob"])
    r = alice.faucet(native=5 * NATIVE, usdc=1_000)
    assert r["block"] == 1 and r["events"][0]["name"] == "Faucet"
    alice.transfer("usdc", keys.addr("bob"), 400)
    alice.transfer("native", keys.addr("bob"), NATIVE)
    assert alice.account(keys.addr("alice")) | {} == {
        "address": hex0x(keys.addr("alice")), "nonce": 3, "native": 4 * NATIVE, "usdc": 600, "credit": 0}
    assert bob.account(keys.addr("bob"))["usdc"] == 400
    assert bob.receipt(r["tx_hash"])["result"]["usdc"] == 1_000
    assert c_blocks(alice) == 3  # instant mode: a block per transaction


def c_blocks(c: L1Client) -> int:
    return int(c.info()["head_block"])


def raw(node: Node, body: Any) -> httpx.Response:
    return httpx.post(node.url + "/tx", json=body)


REFUSALS = [
    # (name, how to build the body from a valid one, status, code)
    ("bad signature", lambda b, k: {**b, "signature": sign_tx(k["mallory"], 31337, b["sender"], 0, "faucet", b["args"])["signature"]}, 401, "bad_signature"),
    ("garbled signature", lambda b, k: {**b, "signature": "0x" + "11" * 65}, 401, "bad_signature"),
    ("signature over other args", lambda b, k: {**b, "args": {"native": 2}}, 401, "bad_signature"),
    ("wrong chain id", lambda b, k: sign_tx(k["alice"], 1, b["sender"], 0, "faucet", b["args"]), 401, "bad_signature"),
    ("reused nonce", lambda b, k: sign_tx(k["alice"], 31337, b["sender"], 0, "faucet", b["args"]), 409, "bad_nonce"),
    ("future nonce", lambda b, k: sign_tx(k["alice"], 31337, b["sender"], 5, "faucet", b["args"]), 409, "bad_nonce"),
    ("unknown method", lambda b, k: sign_tx(k["alice"], 31337, b["sender"], 1, "mint_everything", {}), 400, "unknown_method"),
    ("extra argument", lambda b, k: sign_tx(k["alice"], 31337, b["sender"], 1, "faucet", {"native": 1, "x": 1}), 400, "malformed"),
    ("negative amount", lambda b, k: sign_tx(k["alice"], 31337, b["sender"], 1, "transfer", {"token": "usdc", "to": b["sender"], "amount": -1}), 400, "malformed"),
    ("string amount", lambda b, k: sign_tx(k["alice"], 31337, b["sender"], 1, "transfer", {"token": "usdc", "to": b["sender"], "amount": "5"}), 400, "malformed"),
    ("float amount", lambda b, k: {**b, "args": {"native": 1.0}}, 400, "malformed"),
    ("unknown token", lambda b, k: sign_tx(k["alice"], 31337, b["sender"], 1, "transfer", {"token": "btc", "to": b["sender"], "amount": 1}), 400, "malformed"),
    ("insufficient balance", lambda b, k: sign_tx(k["alice"], 31337, b["sender"], 1, "transfer", {"token": "usdc", "to": b["sender"], "amount": 10**9}), 402, "insufficient_balance"),
    ("missing field", lambda b, k: {x: v for x, v in b.items() if x != "nonce"}, 400, "malformed"),
    ("bad sender", lambda b, k: {**b, "sender": "0x1234"}, 400, "malformed"),
    ("not an object", lambda b, k: [1, 2], 400, "malformed"),
]


@pytest.mark.parametrize("name,mutate,status,code", REFUSALS, ids=[r[0] for r in REFUSALS])
def test_refusals_change_nothing(node: Node, keys: Keys, name: str, mutate: Any, status: int, code: str) -> None:
    alice = node.client(keys["alice"])
    alice.faucet(native=1, usdc=100)  # nonce 0 used
    valid = sign_tx(keys["alice"], 31337, hex0x(keys.addr("alice")), 1, "faucet", {"native": 1})
    before = snapshot(alice, keys.addr("alice"), keys.addr("mallory"))
    r = raw(node, mutate(valid, keys) if "nonce" not in name and name not in ("bad signature",) else mutate(valid, keys))
    assert r.status_code == status, r.text
    assert r.json()["error"]["code"] == code
    assert snapshot(alice, keys.addr("alice"), keys.addr("mallory")) == before
    # ... and the valid transaction still goes through afterwards
    assert raw(node, valid).status_code == 200


def test_client_retries_a_stale_nonce(node: Node, keys: Keys) -> None:
    a1, a2 = node.client(keys["alice"]), node.client(keys["alice"])
    a1.faucet(native=1)
    a2.faucet(native=1)  # a2 fetched its nonce; a1's cache is now stale
    a1.faucet(native=1)  # refused as bad_nonce once, retried with the chain's nonce
    assert a1.account(keys.addr("alice"))["native"] == 3


def test_time_travel_refused_on_mainnet(node_factory: Any, keys: Keys) -> None:
    node = node_factory(dev_genesis(keys, preset=MAINNET, genesis_time=T0), manual_time=False)
    c = node.client(keys["alice"])
    before = c.info()["head_block"]
    with pytest.raises(L1Error) as e:
        c.increase_time(10)
    assert (e.value.status, e.value.code) == (403, "time_travel_disabled")
    with pytest.raises(L1Error) as e:
        c.faucet(native=1)
    assert e.value.code == "dev_only"
    assert c.info()["head_block"] == before


def test_manual_time_refused_on_mainnet(db: Any, keys: Keys) -> None:
    from l1_mock.chain import Chain
    from l1_mock.db import make_engine

    from .conftest import make_settings

    engine = make_engine(db[0], db[1])
    with pytest.raises(Forbidden):
        Chain(engine, make_settings(db), dev_genesis(keys, preset=MAINNET, genesis_time=T0))
    engine.dispose()


def test_block_time_mode_groups_transactions(node_factory: Any, genesis: Any, keys: Keys) -> None:
    node = node_factory(genesis, block_time=12)
    c = node.client(keys["alice"])
    r1, r2 = c.faucet(native=1), c.faucet(native=1)
    assert r1["block"] == r2["block"] == 1 and r1["time"] == T0
    c.increase_time(5)  # mines block 2 at T0 + 5 ...
    r3 = c.faucet(native=1)  # ... but transactions land on the 12-second slot grid
    c.increase_time(7)
    r4 = c.faucet(native=1)
    assert r3["time"] == T0 + 5 and r4["time"] == T0 + 12 and r4["block"] > r3["block"]
    assert c.block(r1["block"])["tx_count"] == 2


def test_events_paged_and_filtered(node: Node, keys: Keys) -> None:
    c = node.client(keys["alice"])
    for _ in range(25):
        c.faucet(native=1)
    c.transfer("native", keys.addr("bob"), 1)
    page, cursor = c.events(limit=10)
    assert [e.name for e in page] == ["Faucet"] * 10 and cursor == page[-1].id
    assert len(list(c.follow())) == 26
    assert [e.name for e in c.follow(names=["Transfer"])] == ["Transfer"]
    late, _ = c.events(from_block=20)
    assert [e.block for e in late] == list(range(20, 27))


def test_events_and_state_survive_restart(node: Node, keys: Keys) -> None:
    c = node.client(keys["alice"])
    for _ in range(5):
        c.faucet(native=7, usdc=3)
    c.increase_time(42)
    before = (list(c.follow()), c.account(keys.addr("alice")), c.info()["head_block"], c.now())
    node.restart()
    c = node.client(keys["alice"])
    assert (list(c.follow()), c.account(keys.addr("alice")), c.info()["head_block"], c.now()) == before
    c.faucet(native=1)  # the nonce carried over
    assert c.account(keys.addr("alice"))["nonce"] == 6


def test_restart_with_another_genesis_is_refused(node: Node, keys: Keys) -> None:
    from l1_mock.chain import Chain
    from l1_mock.errors import Refused

    node.stop()
    other = dev_genesis(keys, genesis_time=T0 + 1)
    with pytest.raises(Refused):
        Chain(node_engine(node), node.settings, other)


def node_engine(node: Node) -> Any:
    from l1_mock.db import make_engine

    return make_engine(node.settings.db, node.settings.db_schema)


def test_not_found_reads(node: Node) -> None:
    c = node.client()
    for call in (lambda: c.block(99), lambda: c.batch(1), lambda: c.game(1), lambda: c.receipt("0x00")):
        with pytest.raises(L1Error) as e:
            call()
        assert (e.value.status, e.value.code) == (404, "not_found")
    assert c.deposit_entry(0) is None
