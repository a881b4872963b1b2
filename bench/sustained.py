#!/usr/bin/env python3
"""The sequencer's sustained batch production against a fresh verifier's replay of the same batches.

Phase 1: `rampart-l1` and `rampart-sequencer` as processes on 127.0.0.1; accounts funded and every
order signed before any clock starts; then crossing orders pushed as fast as the sequencer takes
them through POST /v1/orders/batch (bench/api.py's keep-alive client). Every order trades: each
request is a round of resting makers followed by their takers, each taker filling one maker
(`--maker-fills K`: K takers a maker, so K trades share its signature), sides alternating
round by round, markets and accounts rotating. `--quotes Q`: before each round, Q quotes a trade
that never fill, cancelled after it (POST /v1/orders/cancel/batch), as market makers re-quote:
an order that never trades costs the sequencer two signatures and the verifier one (the cancel's).
Figures: orders/s acknowledged, and
trades/s *posted* — from the first order sent to the moment the batch holding the last trade is
posted on the base layer (the sequencer's /v1/batches).
Phase 2, with the sequencer stopped so nothing shares the CPU: a fresh `rampart-verifier run`
(fresh database) against that base layer, timed until its database shows every batch verified.
Figures: replay trades/s from the process start and from the node being ready (its database
bound), and the ratio verifier / sequencer. The goal is at least 2x: a verifier never falls behind.
Steady rates cut both sides the same way: the trades of batches 2 to n-1, from the moment the
first batch is posted (verified) to the moment batch n-1 is, so neither the sequencer's first
batch interval and drain nor the verifier's start-up and last batch count. This machine's speed
drifts by tens of percent from minute to minute: `--repeat` takes several pairs of phases, each
ratio from a sequencer and verifiers measured within a minute of each other.
The sequencer shares the machine with the load client and the base layer, which a real one does
not; the verifier only with the base layer, barely busy then. Phase 1 prints their CPU time, and
"fair" scales the sequencer's steady rate up by the share of the machine they took: an upper
bound of the sequencer's rate on a machine of its own, so a lower bound of the ratio.

usage: python bench/sustained.py [--orders N] [--batch B] [--clients C] [--verify-workers W]
                                 [--verifier-workers W[,W...]] [--verifier-runs R] [--baseline DIR]
                                 [--profile PATH] [--py-spy PATH] [--repeat K] [--maker-fills K]
                                 [--quotes Q]
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import resource
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # for bench.api, before bench/ shadows verifier

import httpx  # noqa: E402

from bench.api import Conn, free_port, fund  # noqa: E402
from contracts_spec import eip712  # noqa: E402
from contracts_spec.params import genesis_to_json  # noqa: E402
from contracts_spec.types import Order, TimeInForce  # noqa: E402
from l1_mock.client import L1Client  # noqa: E402
from sequencer.scenario import ORACLE_NAMES, Keys, dev_genesis  # noqa: E402
from verifier.keys import write_key  # noqa: E402
from verifier.replay import count_trades, decode_body  # noqa: E402

PRICES = {0: 500_000, 1: 300_000}  # oracle price per market; every order within 1,000 ticks of it
ACCOUNTS = 16
POLL = 0.02  # seconds between polls while timing (a cheap GET or one SQLite read)
Request = tuple[str, bytes]  # (path, JSON body)
SIGNED: list[list[Request]] = []  # each round's requests, signed once, sent again to each fresh chain
QUOTE_AWAY = 2_000  # ticks from the oracle price past which quotes rest (every trade is within 1,000 of it)


# --- processes ----------------------------------------------------------------------------------


class Procs:
    """Child processes, each in its own session so that stopping one also stops its workers."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.running: list[subprocess.Popen[bytes]] = []

    def start(self, cmd: list[str], log: str, env: dict[str, str] | None = None,
              probe: str | None = None, cwd: Path | None = None) -> subprocess.Popen[bytes]:
        out = (self.tmp / log).open("ab")
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=cwd,
                                start_new_session=True)
        self.running.append(proc)
        for _ in range(1200 if probe else 0):
            if proc.poll() is not None:
                raise RuntimeError((self.tmp / log).read_text()[-3000:])
            try:
                httpx.get(probe, timeout=1)  # type: ignore[arg-type]
                break
            except httpx.HTTPError:
                time.sleep(0.05)
        else:
            if probe:
                raise RuntimeError(f"{cmd} did not start")
        return proc

    def stop(self, proc: subprocess.Popen[bytes]) -> None:
        if proc.poll() is None:
            try:
                os.killpg(proc.pid, signal.SIGTERM)
                proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
            except ProcessLookupError:
                pass
        # workers a clean exit left behind (a process pool's children share the session)
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        if proc in self.running:
            self.running.remove(proc)

    def stop_all(self) -> None:
        for proc in reversed(list(self.running)):
            self.stop(proc)


