"""kill -9 of a real `rampart-sequencer` (on a real `rampart-l1`) under load, many times at random
points, then restarts: every acknowledged order and cancel (single or in a batch) is there, the served book and accounts
are a replay of the journal, no fill is posted twice, and batches go on from the last posted one.
Once with the default snapshot interval, once snapshotting every few dozen records, so kills land
before, during and after snapshots and restarts begin from one.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import httpx
import pytest

from contracts_spec import codec, eip712
from contracts_spec.params import genesis_to_json
from contracts_spec.state import State
from contracts_spec.stf import Env, MemoryBridge, apply_batch
from contracts_spec.types import DepositEntry, Genesis, Trade
from l1_mock.client import L1Client
from sequencer.journal import Journal
from sequencer.node import recover_core
from sequencer.scenario import ORACLE_NAMES, Keys

from .conftest import BTC, NATIVE, USDC, Trader, free_port, report_wire, wait_for

ROUNDS = 3
PRICE = 500_000
NAMES = [f"crash{i}" for i in range(4)]


class Proc:
    def __init__(self, cmd: list[str], log: Path, url: str, env: dict[str, str] | None = None) -> None:
        self.cmd, self.log, self.url, self.env = cmd, log, url, env
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(self.cmd, stdout=out, stderr=subprocess.STDOUT, env=self.env)
        for _ in range(1200):  # until it answers (bounded; not a timing assertion)
            if self.proc.poll() is not None:
                raise RuntimeError(self.log.read_text()[-4000:])
            try:
                httpx.get(self.url + "/health" if "seq" in self.log.name else self.url + "/info", timeout=1)
                return
            except httpx.HTTPError:
                threading.Event().wait(0.05)
        raise RuntimeError(f"{self.cmd[2]} did not start")

    def kill9(self) -> None:
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(30)


@pytest.fixture(params=[None, 30], ids=["default-snapshots", "frequent-snapshots"])
def snapshot_every(request: pytest.FixtureRequest) -> int | None:
    return request.param  # type: ignore[no-any-return]


@pytest.fixture
def procs(db: tuple[str, str | None], tmp_path: Path, genesis: Genesis, snapshot_every: int | None) -> Any:
    gfile = tmp_path / "genesis.json"
    gfile.write_text(genesis_to_json(genesis))
    l1_port, seq_port = free_port(), free_port()
    l1 = Proc([sys.executable, "-m", "l1_mock.cli", "--genesis", str(gfile), "--db", f"sqlite:///{tmp_path / 'l1.db'}",
               "--port", str(l1_port), "--manual-time"], tmp_path / "l1.log", f"http://127.0.0.1:{l1_port}")
    cmd = [sys.executable, "-m", "sequencer.cli", "--l1", l1.url, "--db", db[0], "--port", str(seq_port),
           "--batch-interval", "0.2", "--follow-interval", "0.1"]
    if db[1]:
        cmd += ["--db-schema", db[1]]
    env = None if snapshot_every is None else {**os.environ, "RAMPART_SNAPSHOT_EVERY": str(snapshot_every)}
    seq = Proc(cmd, tmp_path / "seq.log", f"http://127.0.0.1:{seq_port}", env)
    yield l1, seq
    seq.stop()
    l1.stop()


def auth(keys: Keys, genesis: Genesis, name: str, now: int) -> dict[str, str]:
    sig = eip712.sign_subscribe(genesis.preset, keys[name], now)
    return {"X-Rampart-Timestamp": str(now), "X-Rampart-Signature": "0x" + sig.hex()}


def orders_served(http: httpx.Client, keys: Keys, genesis: Genesis, owners: dict[str, str]) -> dict[str, Any]:
    """order id -> the sequencer's view, for every order of `owners` (id -> owner) it serves: each
    account's list (newest 1,000), then one by one whatever is not in it."""
    now = int(http.get("/v1/time").json()["time"])
    served: dict[str, Any] = {}
    for name in sorted(set(owners.values())):
        listed = http.get(f"/v1/accounts/0x{keys.addr(name).hex()}/orders", params={"limit": 1000},
                          headers=auth(keys, genesis, name, now))
        assert listed.status_code == 200, listed.text
        served.update((o["orderId"], o) for o in listed.json())
    for oid, name in owners.items():
        if oid not in served:
            r = http.get(f"/v1/accounts/0x{keys.addr(name).hex()}/orders/{oid}", headers=auth(keys, genesis, name, now))
            if r.status_code == 200:
                served[oid] = r.json()
            else:
                assert r.status_code == 404, r.text
    return served


