"""A local Rampart network as real processes on 127.0.0.1: the base layer, the sequencer (with
fault injection when asked: dev preset only), verifiers with funded keys, an oracle (the
`rampart-oracle` feeder process, or the harness's own driver), and, with fault injection, the
liar's defender (harness.sides.StandIn): the sequencer defends its own batches, not its lies. SQLite files in a work
directory, or PostgreSQL schemas of one URL; `stop()` leaves no process and no schema behind.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from contracts_spec.params import genesis_to_json
from contracts_spec.types import Genesis
from harness.oracle import OracleDriver
from harness.procs import Proc, console, free_port, wait_for
from l1_mock.client import L1Client
from sequencer.scenario import Keys, dev_genesis
from sequencer.trader_client import Trader
from verifier.keys import write_key

USDC = 10**6
NATIVE = 10**18
BTC, ETH = 0, 1
START_PRICES = {BTC: 600_000, ETH: 300_000}  # 60,000.0 and 3,000.00 USD in ticks


@dataclass
class Options:
    workdir: Path
    postgres: str | None = None  # a SQLAlchemy URL: every service in its own schema of it
    batch_interval: float = 0.5
    follow_interval: float = 0.2
    verifier_poll: float = 0.2
    verifiers: int = 2
    faults: bool = False  # RAMPART_FAULT_FILE for the sequencer, and a defender that knows its lies
    oracle: str = "driver"  # driver (the harness signs prices), feeder (rampart-oracle), none
    feeder_step_ppm: int = 1000
    start_prices: dict[int, int] = field(default_factory=lambda: dict(START_PRICES))
    namespace: str = "trader-"  # trader keys: Keys(namespace)[name]
    sequencer_stake: int = 20  # times the preset's minimum: open games escrow from it


class Network:
    def __init__(self, opts: Options) -> None:
        self.opts = opts
        self.work = opts.workdir
        self.work.mkdir(parents=True, exist_ok=True)
        self.keys = Keys()  # the dev genesis keys: sequencer, oracle-0..2, governance; verifiers
        self.trader_keys = Keys(opts.namespace)
        self.run_id = uuid.uuid4().hex[:8]
        self.procs: dict[str, Proc] = {}
        self.schemas: list[str] = []
        self.genesis: Genesis | None = None
        self.l1: L1Client | None = None
        self.seq_http: httpx.Client | None = None
        self.oracle: OracleDriver | None = None
        self.traders: dict[str, Trader] = {}
        self.fault_file = self.work / "faults.json"
        self.defender_mode = "none"
        self.l1_port, self.seq_port = free_port(), free_port()
        self.metrics_ports: dict[str, int] = {}  # verifier -> its Prometheus metrics port

    # --- addresses ----------------------------------------------------------------------------------

    @property
    def l1_url(self) -> str:
        return f"http://127.0.0.1:{self.l1_port}"

    @property
    def seq_url(self) -> str:
        return f"http://127.0.0.1:{self.seq_port}"

    def db(self, name: str) -> list[str]:
        """The --db (and --db-schema) flags of one service."""
        if self.opts.postgres is None:
            return ["--db", f"sqlite:///{self.work / (name + '.db')}"]
        schema = f"rampart_{self.run_id}_{name.replace('-', '_')}"
        if schema not in self.schemas:
            self.schemas.append(schema)
        return ["--db", self.opts.postgres, "--db-schema", schema]

    def db_url(self, name: str) -> tuple[str, str | None]:
        """(SQLAlchemy URL, schema) of one service's database."""
        flags = self.db(name)
        return flags[1], (flags[3] if len(flags) > 2 else None)

    def verifier_names(self) -> list[str]:
        return [f"verifier-{i + 1}" for i in range(self.opts.verifiers)]

    def verifier_cmd(self, name: str) -> list[str]:
        """The CLI prefix for one verifier (its database and key): add `run`, `status`, ..."""
        return [*console("rampart-verifier"), "--l1-url", self.l1_url, *self._vdb(name), "--key-file",
                str(self.work / f"{name}.key")]

    def _vdb(self, name: str) -> list[str]:
        flags = self.db(name)
        return [flags[0], flags[1]] + (["--db-schema", flags[3]] if len(flags) > 2 else [])

    def status_command(self, name: str) -> str:
        db = self._vdb(name)
        return (f"rampart-verifier --l1-url {self.l1_url} {' '.join(db)} --key-file {self.work / (name + '.key')} status")

    # --- lifecycle -----------------------------------------------------------------------------------

    def start(self) -> Network:
        try:
            self._start()
        except BaseException:
            self.stop()
            raise
        return self

    def _start(self) -> None:
        genesis = dev_genesis(self.keys, genesis_time=int(time.time()))
        self.genesis = genesis
        gfile = self.work / "genesis.json"
        gfile.write_text(genesis_to_json(genesis))
        self.procs["l1"] = Proc("base layer", [*console("rampart-l1"), "--genesis", str(gfile), *self.db("l1"),
                                               "--port", str(self.l1_port)], self.work / "l1.log",
                                ready_url=f"{self.l1_url}/info").start()
        self.l1 = L1Client(self.l1_url, self.keys["sequencer"])
        preset = genesis.preset
        # Stake well above the minimum: every open game escrows a bond from it, and posting
        # needs the minimum free
        stake = preset.sequencer_stake_min * self.opts.sequencer_stake
        self.l1.faucet(native=stake + 10 * NATIVE)
        self.l1.register_sequencer(stake)
        for name in self.verifier_names():
            key_file = self.work / f"{name}.key"
            if not key_file.exists():
                write_key(key_file, self.keys[name])
            self.l1.faucet(native=50 * preset.challenger_bond, to=self.keys.addr(name))
        env: dict[str, str | None] = {"RAMPART_FAULT_FILE": None}  # never inherited: only when asked
        if self.opts.faults:
            self.fault_file.write_text('{"faults": []}')
            env["RAMPART_FAULT_FILE"] = str(self.fault_file)
        self.procs["sequencer"] = Proc("sequencer", [
            *console("rampart-sequencer"), "--l1", self.l1_url, *self.db("sequencer"), "--port", str(self.seq_port),
            "--batch-interval", str(self.opts.batch_interval), "--follow-interval", str(self.opts.follow_interval),
        ], self.work / "sequencer.log", env, ready_url=f"{self.seq_url}/health").start()
        self.seq_http = httpx.Client(base_url=self.seq_url, timeout=30)
        for name in self.verifier_names():
            self.start_verifier(name)
        if self.opts.faults:
            # The sequencer defends its own batches; the lies it was told to post are not its
            # batches, so a defender that knows them plays the liar's side
            self.defender_mode = "lies"
            self.start_defender()
        if self.opts.oracle == "feeder":
            self.start_feeder(self.opts.start_prices)
        elif self.opts.oracle == "driver":
            self.oracle = OracleDriver(self.seq_url, genesis.preset, [self.keys[f"oracle-{i}"] for i in range(3)],
                                       dict(self.opts.start_prices), genesis.oracle_quorum)
            self.oracle.start()
        wait_for(lambda: all(self.market(m)["oraclePrice"] > 0 for m in self.opts.start_prices), "first oracle prices")

    def start_verifier(self, name: str) -> Proc:
        port = self.metrics_ports.setdefault(name, free_port())
        env: dict[str, str | None] = {"RAMPART_VERIFIER_POLL_INTERVAL": str(self.opts.verifier_poll),
                                      "RAMPART_VERIFIER_METRICS_PORT": str(port)}
        proc = self.procs.get(name) or Proc(name, [*self.verifier_cmd(name), "run"], self.work / f"{name}.log", env)
        self.procs[name] = proc
        mark = len(proc.tail(10**9))
        proc.start()
        wait_for(lambda: "following" in proc.tail(10**9)[mark:] or _exited(proc), f"{name} to start")
        proc.check_alive()
        return proc

    def start_defender(self) -> Proc:
        cmd = [*console("rampart-harness"), "defend", "--l1", self.l1_url, *self.db("defender"),
               "--fault-log", str(self.fault_file) + ".log"]
        if self.defender_mode == "lies":
            cmd.append("--lies-only")
        proc = Proc("defender", cmd, self.work / "defender.log")
        self.procs["defender"] = proc
        proc.start()
        wait_for(lambda: "defender ready" in proc.tail(10**9) or _exited(proc), "the defender to start")
        proc.check_alive()
        return proc

    def start_feeder(self, prices: dict[int, int], seed: int = 1) -> Proc:
        old = self.procs.pop("oracle", None)
        if old is not None:
            old.stop()
        start = ",".join(f"{m}={p}" for m, p in sorted(prices.items()))
        proc = Proc("oracle feeder", [*console("rampart-oracle"), "--sequencer", self.seq_url, "--dev-signers", "3",
                                      "--start", start, "--step-ppm", str(self.opts.feeder_step_ppm),
                                      "--seed", str(seed), "--interval", "0.5"], self.work / "oracle.log")
        self.procs["oracle"] = proc
        return proc.start()

    def restart(self, name: str, kill9: bool = False) -> Proc:
        proc = self.procs[name]
        if kill9:
            proc.kill9()
        else:
            proc.stop()
        if name.startswith("verifier"):
            return self.start_verifier(name)
        if name == "defender":
            return self.start_defender()
        return proc.start()

    def stop(self) -> None:
        if self.oracle is not None:
            self.oracle.stop()
        for t in self.traders.values():
            t.close()
        self.traders.clear()
        for name in reversed(list(self.procs)):
            self.procs[name].stop()
        if self.seq_http is not None:
            self.seq_http.close()
        if self.l1 is not None:
            self.l1.close()
        self.drop_schemas()

    def drop_schemas(self) -> None:
        if not self.schemas or self.opts.postgres is None:
            return
        from sqlalchemy import create_engine, text

        engine = create_engine(self.opts.postgres)
        try:
            with engine.begin() as conn:
                for schema in self.schemas:
                    conn.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
        finally:
            engine.dispose()
        self.schemas.clear()

    def __enter__(self) -> Network:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- reads and dev controls ----------------------------------------------------------------------

    def health(self) -> dict[str, Any]:
        assert self.seq_http is not None
        return dict(self.seq_http.get("/health").json())

    def market(self, market: int) -> dict[str, Any]:
        assert self.seq_http is not None
        return dict(self.seq_http.get(f"/v1/markets/{market}").json())

    def seq_batches(self, after: int = 0, limit: int = 1000) -> list[dict[str, Any]]:
        assert self.seq_http is not None
        return list(self.seq_http.get("/v1/batches", params={"after": after, "limit": limit}).json())

    def advance(self, seconds: int) -> None:
        """The base layer's dev time advance (mines a block)."""
        assert self.l1 is not None
        self.l1.increase_time(seconds)

    def now(self) -> int:
        assert self.l1 is not None
        return self.l1.now()

    def trader(self, name: str) -> Trader:
        t = self.traders.get(name)
        if t is None:
            t = self.traders[name] = Trader(self.trader_keys[name], self.l1_url, self.seq_url)
        return t

    def address(self, name: str) -> bytes:
        return self.trader_keys.addr(name)

    def fund(self, names: list[str], usdc: int, bound: float = 60.0) -> None:
        """USDC from the faucet, deposited into the rollup; returns once the sequencer credited it."""
        want = {}
        for name in names:
            t = self.trader(name)
            before = int(t.margin()["collateral"])
            t.faucet(usdc=usdc)
            t.deposit(usdc)
            want[name] = before + usdc
        for name in names:
            def funded(n: str = name) -> bool:
                return int(self.trader(n).margin()["collateral"]) >= want[n]

            wait_for(funded, f"{name}'s deposit", bound)

    def set_price(self, market: int, price: int, bound: float = 30.0) -> None:
        """Move the oracle (the harness's driver) and wait until the sequencer has the price."""
        assert self.oracle is not None, "prices are set through the harness's oracle driver"
        self.oracle.set(market, price)
        wait_for(lambda: self.market(market)["oraclePrice"] == price, f"oracle price {price} on market {market}", bound)


def _exited(proc: Proc) -> bool:
    return not proc.alive()
