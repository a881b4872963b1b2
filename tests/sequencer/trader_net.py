"""A real `rampart-l1` and a real `rampart-sequencer`, as processes on free 127.0.0.1 ports, for the
trader tools' tests: started per test, stopped (and killed if need be) after it, on SQLite and, when
RAMPART_TEST_PG is set, on PostgreSQL in fresh schemas. Time moves only by the chain's dev advance.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import create_engine, text

from contracts_spec import eip712
from contracts_spec.params import genesis_to_json
from contracts_spec.types import Genesis
from harness.procs import free_port
from l1_mock.client import L1Client
from sequencer.scenario import ORACLE_NAMES, Keys, dev_genesis
from sequencer.trader_client import Trader

PG_URL = os.environ.get("RAMPART_TEST_PG")
T0 = 1_700_000_000
USDC = 10**6
NATIVE = 10**18
BTC = 0
PRICE = 600_000  # 60,000.0 in ticks of 0.1


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


class Proc:
    """One service process; `stop()` terminates it (kill after 10 s) and closes its log."""

    def __init__(self, cmd: list[str], log: Path, ready_url: str) -> None:
        self.cmd, self.log_path, self.ready_url = cmd, log, ready_url
        self.log = log.open("ab")
        self.proc: subprocess.Popen[bytes] | None = subprocess.Popen(cmd, stdout=self.log, stderr=subprocess.STDOUT)
        try:
            wait_for(self._ready, f"{cmd[2]} to answer at {ready_url}")
        except BaseException:
            self.stop()
            raise

    def _ready(self) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise AssertionError(f"{self.cmd[2]} exited: {self.log_path.read_text()[-2000:]}")
        try:
            return httpx.get(self.ready_url, timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    def stop(self) -> None:
        if self.proc is not None:
            if self.proc.poll() is not None:  # it ended on its own: shown with a failing test's output
                print(f"{self.cmd[2]} exited on its own (code {self.proc.returncode}); the end of its log:\n"
                      f"{self.log_path.read_text(errors='replace')[-3000:]}")
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:  # pragma: no cover
                self.proc.kill()
                self.proc.wait(10)
            self.proc = None
        self.log.close()


class Net:
    def __init__(self, tmp: Path, db: tuple[str, str | None], keys: Keys) -> None:
        self.tmp, self.db, self.keys = tmp, db, keys
        self.genesis: Genesis = dev_genesis(keys, genesis_time=T0)
        (tmp / "genesis.json").write_text(genesis_to_json(self.genesis))
        self.l1_port, self.seq_port = free_port(), free_port()
        self.l1: Proc | None = None
        self.seq: Proc | None = None
        self.traders: list[Trader] = []
        self.clients: list[L1Client] = []

    @property
    def l1_url(self) -> str:
        return f"http://127.0.0.1:{self.l1_port}"

    @property
    def seq_url(self) -> str:
        return f"http://127.0.0.1:{self.seq_port}"

    def _db_args(self, name: str) -> list[str]:
        url, schema = self.db
        if schema is None:
            return ["--db", f"sqlite:///{self.tmp / name}"]
        return ["--db", url, "--db-schema", f"{schema}_{name.split('.')[0]}"]

    def start(self) -> Net:
        py = sys.executable
        self.l1 = Proc([py, "-m", "l1_mock.cli", "--genesis", str(self.tmp / "genesis.json"), *self._db_args("l1.db"),
                        "--port", str(self.l1_port), "--manual-time"], self.tmp / "l1.log", self.l1_url + "/info")
        self.start_sequencer()
        return self

    def start_sequencer(self) -> None:
        self.seq = Proc([sys.executable, "-m", "sequencer.cli", "--l1", self.l1_url, *self._db_args("seq.db"),
                         "--port", str(self.seq_port), "--batch-interval", "0.1", "--follow-interval", "0.1"],
                        self.tmp / "seq.log", self.seq_url + "/health")

    def stop_sequencer(self) -> None:
        if self.seq is not None:
            self.seq.stop()
            self.seq = None

    def stop(self) -> None:
        for t in self.traders:
            t.close()
        for c in self.clients:
            c.close()
        self.stop_sequencer()
        if self.l1 is not None:
            self.l1.stop()
            self.l1 = None

    # --- helpers ---

    def trader(self, name: str, sequencer: bool = True) -> Trader:
        t = Trader(self.keys[name], self.l1_url, self.seq_url if sequencer else None)
        self.traders.append(t)
        return t

    def chain(self) -> L1Client:
        c = L1Client(self.l1_url)
        self.clients.append(c)
        return c

    def seq_now(self) -> int:
        return int(httpx.get(self.seq_url + "/v1/time", timeout=10).json()["time"])

    def advance(self, seconds: int) -> int:
        """Move the base layer's clock (dev time travel); wait until the sequencer saw it."""
        with L1Client(self.l1_url) as c:
            target = int(c.increase_time(seconds)["time"])
        if self.seq is not None:
            wait_for(lambda: self.seq_now() >= target, "the sequencer to see the new time")
        return target

    def oracle(self, market: int, price: int) -> None:
        t = self.seq_now()
        reports = []
        for n in ORACLE_NAMES[:2]:
            r = eip712.sign_oracle_report(self.genesis.preset, self.keys[n], market, price, t)
            reports.append({"market": r.market, "price": r.price, "time": r.time, "signature": "0x" + r.signature.hex()})
        resp = httpx.post(self.seq_url + "/v1/oracle/reports", json={"reports": reports}, timeout=10)
        assert resp.status_code == 200, resp.text

    def fund(self, trader: Trader, usdc: int, wait: bool = True) -> int:
        """Faucet and deposit; wait until the sequencer credited it (when it runs)."""
        trader.faucet(usdc=usdc, native=NATIVE)
        index = trader.deposit(usdc)
        if wait and self.seq is not None:
            wait_for(lambda: trader.margin()["collateral"] >= usdc, "the deposit to be credited")
        return index

    def quiesce(self) -> None:
        """Wait until every output of the sequencer is in a batch posted on the base layer."""
        def settled() -> bool:
            h = httpx.get(self.seq_url + "/health", timeout=10).json()
            if h["outputs"] != h["batched"] or h["pendingPost"]:
                return False
            return all(b["status"] != "built" for b in httpx.get(self.seq_url + "/v1/batches", timeout=10).json())
        wait_for(settled, "the sequencer to post everything")

    def finalize(self, life: Callable[[], str], what: str) -> None:
        """Wait until `what` is in a posted batch, let its challenge window pass, wait until it is final."""
        wait_for(lambda: life() in ("posted", "final"), f"{what} to be posted")
        self.advance(self.genesis.preset.challenge_window + 1)
        wait_for(lambda: life() == "final", f"{what} to be final")


