"""Sequencer-service fixtures: a real base layer and a real sequencer, each served over HTTP on
127.0.0.1 by uvicorn in a thread; the journal on SQLite and, when RAMPART_TEST_PG is set, also
on PostgreSQL in a fresh schema per test. Traders sign with the spec's EIP-712 helpers.
"""

from __future__ import annotations

import json
import os
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from sqlalchemy import create_engine, text
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from contracts_spec import eip712
from contracts_spec.types import Genesis, Order, TimeInForce
from harness.procs import free_port
from l1_mock.api import create_app as create_l1_app
from l1_mock.chain import Chain
from l1_mock.client import L1Client
from l1_mock.db import make_engine as make_l1_engine
from l1_mock.settings import Settings as L1Settings
from sequencer.api import create_app
from sequencer.node import Node
from sequencer.scenario import ORACLE_NAMES, Keys, dev_genesis
from sequencer.settings import Settings

PG_URL = os.environ.get("RAMPART_TEST_PG")
T0 = 1_700_000_000
NATIVE = 10**18
USDC = 10**6
BTC = 0


def wait_for(predicate: Callable[[], Any], what: str, bound: float = 60.0) -> Any:
    """Poll until `predicate()` is truthy (bounded; never a timing assertion)."""
    deadline = time.monotonic() + bound
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for {what}")
        time.sleep(0.02)


class Served:
    """An ASGI app on a free 127.0.0.1 port, in a thread."""

    def __init__(self, app: Any, lifespan: str = "on") -> None:
        self.port = free_port()
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning",
                                                    lifespan=lifespan, ws="websockets-sansio"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        while not self.server.started:
            if not self.thread.is_alive():
                raise RuntimeError("uvicorn did not start")
            self.thread.join(0.01)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(30)


@dataclass
class Net:
    """A base layer and a sequencer on it; `restart()` reopens the sequencer on the same journal."""

    genesis: Genesis
    keys: Keys
    db: tuple[str, str | None]
    tmp: Path
    overrides: dict[str, Any] = field(default_factory=dict)
    l1: Served | None = None
    chain: Chain | None = None
    seq: Served | None = None
    node: Node | None = None
    http: httpx.Client | None = None

    def start_l1(self) -> None:
        settings = L1Settings(db=f"sqlite:///{self.tmp / 'l1.db'}", manual_time=True)
        self.chain = Chain(make_l1_engine(settings.db), settings, self.genesis)
        self.l1 = Served(create_l1_app(self.chain), lifespan="off")

    def settings(self) -> Settings:
        assert self.l1 is not None
        return Settings(**{"l1_url": self.l1.url, "db": self.db[0], "db_schema": self.db[1], "batch_interval": 0.1,
                           "follow_interval": 0.1, **self.overrides})

    def start_seq(self) -> Net:
        settings = self.settings()
        self.node = Node(settings, L1Client(settings.l1_url, settings.key_bytes()))
        self.seq = Served(create_app(self.node))
        self.http = httpx.Client(base_url=self.seq.url, timeout=60)
        return self

    def stop_seq(self) -> None:
        if self.http is not None:
            self.http.close()
            self.http = None
        if self.seq is not None:
            self.seq.stop()
            self.seq = None

    def restart(self) -> Net:
        self.stop_seq()
        return self.start_seq()

    def stop(self) -> None:
        self.stop_seq()
        if self.l1 is not None:
            self.l1.stop()
            self.l1 = None
        if self.chain is not None:
            self.chain.engine.dispose()

    # --- helpers over HTTP ---

    def l1_client(self, name: str | None = None) -> L1Client:
        assert self.l1 is not None
        return L1Client(self.l1.url, self.keys[name] if name else None)

    def now(self) -> int:
        assert self.http is not None
        return int(self.http.get("/v1/time").json()["time"])

    def advance(self, seconds: int) -> None:
        """Move the base layer's clock and wait until the sequencer saw it."""
        with self.l1_client() as c:
            target = int(c.increase_time(seconds)["time"])
        wait_for(lambda: self.now() >= target, "the sequencer to see the new time")

    def deposit(self, name: str, amount: int) -> None:
        assert self.node is not None
        with self.l1_client(name) as c:
            c.faucet(native=NATIVE, usdc=amount)
            c.deposit(amount)
        address = self.keys.addr(name)
        wait_for(lambda: self.node.core.margin(address)["collateral"] >= amount, f"deposit of {name}")

    def oracle(self, market: int, price: int, time_: int | None = None) -> dict[str, Any]:
        assert self.http is not None
        t = self.now() if time_ is None else time_
        reports = [report_wire(self.genesis, self.keys[n], market, price, t) for n in ORACLE_NAMES[:2]]
        r = self.http.post("/v1/oracle/reports", json={"reports": reports})
        assert r.status_code == 200, r.text
        return dict(r.json())

    def auth(self, name: str) -> dict[str, str]:
        ts = self.now()
        sig = eip712.sign_subscribe(self.genesis.preset, self.keys[name], ts)
        return {"X-Rampart-Timestamp": str(ts), "X-Rampart-Signature": "0x" + sig.hex()}

    def private(self, name: str, what: str) -> Any:
        assert self.http is not None
        r = self.http.get(f"/v1/accounts/0x{self.keys.addr(name).hex()}/{what}", headers=self.auth(name))
        assert r.status_code == 200, r.text
        return r.json()


