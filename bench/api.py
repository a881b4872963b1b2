#!/usr/bin/env python3
"""Signed orders per second through the real API, against a bare FastAPI endpoint, same run.

Starts `rampart-l1` and `rampart-sequencer` (and a bare FastAPI app that only parses the same
JSON) as processes on 127.0.0.1, funds the accounts, and signs every order before any clock
starts. The load client is a minimal keep-alive HTTP/1.1 client on asyncio, so the client is
not what is measured. Three figures:
  1. batch endpoint: orders/s through POST /v1/orders/batch (requests of --batch orders);
  2. single-order endpoint with --clients concurrent connections vs the bare endpoint;
  3. p50 / p99 acknowledgement latency of single orders sent at a steady 1,000 orders/s.

usage: python bench/api.py [--orders N] [--batch B] [--clients C] [--verify-workers W]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx

from contracts_spec import eip712
from contracts_spec.params import genesis_to_json
from contracts_spec.types import Order, TimeInForce
from harness.procs import free_port
from l1_mock.client import L1Client
from sequencer.scenario import ORACLE_NAMES, Keys, dev_genesis

PRICE = 500_000
ACCOUNTS = 16

BARE_APP = '''
import json
from fastapi import FastAPI, Request
app = FastAPI()

@app.post("/v1/orders")
async def parse_only(request: Request) -> dict:
    body = json.loads(await request.body())
    return {"status": "ok", "account": body["account"]}
'''


def start(cmd: list[str], url: str, probe: str, log: Path, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    out = log.open("ab")
    proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env)
    for _ in range(600):
        if proc.poll() is not None:
            raise RuntimeError(log.read_text()[-3000:])
        try:
            httpx.get(url + probe, timeout=1)
            return proc
        except httpx.HTTPError:
            time.sleep(0.05)
    raise RuntimeError(f"{cmd} did not start")


class Conn:
    """One keep-alive HTTP/1.1 connection: POST a prepared body, read the whole response."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, host: str) -> None:
        self.reader, self.writer, self.host = reader, writer, host

    @classmethod
    async def open(cls, port: int) -> Conn:
        reader, writer = await asyncio.open_connection("127.0.0.1", port, limit=1 << 24)
        return cls(reader, writer, f"127.0.0.1:{port}")

    async def post(self, path: str, body: bytes) -> bytes:
        self.writer.write(f"POST {path} HTTP/1.1\r\nHost: {self.host}\r\nContent-Type: application/json\r\n"
                          f"Content-Length: {len(body)}\r\n\r\n".encode() + body)
        head = await self.reader.readuntil(b"\r\n\r\n")
        length = 0
        for line in head.split(b"\r\n"):
            if line[:15].lower() == b"content-length:":
                length = int(line[15:])
        data = await self.reader.readexactly(length)
        if not head.startswith(b"HTTP/1.1 200"):
            raise RuntimeError(head.decode() + data.decode()[:500])
        return data

    def close(self) -> None:
        self.writer.close()


