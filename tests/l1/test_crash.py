"""kill -9 of a `rampart-l1` process under load, then a restart: nothing acknowledged is lost."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from contracts_spec.types import Genesis
from l1_mock.client import L1Client, L1Error
from sequencer.scenario import Keys

from .conftest import free_port, write_genesis


class Process:
    def __init__(self, db: tuple[str, str | None], genesis_file: Path, log: Path) -> None:
        self.db, self.genesis_file, self.log = db, genesis_file, log
        self.proc: subprocess.Popen[bytes] | None = None
        self.port = 0

    def start(self) -> str:
        self.port = free_port()
        cmd = [sys.executable, "-m", "l1_mock.cli", "--genesis", str(self.genesis_file), "--db", self.db[0],
               "--port", str(self.port), "--manual-time"]
        if self.db[1]:
            cmd += ["--db-schema", self.db[1]]
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT)
        url = f"http://127.0.0.1:{self.port}"
        for _ in range(600):  # until it answers (bounded; not a timing assertion)
            if self.proc.poll() is not None:
                raise RuntimeError(self.log.read_text())
            try:
                httpx.get(url + "/info", timeout=1).raise_for_status()
                return url
            except httpx.HTTPError:
                threading.Event().wait(0.05)
        raise RuntimeError("rampart-l1 did not start")

    def kill9(self) -> None:
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)


@pytest.fixture
def process(db: tuple[str, str | None], tmp_path: Path, genesis: Genesis) -> Iterator[Process]:
    p = Process(db, write_genesis(tmp_path / "genesis.json", genesis), tmp_path / "l1.log")
    yield p
    p.stop()


def test_kill9_under_load_loses_nothing_acknowledged(process: Process, keys: Keys) -> None:
    url = process.start()
    names = [f"user{i}" for i in range(4)]
    acked: dict[str, list[dict[str, Any]]] = {n: [] for n in names}
    enough = threading.Event()

    def load(name: str) -> None:
        c = L1Client(url, keys[name], timeout=5)
        try:
            while True:
                try:
                    r = c.faucet(native=1, usdc=2)
                    c_dep = c.deposit(1)
                except L1Error:
                    return  # the process died under us: what was acknowledged is recorded
                acked[name].append({"faucet": r, "deposit": c_dep})
                if sum(len(v) for v in acked.values()) >= 200:
                    enough.set()
        finally:
            c.close()

    threads = [threading.Thread(target=load, args=(n,)) for n in names]
    for t in threads:
        t.start()
    enough.wait(120)
    process.kill9()
    for t in threads:
        t.join(30)
    assert sum(len(v) for v in acked.values()) >= 200

    url = process.start()
    with L1Client(url) as c:
        deposits = {}
        for n in names:
            done = acked[n]
            account = c.account(keys.addr(n))
            # every acknowledged transaction is there, with its receipt and its effect
            assert account["nonce"] >= 2 * len(done)
            assert account["usdc"] >= len(done)
            for rec in done:
                assert c.receipt(rec["faucet"]["tx_hash"]) == rec["faucet"]
                deposits[rec["deposit"]] = n
        for index, n in deposits.items():
            entry = c.deposit_entry(index)
            assert entry is not None and entry.account == keys.addr(n)
        events = list(c.follow())
        assert len([e for e in events if e.name == "Deposited"]) >= len(deposits)
        # the restarted chain goes on where it stopped
        c2 = c.with_key(keys["user0"])
        c2.faucet(native=1)
        c2.close()