@contextmanager
def terminated_on_sigterm() -> Iterator[None]:
    """SIGTERM unwinds like Ctrl-C, so the `finally` that stops the children runs."""
    def raise_interrupt(*_: object) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, raise_interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def children_cpu() -> float:
    """CPU seconds (user + system) of every child process waited for so far, and theirs."""
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def self_cpu() -> float:
    """CPU seconds of this process: the load client, and the thread timing the batches' landing."""
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def group_cpu(pgid: int) -> float:
    """CPU seconds (user + system) the running processes of a process group have used so far (a
    child started by Procs leads its own group, with its workers; Linux: /proc/PID/stat)."""
    total = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:  # gone meanwhile
            continue
        if int(fields[2]) == pgid:
            total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


def memory(pid: int) -> tuple[int, int] | None:
    """(resident bytes now, peak resident bytes) of one process (Linux: /proc/PID/status), None once
    it is gone."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    kb = {k: int(v.split()[0]) for k, v in (line.split(":", 1) for line in status.splitlines()) if k in ("VmRSS", "VmHWM")}
    return kb["VmRSS"] * 1024, kb["VmHWM"] * 1024


def growth(before: tuple[int, int] | None, after: tuple[int, int] | None, trades: int) -> str:
    """What a process's memory did over `trades` trades: its state holds a leaf per filled or
    cancelled order besides every account, for good."""
    if before is None or after is None or not trades:
        return "memory: not read"
    grown = after[0] - before[0]
    return (f"memory {before[0] / 2**20:,.0f} -> {after[0] / 2**20:,.0f} MiB resident (peak {after[1] / 2**20:,.0f}), "
            f"{grown / trades:,.0f} bytes a trade")


def load() -> str:
    one, five, _ = os.getloadavg()
    return f"load {one:.2f} / {five:.2f} (1 / 5 min, {os.cpu_count()} CPUs)"


class Landed(threading.Thread):
    """When each batch index first lands on the base layer, in a thread of its own while phase 1
    pushes orders: index -> perf_counter seconds. It reads the base layer's SQLite file every POLL s,
    as phase 2 reads the verifier's, so that neither side pays for being watched."""

    def __init__(self, l1_db: Path) -> None:
        super().__init__(daemon=True)
        self.l1_db, self.done = l1_db, threading.Event()
        self.times: dict[int, float] = {}

    def run(self) -> None:
        con = sqlite3.connect(f"file:{self.l1_db}?mode=ro", uri=True, timeout=5, check_same_thread=False)
        try:
            while not self.done.is_set():
                head = con.execute('SELECT max("index") FROM batches').fetchone()[0]
                mark(self.times, None if head is None else int(head))
                self.done.wait(POLL)
        finally:
            con.close()


def mark(times: dict[int, float], head: int | None) -> None:
    """Every index up to `head` not seen before lands now."""
    if head is None:
        return
    now = time.perf_counter()
    for index in range(max(times, default=head - 1) + 1, head + 1):
        times.setdefault(index, now)


def steady(times: dict[int, float], trades: dict[int, int]) -> tuple[float, int] | None:
    """(trades/s, trades) between the first batch's time and the one before the last's: the rate
    once started and before draining, the same cut for the sequencer (posted) and the verifier
    (verified). None with fewer than three batches."""
    indices = sorted(trades)
    if len(indices) < 3 or any(i not in times for i in indices):
        return None
    first, last = indices[0], indices[-2]
    counted = sum(trades[i] for i in indices[1:-1])
    return counted / (times[last] - times[first]), counted