def report_wire(genesis: Genesis, key: bytes, market: int, price: int, t: int) -> dict[str, Any]:
    r = eip712.sign_oracle_report(genesis.preset, key, market, price, t)
    return {"market": r.market, "price": r.price, "time": r.time, "signature": "0x" + r.signature.hex()}


class Trader:
    """Signs orders, cancels and withdrawals for one named key."""

    def __init__(self, keys: Keys, genesis: Genesis, name: str) -> None:
        self.key = keys[name]
        self.address = keys.addr(name)
        self.preset = genesis.preset
        self.nonce = 0

    def order(self, is_buy: bool, price: int, lots: int, market: int = BTC, tif: str = "GTC",
              reduce_only: bool = False, expiry: int = 0, nonce: int | None = None, client_id: int = 0,
              key: bytes | None = None) -> dict[str, Any]:
        if nonce is None:
            self.nonce += 1
            nonce = self.nonce
        o = Order(self.address, market, is_buy, price, lots, TimeInForce[tif], reduce_only, expiry, nonce,  # type: ignore[arg-type]
                  client_id)
        so = eip712.sign_order(self.preset, o, key or self.key)
        return {"account": "0x" + self.address.hex(), "market": market, "isBuy": is_buy, "price": price, "lots": lots,
                "tif": tif, "reduceOnly": reduce_only, "expiry": expiry, "nonce": nonce, "clientId": client_id,
                "signature": "0x" + so.signature.hex()}

    def order_id(self, wire: dict[str, Any]) -> str:
        o = Order(self.address, wire["market"], wire["isBuy"], wire["price"], wire["lots"], TimeInForce[wire["tif"]],
                  wire["reduceOnly"], wire["expiry"], wire["nonce"], wire["clientId"])
        return "0x" + eip712.order_digest(self.preset, o).hex()

    def cancel(self, order_id: str, key: bytes | None = None) -> dict[str, Any]:
        c = eip712.sign_cancel(self.preset, key or self.key, bytes.fromhex(order_id[2:]))
        return {"account": "0x" + self.address.hex(), "orderId": order_id, "signature": "0x" + c.signature.hex()}

    def cancel_all(self, floor: int) -> dict[str, Any]:
        c = eip712.sign_cancel_all(self.preset, self.key, floor)
        return {"account": "0x" + self.address.hex(), "nonceFloor": floor, "signature": "0x" + c.signature.hex()}

    def withdraw(self, amount: int, nonce: int) -> dict[str, Any]:
        w = eip712.sign_withdraw(self.preset, self.key, amount, nonce)
        return {"account": "0x" + self.address.hex(), "amount": amount, "nonce": nonce,
                "signature": "0x" + w.signature.hex()}


@pytest.fixture(params=["sqlite"] + (["postgresql"] if PG_URL else []))
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, str | None]]:
    """(url, schema): a fresh SQLite file, or a fresh PostgreSQL schema dropped afterwards."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'journal.db'}", None
        return
    assert PG_URL is not None
    schema = "seqtest_" + uuid.uuid4().hex[:12]
    yield PG_URL, schema
    engine = create_engine(PG_URL)
    with engine.begin() as conn:
        conn.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
    engine.dispose()


@pytest.fixture
def keys() -> Keys:
    return Keys()


@pytest.fixture
def genesis(keys: Keys) -> Genesis:
    return dev_genesis(keys, genesis_time=T0)


@pytest.fixture
def net_factory(db: tuple[str, str | None], tmp_path: Path, keys: Keys, genesis: Genesis) -> Iterator[Any]:
    nets: list[Net] = []

    def make(**overrides: Any) -> Net:
        net = Net(genesis, keys, db, tmp_path, overrides)
        nets.append(net)
        net.start_l1()
        return net.start_seq()

    yield make
    for n in nets:
        n.stop()


@pytest.fixture
def net(net_factory: Any) -> Net:
    return net_factory()


@pytest.fixture
def trader(keys: Keys, genesis: Genesis) -> Callable[[str], Trader]:
    return lambda name: Trader(keys, genesis, name)


class Feed:
    """A WebSocket client on the sequencer's /ws that sends `subscriptions`, waits for one snapshot
    each and keeps every message it receives."""

    def __init__(self, net: Net, subscriptions: list[dict[str, Any]]) -> None:
        self.messages: list[dict[str, Any]] = []
        self.stack = ExitStack()  # the websockets client, as it wants to be used: a context
        self.ws = self.stack.enter_context(connect(net.seq.url.replace("http", "ws") + "/ws"))  # type: ignore[union-attr]
        for sub in subscriptions:
            self.ws.send(json.dumps({"op": "subscribe", **sub}))
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()
        wait_for(lambda: sum(m["type"] == "snapshot" for m in list(self.messages)) == len(subscriptions), "snapshots")

    def _read(self) -> None:
        try:
            while True:
                self.messages.append(json.loads(self.ws.recv()))
        except (ConnectionClosed, OSError):
            return

    def of(self, channel: str, type_: str = "update", kind: str | None = None) -> list[dict[str, Any]]:
        return [m for m in list(self.messages) if m["type"] == type_ and m.get("channel") == channel
                and (kind is None or m.get("kind") == kind)]

    def close(self) -> None:
        self.stack.close()
        self.thread.join(10)