DATABASES = ["sqlite"] + (["postgresql"] if PG_URL else [])


@contextmanager
def database(kind: str) -> Iterator[tuple[str, str | None]]:
    """SQLite files in the network's directory, or fresh PostgreSQL schemas dropped after."""
    if kind == "sqlite":
        yield "sqlite", None
        return
    assert PG_URL is not None
    prefix = "trader_" + uuid.uuid4().hex[:10]
    try:
        yield PG_URL, prefix
    finally:
        engine = create_engine(PG_URL)
        with engine.begin() as conn:
            for suffix in ("l1", "seq"):
                conn.execute(text(f'DROP SCHEMA IF EXISTS "{prefix}_{suffix}" CASCADE'))
        engine.dispose()


@contextmanager
def running(tmp: Path, db: tuple[str, str | None]) -> Iterator[Net]:
    n = Net(tmp, db, Keys())
    try:
        yield n.start()
    finally:
        n.stop()


@pytest.fixture(name="db", params=DATABASES)
def db_fixture(request: pytest.FixtureRequest) -> Iterator[tuple[str, str | None]]:
    with database(request.param) as db:
        yield db


@pytest.fixture(name="net")
def net_fixture(tmp_path: Path, db: tuple[str, str | None]) -> Iterator[Net]:
    """A fresh network for one test."""
    with running(tmp_path, db) as net:
        yield net


@pytest.fixture(name="shared_net", scope="module", params=DATABASES)
def shared_net_fixture(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Net]:
    """One network for a module's tests that only read from it or refuse before changing it."""
    with database(request.param) as db, running(tmp_path_factory.mktemp("shared-net"), db) as net:
        yield net