def by_quarter(times: dict[int, float], trades: dict[int, int]) -> str:
    """The steady rate over each quarter of the steady batches in turn (whether it holds as the
    state grows), or "" with fewer than 13 batches."""
    indices = sorted(trades)
    if len(indices) < 13 or any(i not in times for i in indices):
        return ""
    steps = indices[:-1]  # a batch's time closes the span its own trades are counted in
    cuts = [round(k * (len(steps) - 1) / 4) for k in range(5)]
    rates = [sum(trades[i] for i in steps[a + 1 : b + 1]) / (times[steps[b]] - times[steps[a]])
             for a, b in itertools.pairwise(cuts)]
    return ", by quarter " + " / ".join(f"{r:,.0f}" for r in rates)


# --- the workload -----------------------------------------------------------------------------------


def wire(keys: Keys, preset: Any, name: str, market: int, is_buy: bool, price: int, lots: int,
         nonce: int) -> bytes:
    return signed_order(keys, preset, name, market, is_buy, price, lots, nonce)[0]


def signed_order(keys: Keys, preset: Any, name: str, market: int, is_buy: bool, price: int, lots: int,
                 nonce: int) -> tuple[bytes, Order]:
    """(the signed order's JSON, the order)."""
    account = keys.addr(name)
    o = Order(account, market, is_buy, price, lots, TimeInForce.GTC, False, 0, nonce, 0)  # type: ignore[arg-type]
    so = eip712.sign_order(preset, o, keys[name])
    return json.dumps({"account": "0x" + account.hex(), "market": market, "isBuy": is_buy, "price": price,
                       "lots": lots, "tif": "GTC", "nonce": nonce, "signature": "0x" + so.signature.hex()},
                      separators=(",", ":")).encode(), o


def cancel_wire(keys: Keys, preset: Any, name: str, order: Order) -> bytes:
    """The JSON of `name`'s signed cancel of `order`."""
    oid = eip712.order_digest(preset, order)
    cancel = eip712.sign_cancel(preset, keys[name], oid)
    return json.dumps({"account": "0x" + keys.addr(name).hex(), "orderId": "0x" + oid.hex(),
                       "signature": "0x" + cancel.signature.hex()}, separators=(",", ":")).encode()


def quotes_around(keys: Keys, genesis: Any, r: int, market: int, count: int, nonce: int) -> tuple[list[bytes], list[bytes]]:
    """`count` one-lot quotes on both sides, QUOTE_AWAY and more from the price, where nothing
    trades, and their cancels: a market maker's orders that never fill."""
    orders, cancels = [], []
    for q in range(count):
        is_buy, name = q % 2 == 0, f"bench{(q + r) % ACCOUNTS}"
        price = PRICES[market] + (-1 if is_buy else 1) * (QUOTE_AWAY + q % 1000)
        order, o = signed_order(keys, genesis.preset, name, market, is_buy, price, 1, nonce + q)
        orders.append(order)
        cancels.append(cancel_wire(keys, genesis.preset, name, o))
    return orders, cancels