def sign_orders(keys: Keys, genesis: Any, n: int, nonce0: int) -> list[bytes]:
    """n crossing orders (about half trade), signed, as wire JSON objects."""
    preset = genesis.preset
    out = []
    for i in range(n):
        name = f"bench{i % ACCOUNTS}"
        account = keys.addr(name)
        is_buy = (i // ACCOUNTS) % 2 == 0
        price = PRICE + (i * 7919) % 401 - 200
        o = Order(account, 0, is_buy, price, 1 + i % 3, TimeInForce.GTC, False, 0, nonce0 + i, 0)  # type: ignore[arg-type]
        so = eip712.sign_order(preset, o, keys[name])
        out.append(json.dumps({"account": "0x" + account.hex(), "market": 0, "isBuy": is_buy, "price": price,
                               "lots": o.lots, "tif": "GTC", "nonce": o.nonce, "signature": "0x" + so.signature.hex()},
                              separators=(",", ":")).encode())
    return out


async def batch_run(port: int, bodies: list[bytes], size: int, clients: int) -> tuple[float, int]:
    requests = [b'{"orders":[' + b",".join(bodies[i:i + size]) + b"]}" for i in range(0, len(bodies), size)]
    conns = [await Conn.open(port) for _ in range(clients)]
    ok = 0

    async def worker(conn: Conn, mine: list[bytes]) -> None:
        nonlocal ok
        for req in mine:
            res = json.loads(await conn.post("/v1/orders/batch", req))["results"]
            ok += sum(1 for r in res if r["status"] == "ok")

    start = time.perf_counter()
    await asyncio.gather(*(worker(c, requests[i::clients]) for i, c in enumerate(conns)))
    elapsed = time.perf_counter() - start
    for c in conns:
        c.close()
    return elapsed, ok


async def single_run(port: int, bodies: list[bytes], clients: int) -> tuple[float, int]:
    conns = [await Conn.open(port) for _ in range(clients)]
    ok = 0

    async def worker(conn: Conn, mine: list[bytes]) -> None:
        nonlocal ok
        for body in mine:
            await conn.post("/v1/orders", body)
            ok += 1

    start = time.perf_counter()
    await asyncio.gather(*(worker(c, bodies[i::clients]) for i, c in enumerate(conns)))
    elapsed = time.perf_counter() - start
    for c in conns:
        c.close()
    return elapsed, ok


async def paced_run(port: int, bodies: list[bytes], rate: float, clients: int) -> list[float]:
    """Open loop: order i is due at i / rate; latency = ack time - due time."""
    conns = [await Conn.open(port) for _ in range(clients)]
    free: asyncio.Queue[Conn] = asyncio.Queue()
    for c in conns:
        free.put_nowait(c)
    latencies: list[float] = []

    async def one(body: bytes, due: float) -> None:
        conn = await free.get()
        try:
            await conn.post("/v1/orders", body)
        finally:
            free.put_nowait(conn)
        latencies.append(time.perf_counter() - due)

    start = time.perf_counter()
    tasks = []
    for i, body in enumerate(bodies):
        due = start + i / rate
        delay = due - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(body, due)))
    await asyncio.gather(*tasks)
    for c in conns:
        c.close()
    return sorted(latencies)


def fund(l1_url: str, keys: Keys, accounts: int) -> None:
    """Accounts bench0.. get native coin and USDC on the base layer and deposit the USDC."""
    for i in range(accounts):
        with L1Client(l1_url, keys[f"bench{i}"]) as c:
            c.faucet(native=10**18, usdc=10**15)
            c.deposit(10**15)


def settle(http: httpx.Client) -> None:
    """Wait until every output the sequencer has is in a posted batch (bounded)."""
    for _ in range(1200):
        h = http.get("/health").json()
        if h["batched"] >= h["outputs"] and not h["pendingPost"]:
            return
        time.sleep(0.1)


def bucket_quantile(metrics: str, name: str, q: float) -> float:
    """The upper bound of the Prometheus histogram bucket holding quantile q (inf: above every bucket)."""
    buckets = [(float(le), float(n)) for le, n in re.findall(rf'^{name}_bucket{{le="([^"]+)"}} (\S+)$', metrics, re.M)]
    total = buckets[-1][1] if buckets else 0.0
    return next((le for le, n in buckets if total and n >= q * total), float("inf"))


def cpu_seconds(pid: int, descendants: bool = True) -> float:
    """CPU time (user + system) of a process and its live descendants (the signature workers), from /proc."""
    tick = os.sysconf("SC_CLK_TCK")
    total, todo = 0.0, [pid]
    while todo:
        p = todo.pop()
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / tick
            if descendants:
                for task in Path(f"/proc/{p}/task").iterdir():
                    todo += [int(c) for c in (task / "children").read_text().split()]
        except (OSError, IndexError, ValueError):
            continue
    return total