def test_kill9_under_load_many_times(procs: Any, keys: Keys, genesis: Genesis, db: tuple[str, str | None],
                                     snapshot_every: int | None) -> None:
    l1, seq = procs
    l1.start()
    seq.start()
    rng = random.Random(20261124)
    http = httpx.Client(base_url=seq.url, timeout=30)
    for name in NAMES:
        with L1Client(l1.url, keys[name]) as c:
            c.faucet(native=NATIVE, usdc=100_000 * USDC)
            c.deposit(100_000 * USDC)
    now = int(http.get("/v1/time").json()["time"])
    reports = [report_wire(genesis, keys[n], BTC, PRICE, now) for n in ORACLE_NAMES[:2]]
    assert http.post("/v1/oracle/reports", json={"reports": reports}).json()["results"][1]["applied"]
    for name in NAMES:
        wait_for(lambda n=name: http.get(f"/v1/accounts/0x{keys.addr(n).hex()}/margin",
                                         headers=auth(keys, genesis, n, now)).json()["collateral"] > 0, "deposits")
    traders = {n: Trader(keys, genesis, n) for n in NAMES}
    acked: dict[str, str] = {}  # order id -> owner
    cancelled: set[str] = set()
    lock = threading.Lock()

    def load(name: str, seed: int, stop: threading.Event) -> None:
        t, r = traders[name], random.Random(seed)
        client = httpx.Client(base_url=seq.url, timeout=10)
        mine: list[str] = []
        try:
            while not stop.is_set():
                if mine and r.random() < 0.2:
                    oid = mine.pop(r.randrange(len(mine)))
                    resp = client.post("/v1/orders/cancel", json=t.cancel(oid))
                    if resp.status_code == 200:
                        with lock:
                            cancelled.add(oid)
                    continue
                if len(mine) > 2 and r.random() < 0.1:  # several at once, one wait for the journal
                    pulled, mine[:] = mine[:3], mine[3:]
                    resp = client.post("/v1/orders/cancel/batch", json={"cancels": [t.cancel(o) for o in pulled]})
                    with lock:
                        cancelled.update(o for o, res in zip(pulled, resp.json()["results"], strict=True)
                                         if res["status"] == "ok")
                    continue
                orders = [t.order(r.random() < 0.5, PRICE + r.randint(-20, 20), r.randint(1, 5))
                          for _ in range(r.choice((1, 1, 8)))]
                resp = client.post("/v1/orders/batch", json={"orders": orders})
                for res in resp.json()["results"]:
                    if res["status"] == "ok":
                        with lock:
                            acked[res["orderId"]] = name
                        if res["remaining"]:
                            mine.append(res["orderId"])
        except (httpx.HTTPError, ValueError):
            return  # the process died under us: what was acknowledged is recorded
        finally:
            client.close()

    for round_ in range(ROUNDS):
        stop = threading.Event()
        threads = [threading.Thread(target=load, args=(n, rng.random(), stop)) for n in NAMES]
        for th in threads:
            th.start()
        target = len(acked) + rng.randint(20, 300)
        wait_for(lambda t=target: len(acked) >= t, "load", bound=120)
        seq.kill9()
        stop.set()
        for th in threads:
            th.join(30)
        seq.start()
        # every acknowledged order and cancel survived
        served_orders = orders_served(http, keys, genesis, acked)
        for oid in acked:
            assert oid in served_orders, (round_, oid)
            if oid in cancelled:
                assert served_orders[oid]["status"] == "cancelled", (round_, oid, served_orders[oid])

    # batches continue and every output gets posted
    wait_for(lambda: (lambda h: h["batched"] == h["outputs"] and not h["pendingPost"])(http.get("/health").json()),
             "everything batched", bound=120)
    now = int(http.get("/v1/time").json()["time"])
    served = {
        "book": http.get("/v1/markets/0/book?depth=1000").json(),
        "margins": {n: http.get(f"/v1/accounts/0x{keys.addr(n).hex()}/margin", headers=auth(keys, genesis, n, now)).json()
                    for n in NAMES},
        "batches": http.get("/v1/batches?limit=1000").json(),
    }
    served_orders = orders_served(http, keys, genesis, acked)
    filled = {oid: served_orders[oid]["filled"] for oid in acked}
    seq.stop()
    http.close()

    # the served state is what a replay of the journal gives
    journal = Journal.open(db[0], db[1])
    if snapshot_every is not None:  # restarts began from snapshots, and the clean stop took one
        assert journal.snapshot_seqs()[0] == journal.next_seq - 1
    core = recover_core(genesis, journal)
    bids, asks = core.levels(BTC, 1000)
    assert served["book"]["bids"] == [[p, q] for p, q in bids] and served["book"]["asks"] == [[p, q] for p, q in asks]
    for n in NAMES:
        m = core.margin(keys.addr(n))
        assert (served["margins"][n]["collateral"], served["margins"][n]["value"]) == (m["collateral"], m["value"])
    journal.close()

    # the base layer holds one contiguous chain of our batches; re-executed from its data alone
    # with the spec they give the posted roots, and no order is filled twice or beyond its size
    with L1Client(l1.url) as c:
        rollup = c.rollup()
        assert rollup["head_index"] == len(served["batches"]) - 1
        state = State.from_genesis(genesis)
        bridge = MemoryBridge([DepositEntry(keys.addr(n), 100_000 * USDC) for n in NAMES])
        fills: dict[bytes, int] = {}
        for index in range(rollup["head_index"] + 1):
            view = c.canonical(index)
            assert view["post_root"] == served["batches"][index]["postRoot"]
            header = c.batch_header(view["batch_id"])
            body = codec.decode_batch_data(c.batch_data(header.data_hash))
            apply_batch(state, body, Env(genesis.preset, header.time, bridge))
            assert state.root() == header.post_root
            for tx in body.txs:
                if isinstance(tx, Trade):
                    for i in (tx.maker, tx.taker):
                        oid = eip712.order_digest(genesis.preset, body.orders[i].order)
                        fills[oid] = fills.get(oid, 0) + tx.lots
                        assert fills[oid] <= body.orders[i].order.lots
    # acknowledged orders: posted fills = what the sequencer served; orders whose answer the kill
    # swallowed may be in the journal too (durable, just never acknowledged): the replay has them
    for oid, lots in filled.items():
        assert fills.get(bytes.fromhex(oid[2:]), 0) == lots
    for oid, lots in fills.items():
        assert core.orders[oid].filled == lots