def rounds(keys: Keys, genesis: Any, orders: int, size: int, fills: int = 1,
           quotes: int = 0) -> list[list[Request]]:
    """Request bodies of `size` orders each: size/(fills+1) resting makers at successive prices,
    then `fills` takers for each maker, in maker order, at its price and together of its size, so
    they fill exactly that maker, one trade each (the makers before it are gone). With fills 1
    (the default) every order is fresh in its one trade: two signatures a trade, a verifier's
    worst case; with more, a maker's order is recovered once for `fills` trades, as when market
    makers' quotes are taken in parts. Round r trades in market r % 2 and `push` deals rounds to
    its two connections in turn, so each connection has a market of its own: the server lets
    other requests in while it works through a big one, and they never fill each other's orders.
    Sides alternate every two rounds (positions stay bounded), maker / taker pairs rotate.
    `quotes` Q: each round is preceded by Q quotes a trade that never fill (in requests of at most
    `size`) and followed by their cancels (POST /v1/orders/cancel/batch), as market makers
    re-quote: the sequencer checks two signatures a quote, the verifier one (the cancel's; an
    order that never trades is not in the batch data)."""
    per_maker = fills + 1
    bodies: list[list[Request]] = []
    nonce = 0
    for r in range(orders // size):
        market, sells = r % 2, (r // 2) % 2 == 0
        makers, takers = [], []
        for k in range(size // per_maker):
            m = (k + r) % ACCOUNTS
            price = PRICES[market] + (k % 1000 if sells else -(k % 1000))
            parts = [1 + (k * 7 + r + j) % 5 for j in range(fills)]
            makers.append(wire(keys, genesis.preset, f"bench{m}", market, not sells, price, sum(parts), nonce))
            nonce += 1
            for j, lots in enumerate(parts):
                t = (m + 1 + (k + j) % (ACCOUNTS - 1)) % ACCOUNTS  # never the maker: no self-trade
                takers.append(wire(keys, genesis.preset, f"bench{t}", market, sells, price, lots, nonce))
                nonce += 1
        quoted, pulled = quotes_around(keys, genesis, r, market, quotes * (size // per_maker) * fills, nonce)
        nonce += len(quoted)
        bodies.append([*[("/v1/orders/batch", b'{"orders":[' + b",".join(quoted[i : i + size]) + b"]}")
                         for i in range(0, len(quoted), size)],
                       ("/v1/orders/batch", b'{"orders":[' + b",".join(makers + takers) + b"]}"),
                       *[("/v1/orders/cancel/batch", b'{"cancels":[' + b",".join(pulled[i : i + size]) + b"]}")
                         for i in range(0, len(pulled), size)]])
    return bodies


async def push(port: int, bodies: list[list[Request]], clients: int) -> tuple[float, float, dict[str, list[int]]]:
    """(start, end, {path: [acknowledged, refused]}): every request, as fast as answered; a
    round's requests (quotes, trades, cancels) in turn on one connection."""
    conns = [await Conn.open(port) for _ in range(clients)]
    counts = {path: [0, 0] for requests in bodies for path, _ in requests}

    async def worker(conn: Conn, mine: list[list[Request]]) -> None:
        for requests in mine:
            for path, body in requests:
                for r in json.loads(await conn.post(path, body))["results"]:
                    counts[path][r["status"] != "ok"] += 1

    start = time.perf_counter()
    await asyncio.gather(*(worker(c, bodies[i::clients]) for i, c in enumerate(conns)))
    end = time.perf_counter()
    for c in conns:
        c.close()
    return start, end, counts


# --- phase 1: the sequencer ---------------------------------------------------------------------------


def settle(http: httpx.Client, outputs: int, timeout: float = 600) -> list[dict[str, Any]]:
    """Poll until every output up to `outputs` is in a batch posted on the base layer."""
    deadline = time.perf_counter() + timeout
    while time.perf_counter() < deadline:
        health = http.get("/health").json()
        if health["batched"] >= outputs and not health["pendingPost"]:
            batches = http.get("/v1/batches", params={"after": max(0, health["batches"] - 1)}).json()
            if batches and batches[-1]["outputs"][1] >= outputs and batches[-1]["status"] in ("posted", "final"):
                return batches
        time.sleep(POLL)
    raise RuntimeError(f"outputs up to {outputs} not posted within {timeout} s")


def all_batches(http: httpx.Client) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    while True:
        page = http.get("/v1/batches", params={"after": len(out), "limit": 100}).json()
        if not page:
            return out
        out.extend(page)


def sequencer_phase(a: argparse.Namespace, procs: Procs, keys: Keys, genesis: Any, l1_url: str, l1_pid: int) -> dict[str, Any]:
    seq_port = free_port()
    seq_url = f"http://127.0.0.1:{seq_port}"
    env = {**os.environ, "RAMPART_SEQUENCER_KEY": keys["sequencer"].hex()}
    cpu0 = children_cpu()
    seq = procs.start([sys.executable, "-m", "sequencer.cli", "--l1", l1_url, "--db",
                       f"sqlite:///{procs.tmp / 'journal.db'}", "--port", str(seq_port), "--batch-interval",
                       str(a.batch_interval), "--verify-workers", str(a.verify_workers)], "seq.log", env,
                      seq_url + "/health")
    http = httpx.Client(base_url=seq_url, timeout=60)
    fund(l1_url, keys, ACCOUNTS)
    now = int(http.get("/v1/time").json()["time"])
    reports = []
    for market, price in PRICES.items():
        for n in ORACLE_NAMES[:2]:
            r = eip712.sign_oracle_report(genesis.preset, keys[n], market, price, now)
            reports.append({"market": market, "price": price, "time": now, "signature": "0x" + r.signature.hex()})
    http.post("/v1/oracle/reports", json={"reports": reports}).raise_for_status()
    while http.get("/health").json()["outputs"] < ACCOUNTS + len(PRICES):
        time.sleep(0.1)
    setup = settle(http, http.get("/health").json()["outputs"])
    first_index = setup[-1]["index"] + 1
    if not SIGNED:  # a fresh chain each measurement: the same orders serve again
        print(f"signing {a.orders:,} orders ...", flush=True)
        SIGNED.extend(rounds(keys, genesis, a.orders, a.batch, a.maker_fills, a.quotes))
    bodies = SIGNED
    sent = sum(body.count(b'"signature"') for requests in bodies for _, body in requests)
    requests = sum(len(r) for r in bodies)
    quoting = f", {a.quotes} quote(s) placed and cancelled a trade" if a.quotes else ""
    print(f"phase 1, sequencer ({load()}): {sent:,} signed messages in {requests:,} requests of at most {a.batch}{quoting}, "
          f"{a.clients} connections, batch interval {a.batch_interval} s, verify workers {a.verify_workers}",
          flush=True)
    landed = Landed(procs.tmp / "l1.db")
    landed.start()
    beside0 = self_cpu(), group_cpu(l1_pid), group_cpu(seq.pid)
    mem0 = memory(seq.pid)
    start, acked, counts = asyncio.run(push(seq_port, bodies, a.clients))
    ok, refused = counts["/v1/orders/batch"]
    cancelled, not_cancelled = counts.get("/v1/orders/cancel/batch", [0, 0])
    outputs = http.get("/health").json()["outputs"]
    settle(http, outputs)
    posted = time.perf_counter()
    client_cpu, l1_cpu, seq_cpu = self_cpu() - beside0[0], group_cpu(l1_pid) - beside0[1], group_cpu(seq.pid) - beside0[2]
    mem = memory(seq.pid)
    landed.done.set()
    landed.join()
    batches = [b for b in all_batches(http) if b["index"] >= first_index]
    http.close()
    procs.stop(seq)  # phase 2 has the machine to itself
    cpu = children_cpu() - cpu0  # the sequencer and its signature workers, from start to stop
    with L1Client(l1_url) as client:
        per_batch = {b["index"]: count_trades(decode_body(client.batch_data(b["dataHash"]), genesis.preset.max_batch_txs))
                     for b in batches}
    trades = sum(per_batch.values())
    mark(landed.times, batches[-1]["index"])  # posted by now (settle saw it)
    seq_steady = steady(landed.times, per_batch)
    txs = sum(b["txCount"] for b in batches)
    seconds = posted - start
    cancels = f" and {cancelled:,} cancels ({not_cancelled:,} refused)" if cancelled or not_cancelled else ""
    print(f"  acknowledged {ok:,} orders ({refused:,} refused){cancels} in {acked - start:.2f} s = "
          f"{(ok + cancelled) / (acked - start):,.0f} a second")
    print(f"  posted {trades:,} trades ({txs:,} txs) in {len(batches)} batches, last posted {posted - acked:.2f} s "
          f"after the last ack: {seconds:.2f} s from the first order = {trades / seconds:,.0f} trades/s "
          f"sustained ({load()})")
    if seq_steady is not None:
        print(f"  steady (batches 2 to {len(batches) - 1} of {len(batches)}, from the first's post to the one before the "
              f"last's): {seq_steady[1]:,} trades at {seq_steady[0]:,.0f} trades/s posted"
              f"{by_quarter(landed.times, per_batch)}")
    print(f"  the sequencer's CPU, start to stop (setup and its idle time included; the base layer's not): "
          f"{cpu:.2f} CPU s = {trades / cpu:,.0f} trades per CPU s; its {growth(mem0, mem, trades)}")
    # The base layer and the load client run on other machines in earnest: what they took from the
    # sequencer's CPUs, the verifiers (phase 2, alone but for the base layer) did not lose
    machine = (posted - start) * (os.cpu_count() or 1)
    fair = machine / max(machine - client_cpu - l1_cpu, 1e-9)
    print(f"  from the first order to the last post ({machine:.2f} CPU s of machine): the sequencer used {seq_cpu:.2f} "
          f"CPU s, beside it the load client {client_cpu:.2f} and the base layer {l1_cpu:.2f}; had the sequencer had "
          f"theirs too, it could have been up to {fair:.2f}x as fast")
    fills = a.maker_fills  # each maker and its `fills` takers make `fills` trades
    quotes = a.quotes * trades
    if trades * (fills + 1) + quotes * fills != ok * fills or cancelled != quotes:
        print(f"  WARNING: {ok:,} orders made {trades:,} trades, not {fills} per {fills + 1} orders besides "
              f"{quotes:,} quotes ({cancelled:,} cancelled): the workload did not trade as designed")
    return {"trades": trades, "rate": trades / seconds, "per_cpu": trades / cpu, "batches": len(batches), "fair": fair,
            "last_index": batches[-1]["index"], "per_batch": per_batch,
            "steady": seq_steady[0] if seq_steady is not None else None}


# --- phase 2: a fresh verifier ---------------------------------------------------------------------------


def db_judge_seconds(path: Path) -> float:
    """Seconds the node spent in judge_batch (apply_batch, roots, header checks), by its own count."""
    con = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=1)
    try:
        return float(con.execute("SELECT coalesce(sum(verify_seconds), 0) FROM batches").fetchone()[0])
    finally:
        con.close()


def db_progress(path: Path) -> tuple[int | None, dict[str, int], int]:
    """(head index or None before the node is bound, verdict counts, trades verified), read-only."""
    if not path.exists():
        return None, {}, 0
    try:
        con = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=1)
        try:
            row = con.execute("SELECT head_index FROM node WHERE id = 1").fetchone()
            verdicts = dict(con.execute("SELECT coalesce(verdict, 'unverified'), count(*) FROM batches "
                                        "GROUP BY verdict").fetchall())
            trades = con.execute("SELECT coalesce(sum(trades), 0) FROM batches WHERE verdict = 'valid'").fetchone()[0]
        finally:
            con.close()
    except sqlite3.OperationalError:  # tables not created yet
        return None, {}, 0
    return (None if row is None else int(row[0])), verdicts, int(trades)


def verifier_phase(a: argparse.Namespace, procs: Procs, keys: Keys, l1_url: str, l1_pid: int, run: int,
                   target: dict[str, Any], variant: str) -> dict[str, float | None]:
    """One fresh verifier; `variant` is a RAMPART_VERIFIER_WORKERS value or "default", either
    with "@K" to pin the verifier to the machine's first K CPUs (`taskset`), or "baseline" (the
    verifier of the checkout at --baseline, with its defaults)."""
    workers, _, cpus = variant.partition("@")
    workers, cwd = (workers, None) if variant != "baseline" else ("default", a.baseline)
    work = procs.tmp / f"verifier-{run}"
    work.mkdir()
    write_key(work / "key.json", keys["victor"])
    db = work / "verifier.db"
    env = {**os.environ}
    if workers != "default":
        env["RAMPART_VERIFIER_WORKERS"] = workers
    profile = ["-m", "cProfile", "-o", str(a.profile) + f".{run}"] if a.profile else []
    if a.py_spy:  # sampled, idle time included: where the node waits as well as where it computes
        spy = Path(sys.executable).with_name("py-spy")
        profile = []
        pre = [str(spy), "record", *(["--gil"] if a.py_spy_gil else ["--idle"]), "--subprocesses", "--threads", "--format", "raw", "-r", "100", "-o", str(a.py_spy) + f".{run}", "--"]
    else:
        pre = []
    if cpus:  # its pool sized for them too (l1_mock.cli_common.usable_cpus)
        pre = ["taskset", "-c", f"0-{int(cpus) - 1}", *pre]
    cmd = [*pre, sys.executable, *profile, "-m", "verifier.cli", "--l1-url", l1_url, "--db", f"sqlite:///{db}", "--key-file",
           str(work / "key.json"), "run", "--poll-interval", "0.05"]
    before = load()
    cpu0, l1_cpu0 = children_cpu(), group_cpu(l1_pid)
    started = time.perf_counter()
    proc = procs.start(cmd, f"verifier-{run}.log", env, cwd=cwd)
    ready, mem0 = None, None
    judged: dict[int, float] = {}  # batch index -> when the node's head reached it
    try:
        while True:
            head, verdicts, trades = db_progress(db)
            mark(judged, head)
            if ready is None and head is not None:
                ready, mem0 = time.perf_counter(), memory(proc.pid)
            if head is not None and head >= target["last_index"]:
                break
            if set(verdicts) - {"valid", "unverified"}:
                raise RuntimeError(f"the verifier judged: {verdicts}")
            if proc.poll() is not None:
                raise RuntimeError((procs.tmp / f"verifier-{run}.log").read_text()[-3000:])
            time.sleep(POLL)
        done = time.perf_counter()
        l1_cpu = group_cpu(l1_pid) - l1_cpu0
        mem = None if a.py_spy else memory(proc.pid)  # py-spy's own process, not the node's, otherwise
    finally:
        if a.py_spy:  # py-spy writes its file on SIGINT; the node is stopped with the rest of its group
            proc.send_signal(signal.SIGINT)
            proc.wait(60)
        procs.stop(proc)
    cpu = children_cpu() - cpu0  # the node and its pool, start-up and shutdown included
    status = subprocess.run([sys.executable, "-m", "verifier.cli", "--l1-url", l1_url, "--db", f"sqlite:///{db}",
                             "--key-file", str(work / "key.json"), "status", "--json"], capture_output=True,
                            text=True, timeout=120, env=env, cwd=cwd)
    verified = json.loads(status.stdout)["verified"]["batches"] if status.returncode == 0 else status.stderr
    _, _, trades = db_progress(db)
    assert ready is not None
    rate, rate_ready = trades / (done - started), trades / (done - ready)
    ver_steady = steady(judged, target["per_batch"])
    print(f"  run {run}, {label(variant)}: {trades:,} trades verified in {done - started:.2f} s from the process start = "
          f"{rate:,.0f} trades/s ({rate / target['rate']:.2f}x the sequencer); from the node ready "
          f"{done - ready:.2f} s = {rate_ready:,.0f} trades/s ({rate_ready / target['rate']:.2f}x); "
          f"{cpu:.2f} CPU s ({trades / cpu:,.0f} trades per CPU s, {trades / cpu / target['per_cpu']:.2f}x the "
          f"sequencer's), judge_batch {db_judge_seconds(db):.2f} s; the base layer beside it {l1_cpu:.2f} CPU s; "
          f"status: {verified}; before {before}, after {load()}; the node's {growth(mem0, mem, trades)}", flush=True)
    ratio_steady = None
    if ver_steady is not None and target["steady"]:
        ratio_steady = ver_steady[0] / target["steady"]
        print(f"    steady (the same batches as the sequencer's): {ver_steady[1]:,} trades at {ver_steady[0]:,.0f} "
              f"trades/s verified = {ratio_steady:.2f}x the sequencer's steady rate"
              f"{by_quarter(judged, target['per_batch'])}", flush=True)
    return {"start": rate / target["rate"], "ready": rate_ready / target["rate"], "steady": ratio_steady,
            "fair": None if ratio_steady is None else ratio_steady / target["fair"]}


def label(variant: str) -> str:
    workers, _, cpus = variant.partition("@")
    pinned = f" on {cpus} CPU{'s' if cpus != '1' else ''}" if cpus else ""
    return "baseline" if variant == "baseline" else f"workers {workers}{pinned}"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--orders", type=int, default=60_000, help="orders pushed (every one trades)")
    p.add_argument("--batch", type=int, default=1000, help="orders per request (makers, then their takers)")
    p.add_argument("--maker-fills", type=int, default=1, help="trades a maker's order is filled in, by as many "
                   "takers (1: every order fresh in its one trade, two signatures a trade, the worst case)")
    p.add_argument("--quotes", type=int, default=0, help="quotes a trade placed away from the price and cancelled, "
                   "as market makers re-quote (0: every order trades)")
    p.add_argument("--clients", type=int, default=2, choices=(1, 2),
                   help="concurrent connections (at most one per market, so requests never fill each other's)")
    p.add_argument("--batch-interval", type=float, default=1.0, help="the sequencer's --batch-interval")
    p.add_argument("--verify-workers", type=int, default=1, help="the sequencer's signature workers")
    p.add_argument("--verifier-workers", default="default",
                   help="RAMPART_VERIFIER_WORKERS for the verifier, or several to compare (1,2: inline, then "
                        "a pool of two); default: the verifier's own default; VALUE@K pins that verifier to the "
                        "first K CPUs (default@1,default: how replay scales from one CPU to all)")
    p.add_argument("--verifier-runs", type=int, default=2, help="fresh verifiers timed one after another, "
                   "per --verifier-workers value (values alternate)")
    p.add_argument("--baseline", type=Path, help="also time the verifier of this checkout (e.g. a git worktree "
                   "of an earlier commit), alternating with the others on the same batches")
    profilers = p.add_mutually_exclusive_group()
    profilers.add_argument("--profile", type=Path, help="cProfile each verifier into PROFILE.<run> (slows it down)")
    profilers.add_argument("--py-spy", type=Path, help="sample each verifier with py-spy (raw, idle included) into "
                   "PY_SPY.<run>")
    p.add_argument("--py-spy-gil", action="store_true", help="with --py-spy: only samples holding the GIL (each "
                   "thread's own Python work; C calls that release it, such as recovery, drop out)")
    p.add_argument("--repeat", type=int, default=1, help="the whole measurement this many times, each with a "
                   "fresh base layer and sequencer, so the ratios of every pair are taken minutes apart")
    a = p.parse_args()
    keys = Keys("bench/")
    genesis = dev_genesis(keys)
    choices = a.verifier_workers.split(",") + (["baseline"] if a.baseline else [])
    ratios: dict[str, dict[str, list[float]]] = {w: {"start": [], "ready": [], "steady": [], "fair": []} for w in choices}
    for repeat in range(a.repeat):
        if a.repeat > 1:
            print(f"--- measurement {repeat + 1} of {a.repeat}", flush=True)
        measure(a, keys, genesis, choices, ratios)
    for w, got in ratios.items():
        print(f"verifier ({label(w)}) / sequencer, goal at least 2x:")
        for kind, what in (("start", "trades/s from the process start / the sequencer's from its first order to "
                                     "its last post"),
                           ("ready", "from the node ready / the same"),
                           ("steady", "steady / steady (batches 2 to n-1 on both sides)"),
                           ("fair", "steady / the sequencer's steady had it had the load client's and the base "
                                    "layer's CPU too")):
            if got[kind]:
                print(f"  {kind:<6}: {', '.join(f'{r:.2f}x' for r in got[kind])}, median "
                      f"{statistics.median(got[kind]):.2f}x ({what})")


def measure(a: argparse.Namespace, keys: Keys, genesis: Any, choices: list[str],
            ratios: dict[str, dict[str, list[float]]]) -> None:
    """One base layer and sequencer, phase 1, then every verifier run of phase 2 on its batches."""
    with tempfile.TemporaryDirectory() as tmp_name, terminated_on_sigterm():
        procs = Procs(Path(tmp_name))
        try:
            (procs.tmp / "genesis.json").write_text(genesis_to_json(genesis))
            l1_port = free_port()
            l1_url = f"http://127.0.0.1:{l1_port}"
            l1 = procs.start([sys.executable, "-m", "l1_mock.cli", "--genesis", str(procs.tmp / "genesis.json"),
                         "--db", f"sqlite:///{procs.tmp / 'l1.db'}", "--port", str(l1_port), "--manual-time"],
                        "l1.log", probe=l1_url + "/info")
            target = sequencer_phase(a, procs, keys, genesis, l1_url, l1.pid)
            print(f"phase 2, fresh verifiers over those {target['batches']} batches (and the setup before them), "
                  f"the sequencer stopped:", flush=True)
            for run in range(a.verifier_runs * len(choices)):
                w = choices[run % len(choices)]
                got = verifier_phase(a, procs, keys, l1_url, l1.pid, run + 1, target, w)
                for kind, ratio in got.items():
                    if ratio is not None:
                        ratios[w][kind].append(ratio)
        finally:
            procs.stop_all()

if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:  # the children are stopped by then
        print("interrupted", file=sys.stderr)
        raise SystemExit(130) from None