class Spy:
    """`with spy(phase):` samples the sequencer with py-spy (pip install py-spy) when a folder is given."""

    def __init__(self, pid: int, folder: str | None) -> None:
        self.pid, self.folder = pid, folder

    @contextlib.contextmanager
    def __call__(self, phase: str) -> Iterator[None]:
        if self.folder is None:
            yield
            return
        Path(self.folder).mkdir(parents=True, exist_ok=True)
        spy = subprocess.Popen(["py-spy", "record", "-p", str(self.pid), "--format", "raw", "-r", "200", *os.environ.get("SPY_ARGS", "").split(),
                                "-o", str(Path(self.folder) / f"{phase}.txt")], stdout=subprocess.DEVNULL)
        time.sleep(1.0)
        try:
            yield
        finally:
            spy.send_signal(signal.SIGINT)
            spy.wait(30)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--orders", type=int, default=40_000, help="orders through the batch endpoint")
    p.add_argument("--batch", type=int, default=1000, help="orders per batch request")
    p.add_argument("--batch-clients", type=int, default=4)
    p.add_argument("--single", type=int, default=6_000, help="orders through the single-order endpoint")
    p.add_argument("--clients", type=int, default=32)
    p.add_argument("--paced", type=int, default=5_000, help="orders at 1,000/s for the latency figure")
    p.add_argument("--verify-workers", type=int, default=1)
    p.add_argument("--profile", metavar="DIR", help="py-spy the sequencer through each phase into DIR/<phase>.txt")
    a = p.parse_args()
    keys = Keys("bench/")
    genesis = dev_genesis(keys)
    procs: list[subprocess.Popen[bytes]] = []
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        (tmp / "genesis.json").write_text(genesis_to_json(genesis))
        (tmp / "bare.py").write_text(BARE_APP)
        l1_port, seq_port, bare_port = free_port(), free_port(), free_port()
        l1_url, seq_url = f"http://127.0.0.1:{l1_port}", f"http://127.0.0.1:{seq_port}"
        env = {**os.environ, "RAMPART_SEQUENCER_KEY": keys["sequencer"].hex()}
        try:
            procs.append(start([sys.executable, "-m", "l1_mock.cli", "--genesis", str(tmp / "genesis.json"),
                                "--db", f"sqlite:///{tmp / 'l1.db'}", "--port", str(l1_port), "--manual-time"],
                               l1_url, "/info", tmp / "l1.log"))
            procs.append(start([sys.executable, "-m", "sequencer.cli", "--l1", l1_url, "--db",
                                f"sqlite:///{tmp / 'journal.db'}", "--port", str(seq_port), "--batch-interval", "1",
                                "--verify-workers", str(a.verify_workers)], seq_url, "/health", tmp / "seq.log", env))
            procs.append(start([sys.executable, "-m", "uvicorn", "--app-dir", str(tmp), "bare:app", "--port",
                                str(bare_port), "--log-level", "warning"], f"http://127.0.0.1:{bare_port}", "/docs",
                               tmp / "bare.log"))
            http = httpx.Client(base_url=seq_url, timeout=60)
            fund(l1_url, keys, ACCOUNTS)
            now = int(http.get("/v1/time").json()["time"])
            reports = []
            for n in ORACLE_NAMES[:2]:
                r = eip712.sign_oracle_report(genesis.preset, keys[n], 0, PRICE, now)
                reports.append({"market": 0, "price": PRICE, "time": now, "signature": "0x" + r.signature.hex()})
            http.post("/v1/oracle/reports", json={"reports": reports}).raise_for_status()
            while http.get("/health").json()["outputs"] < ACCOUNTS + 1:
                time.sleep(0.1)
            print(f"signing {a.orders + 2 * a.single + a.paced:,} orders ...", flush=True)
            batch_bodies = sign_orders(keys, genesis, a.orders, 0)
            single_bodies = sign_orders(keys, genesis, a.single, 10**9)
            paced_bodies = sign_orders(keys, genesis, a.paced, 2 * 10**9)

            spy = Spy(procs[1].pid, a.profile)
            seq_pid = procs[1].pid
            l1_pid = procs[0].pid
            cpu0, own0, l1_0, me0 = (cpu_seconds(seq_pid), cpu_seconds(seq_pid, descendants=False),
                                     cpu_seconds(l1_pid), sum(os.times()[:2]))
            with spy("batch"):
                elapsed, ok = asyncio.run(batch_run(seq_port, batch_bodies, a.batch, a.batch_clients))
            cpu, own = cpu_seconds(seq_pid) - cpu0, cpu_seconds(seq_pid, descendants=False) - own0
            l1, me = cpu_seconds(l1_pid) - l1_0, sum(os.times()[:2]) - me0
            # both cores are busy: the serving process's share bounds the rate, and so does the sum
            # of every process's (the base layer's and this client's too)
            print(f"batch endpoint: {ok:,} of {len(batch_bodies):,} orders acknowledged in {elapsed:.2f} s = "
                  f"{ok / elapsed:,.0f} signed orders/s ({a.batch} per request, {a.batch_clients} connections); "
                  f"sequencer CPU {cpu / ok * 1e6:.0f} us/order, of which the serving process {own / ok * 1e6:.0f}; "
                  f"base layer {l1 / ok * 1e6:.0f}, load client {me / ok * 1e6:.0f} (load {os.getloadavg()[0]:.1f})")
            settle(http)  # the batches of the last phase are built and posted before the next starts
            bare_pid = procs[2].pid
            bare_cpu = cpu_seconds(bare_pid)
            bare_t, bare_n = asyncio.run(single_run(bare_port, single_bodies, a.clients))
            bare_cpu = cpu_seconds(bare_pid) - bare_cpu
            cpu0 = cpu_seconds(seq_pid)
            with spy("single"):
                seq_t, seq_n = asyncio.run(single_run(seq_port, single_bodies, a.clients))
            cpu = cpu_seconds(seq_pid) - cpu0
            print(f"single-order endpoint, {a.clients} connections: rampart {seq_n / seq_t:,.0f} orders/s, "
                  f"bare FastAPI parse-only {bare_n / bare_t:,.0f} req/s, ratio {seq_n / seq_t / (bare_n / bare_t):.2f}; "
                  f"CPU per request: rampart {cpu / seq_n * 1e6:.0f} us, bare {bare_cpu / bare_n * 1e6:.0f} us "
                  f"(load {os.getloadavg()[0]:.1f})")
            settle(http)
            with spy("paced"):
                lat = asyncio.run(paced_run(seq_port, paced_bodies, 1000.0, 64))
            print(f"ack latency at 1,000 orders/s ({len(lat):,} orders): p50 {lat[len(lat) // 2] * 1e3:.2f} ms, "
                  f"p99 {lat[int(len(lat) * 0.99)] * 1e3:.2f} ms")
            text = http.get("/metrics").text
            print(f"sequencer's own view over the run: trading answers p50 <= {bucket_quantile(text, 'rampart_trading_answer_seconds', 0.5) * 1e3:g} ms, "
                  f"p99 <= {bucket_quantile(text, 'rampart_trading_answer_seconds', 0.99) * 1e3:g} ms; event-loop lag "
                  f"p99 <= {bucket_quantile(text, 'rampart_event_loop_lag_seconds', 0.99) * 1e3:g} ms; "
                  f"batch build p50 <= {bucket_quantile(text, 'rampart_batch_build_seconds', 0.5) * 1e3:g} ms")
            health = http.get("/health").json()
            print(f"sequencer: {health['outputs']:,} outputs, {health['batches']} batches posted")
        finally:
            for proc in reversed(procs):
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(30)
                except subprocess.TimeoutExpired:
                    proc.kill()


if __name__ == "__main__":
    main()