def test_what_the_first_follow_sees_is_journaled_before_orders_rely_on_it(
        procs: Any, keys: Keys, genesis: Genesis, db: tuple[str, str | None], snapshot_every: int | None) -> None:
    """Deposits made while the sequencer is down are executed by its first look at the base
    layer at start-up. They are journaled like any other input, so a kill -9 right after orders
    that need them were acknowledged (before any snapshot) replays them first: the fill stands."""
    l1, seq = procs
    l1.start()
    for name in NAMES[:2]:  # before the sequencer ever runs
        with L1Client(l1.url, keys[name]) as c:
            c.faucet(native=NATIVE, usdc=10_000 * USDC)
            c.deposit(10_000 * USDC)
    seq.start()
    http = httpx.Client(base_url=seq.url, timeout=30)
    now = int(http.get("/v1/time").json()["time"])
    reports = [report_wire(genesis, keys[n], BTC, PRICE, now) for n in ORACLE_NAMES[:2]]
    assert http.post("/v1/oracle/reports", json={"reports": reports}).json()["results"][1]["applied"]
    maker, taker = Trader(keys, genesis, NAMES[0]), Trader(keys, genesis, NAMES[1])
    bid = http.post("/v1/orders", json=maker.order(True, PRICE, 3)).json()
    ask = http.post("/v1/orders", json=taker.order(False, PRICE, 3)).json()
    assert (bid["status"], ask["status"], [f["lots"] for f in ask["fills"]]) == ("ok", "ok", [3])
    seq.kill9()
    seq.start()
    now = int(http.get("/v1/time").json()["time"])
    margins = {}
    for name, placed in ((NAMES[0], bid), (NAMES[1], ask)):
        r = http.get(f"/v1/accounts/0x{keys.addr(name).hex()}/orders/{placed['orderId']}",
                     headers=auth(keys, genesis, name, now))
        assert r.status_code == 200 and r.json()["filled"] == 3, r.text
        margins[name] = http.get(f"/v1/accounts/0x{keys.addr(name).hex()}/margin",
                                 headers=auth(keys, genesis, name, now)).json()
        assert margins[name]["collateral"] > 9_000 * USDC
    seq.stop()
    http.close()
    journal = Journal.open(db[0], db[1])  # the served state is a replay of the journal alone
    core = recover_core(genesis, journal)
    for name, served in margins.items():
        m = core.margin(keys.addr(name))
        assert (m["collateral"], m["value"]) == (served["collateral"], served["value"])
    journal.close()
