"""The compose network without Docker: every service of docker/compose.yaml started exactly as
compose starts it — through the image's entry point, with the same command, environment,
dependency conditions and health checks — with hostnames mapped to 127.0.0.1 and free ports,
volumes to temporary directories and PostgreSQL to RAMPART_TEST_PG (fresh databases, dropped
afterwards). The network works when a batch with a trade, posted by the sequencer, is found
valid by all three verifiers; then every process stops on SIGTERM, as `docker compose down` asks.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import create_engine, make_url, text
from test_compose import DOCKER, IMAGE_TOOLS, command_of, environment_of, load_compose, mounts_of

from contracts_spec import eip712
from contracts_spec.crypto import address_of_private_key, private_key_from_seed
from contracts_spec.params import genesis_from_json
from contracts_spec.types import Order, TimeInForce
from harness.procs import free_port
from l1_mock.client import L1Client

PG_URL = os.environ.get("RAMPART_TEST_PG")
pytestmark = pytest.mark.skipif(not PG_URL, reason="RAMPART_TEST_PG is not set (the network runs on PostgreSQL)")

BOUND = 180.0  # seconds any one wait may take before the test gives up (not a timing assertion)
STOP_GRACE = 10.0  # what `docker compose down` waits before it kills
USDC = 10**6


def wait_for(predicate: Callable[[], Any], what: str, bound: float = BOUND) -> Any:
    deadline = time.monotonic() + bound
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for {what}")
        time.sleep(0.2)


def seconds(value: str | int | float | None, default: float) -> float:
    if value is None:
        return default
    m = re.fullmatch(r"(\d+(?:\.\d+)?)(ms|s|m)?", str(value))
    assert m, value
    return float(m.group(1)) * {"ms": 0.001, "s": 1, "m": 60, None: 1}[m.group(2)]


# --- compose, mapped onto this machine --------------------------------------------------------------------


@dataclass
class Service:
    name: str
    spec: dict[str, Any]
    command: list[str]
    env: dict[str, str]
    health: list[str] | None
    root: Path  # the image's read-only working directory and HOME: must stay empty
    log: Path
    proc: subprocess.Popen[bytes] | None = None
    done: bool = False

    @property
    def one_shot(self) -> bool:
        return self.spec.get("restart") == "no"

    @property
    def depends_on(self) -> dict[str, str]:
        return {d: c["condition"] for d, c in (self.spec.get("depends_on") or {}).items()}


@dataclass
class Localized:
    """The compose file with its hosts, ports, volumes and databases mapped onto this machine."""

    compose: dict[str, Any]
    tmp: Path
    pg: Any  # sqlalchemy URL of the test server
    prefix: str = field(default_factory=lambda: "rc" + uuid.uuid4().hex[:10])
    ports: dict[tuple[str, int], int] = field(default_factory=dict)
    volumes: dict[str, Path] = field(default_factory=dict)
    databases: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name, svc in self.compose["services"].items():
            for p in svc.get("ports") or []:
                self.ports[(name, int(str(p).rsplit(":", 1)[1]))] = free_port()
        for vol in self.compose.get("volumes") or {}:
            # a new named volume takes its mount point's mode from the image: 0700 for keys
            self.volumes[vol] = self.tmp / "volumes" / vol
            self.volumes[vol].mkdir(parents=True, mode=0o700)
        created = self.compose["services"]["postgres"]["environment"]["POSTGRES_MULTIPLE_DATABASES"].split()
        self.databases = {db: f"{self.prefix}_{db}" for db in created}

    def url(self, service: str, port: int) -> str:
        return f"http://127.0.0.1:{self.ports[(service, port)]}"

    def map_value(self, value: str, service: str, mounts: list[tuple[Path, str]]) -> str:
        if value.startswith("postgresql"):
            url = make_url(value)
            if url.host == "postgres":
                value = url.set(username=self.pg.username, password=self.pg.password, host=self.pg.host,
                                port=self.pg.port, database=self.databases[url.database]) \
                    .render_as_string(hide_password=False)
        for (host, port), local in self.ports.items():
            value = re.sub(rf"//{re.escape(host)}:{port}\b", f"//127.0.0.1:{local}", value)
            if host == service:  # the service's own health check asks itself on loopback
                value = re.sub(rf"//(127\.0\.0\.1|localhost):{port}\b", f"//127.0.0.1:{local}", value)
        for target, local_dir in mounts:
            value = re.sub(rf"{re.escape(target)}(?=/|,|$)", str(local_dir), value)
        return value

    def service(self, name: str) -> Service:
        spec = self.compose["services"][name]
        mounts = sorted(((str(t), self.volumes[src]) for src, t, _ in mounts_of(spec) if src in self.volumes),
                        key=lambda m: -len(m[0]))
        env = {}
        for k, v in environment_of(spec).items():
            v = self.map_value(v, name, mounts)
            if k.endswith("_HOST") and v == "0.0.0.0":
                v = "127.0.0.1"  # servers here bind loopback only
            if k.endswith("_PORT") and (name, int(v)) in self.ports:
                v = str(self.ports[(name, int(v))])
            env[k] = v
        health = spec.get("healthcheck", {}).get("test")
        if health is not None:
            assert health[0] == "CMD"
            health = [self.map_value(str(x), name, mounts) for x in health[1:]]
        command = [self.map_value(x, name, mounts) for x in command_of(spec)] if "command" in spec else []
        root = self.tmp / "root" / name
        root.mkdir(parents=True)
        return Service(name, spec, command, env, health, root, self.tmp / f"{name}.log")


# --- running it -------------------------------------------------------------------------------------------


class Network:
    def __init__(self, local: Localized) -> None:
        self.local = local
        self.services = {n: local.service(n) for n in local.compose["services"]}
        bin_dir = local.tmp / "bin"
        bin_dir.mkdir()
        # The image installs docker/<tool>.py as rampart-<tool>, run by the package's python
        for tool, source in IMAGE_TOOLS.items():
            shim = bin_dir / tool
            shim.write_text(f'#!/bin/sh\nexec "{sys.executable}" "{DOCKER / source}" "$@"\n')
            shim.chmod(0o755)
        self.path = os.pathsep.join([str(bin_dir), str(Path(sys.executable).parent), "/usr/local/bin", "/usr/bin",
                                     "/bin"])

    def environ(self, svc: Service) -> dict[str, str]:
        """The container's environment: the image's ENV and the service's, nothing of ours."""
        return {"PATH": self.path, "HOME": str(svc.root), "LANG": "C.UTF-8", "PYTHONUNBUFFERED": "1",
                "PYTHONDONTWRITEBYTECODE": "1", **svc.env}

    def order(self) -> list[str]:
        seen: list[str] = []

        def visit(name: str) -> None:
            if name not in seen:
                for dep in self.services[name].depends_on:
                    visit(dep)
                seen.append(name)

        for name in self.services:
            visit(name)
        return seen

    def healthy(self, svc: Service) -> bool:
        assert svc.health is not None
        if svc.proc is not None and svc.proc.poll() is not None:
            raise AssertionError(f"{svc.name} exited {svc.proc.returncode}:\n{self.tail(svc)}")
        timeout = seconds(svc.spec["healthcheck"].get("timeout"), 30)
        try:
            r = subprocess.run(svc.health, env=self.environ(svc), cwd=svc.root, capture_output=True,
                               timeout=timeout)
        except subprocess.TimeoutExpired:
            return False
        return r.returncode == 0

    def tail(self, svc: Service) -> str:
        return svc.log.read_text(errors="replace")[-4000:] if svc.log.exists() else ""

    def init_postgres(self, svc: Service) -> None:
        """The postgres service is the test's server: its init script creates this test's databases."""
        pg = self.local.pg
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "POSTGRES_USER": pg.username or "postgres",
               "POSTGRES_DB": pg.database or "postgres", "PGHOST": pg.host or "127.0.0.1",
               "PGPORT": str(pg.port or 5432),
               "POSTGRES_MULTIPLE_DATABASES": " ".join(self.local.databases.values())}
        if pg.password:
            env["PGPASSWORD"] = pg.password
        if shutil.which("psql"):
            script = [m for m in mounts_of(svc.spec) if str(m[1]).startswith("/docker-entrypoint-initdb.d")]
            path = (DOCKER / script[0][0]).resolve()
            r = subprocess.run(["sh", str(path)], env=env, capture_output=True, text=True, timeout=60)
            assert r.returncode == 0, r.stderr
        else:  # no psql here: create them as the script would
            engine = create_engine(pg, isolation_level="AUTOCOMMIT")
            with engine.connect() as c:
                for db in self.local.databases.values():
                    c.execute(text(f'CREATE DATABASE "{db}"'))
            engine.dispose()
        svc.done = True

    def start(self, name: str) -> None:
        svc = self.services[name]
        for dep, condition in svc.depends_on.items():
            d = self.services[dep]
            if condition == "service_completed_successfully":
                assert d.done, f"{name} needs {dep} to have completed"
            elif dep != "postgres":
                wait_for(lambda d=d: self.healthy(d), f"{dep} healthy")
        if name == "postgres":
            self.init_postgres(svc)
            return
        argv = ["rampart-entrypoint", *svc.command]
        with svc.log.open("ab") as out:
            if svc.one_shot:
                r = subprocess.run(argv, env=self.environ(svc), cwd=svc.root, stdout=out, stderr=subprocess.STDOUT,
                                   timeout=BOUND)
                assert r.returncode == 0, f"{name} exited {r.returncode}:\n{self.tail(svc)}"
                svc.done = True
            else:
                svc.proc = subprocess.Popen(argv, env=self.environ(svc), cwd=svc.root, stdout=out,
                                            stderr=subprocess.STDOUT, start_new_session=True)

    def up(self) -> None:
        for name in self.order():
            self.start(name)
        for svc in self.services.values():
            if svc.health is not None and svc.name != "postgres":
                wait_for(lambda s=svc: self.healthy(s), f"{svc.name} healthy")

    def down(self) -> dict[str, int | None]:
        """SIGTERM to each running service, dependants first; kill after the grace period."""
        codes: dict[str, int | None] = {}
        for name in reversed(self.order()):
            proc = self.services[name].proc
            if proc is None:
                continue
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(STOP_GRACE)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)  # with any worker processes it started
                    proc.wait()
                    codes[name] = None
                    continue
            codes[name] = proc.returncode
        return codes

    def cli(self, name: str, *args: str) -> Any:
        svc = self.services[name]
        r = subprocess.run(["rampart-verifier", *args, "--json"], env=self.environ(svc), cwd=svc.root,
                           capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, r.stderr
        return json.loads(r.stdout)


def drop_databases(pg: Any, names: list[str]) -> None:
    engine = create_engine(pg, isolation_level="AUTOCOMMIT")
    with engine.connect() as c:
        for db in names:
            c.execute(text(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)'))
    engine.dispose()


@pytest.fixture
def network(tmp_path: Path) -> Iterator[Network]:
    assert PG_URL is not None
    pg = make_url(PG_URL)
    local = Localized(load_compose({"POSTGRES_PASSWORD": uuid.uuid4().hex}), tmp_path, pg)
    net = Network(local)
    try:
        yield net
    finally:
        net.down()
        drop_databases(pg, list(local.databases.values()))
        for svc in net.services.values():  # shown by pytest when the test failed
            print(f"--- {svc.name} (exit {svc.proc.returncode if svc.proc else '-'})\n{net.tail(svc)}")


# --- a trader on the network ----------------------------------------------------------------------------------


class Trader:
    def __init__(self, seed: str, l1: str, sequencer: str) -> None:
        self.key = private_key_from_seed(seed.encode())
        self.address = address_of_private_key(self.key)
        self.l1 = l1
        self.http = httpx.Client(base_url=sequencer, timeout=30)
        with L1Client(l1) as c:
            self.preset = c.genesis().preset
        self.nonce = 0

    def deposit(self, amount: int) -> None:
        with L1Client(self.l1, self.key) as c:
            c.faucet(native=10**18, usdc=amount)
            c.deposit(amount)

    def collateral(self) -> int:
        now = int(self.http.get("/v1/time").json()["time"])
        sig = eip712.sign_subscribe(self.preset, self.key, now)
        r = self.http.get(f"/v1/accounts/0x{self.address.hex()}/margin",
                          headers={"X-Rampart-Timestamp": str(now), "X-Rampart-Signature": "0x" + sig.hex()})
        return int(r.json()["collateral"]) if r.status_code == 200 else 0

    def place(self, is_buy: bool, price: int, lots: int) -> dict[str, Any]:
        self.nonce += 1
        o = Order(self.address, 0, is_buy, price, lots, TimeInForce.GTC, False, 0, self.nonce, 0)  # type: ignore[arg-type]
        so = eip712.sign_order(self.preset, o, self.key)
        wire = {"account": "0x" + self.address.hex(), "market": 0, "isBuy": is_buy, "price": price, "lots": lots,
                "tif": "GTC", "reduceOnly": False, "expiry": 0, "nonce": self.nonce, "clientId": 0,
                "signature": "0x" + so.signature.hex()}
        r = self.http.post("/v1/orders", json=wire)
        assert r.status_code == 200, r.text
        return dict(r.json())


# --- the test -------------------------------------------------------------------------------------------------------


def test_the_compose_network_runs_as_compose_starts_it(network: Network) -> None:
    network.up()
    local = network.local
    l1_url, seq_url = local.url("l1", 8545), local.url("sequencer", 8000)

    # the base layer runs the genesis devnet-init wrote into its volume, naming the generated keys
    genesis_file = local.volumes["genesis"] / "genesis.json"
    addresses = json.loads((local.volumes["genesis"] / "addresses.json").read_text())
    with L1Client(l1_url) as c:
        assert c.genesis() == genesis_from_json(genesis_file.read_text())
        assert "0x" + c.genesis().sequencer.hex() == addresses["sequencer"]
        assert all(int(c.account(v)["native"]) >= c.genesis().preset.challenger_bond for v in addresses["verifiers"])

    # a trade, through the sequencer's API
    maker, taker = (Trader(f"compose-{uuid.uuid4().hex}-{i}", l1_url, seq_url) for i in range(2))
    for t in (maker, taker):
        t.deposit(100_000 * USDC)
    wait_for(lambda: maker.collateral() > 0 and taker.collateral() > 0, "the deposits at the sequencer")
    price = int(httpx.get(seq_url + "/v1/markets/0").json()["oraclePrice"])
    assert maker.place(False, price, 3)["status"] == "ok"
    assert taker.place(True, price, 3)["status"] == "ok"
    maker.http.close()
    taker.http.close()

    # the sequencer posts it, and every verifier re-executes it from the base layer and agrees
    def traded(n: int) -> list[dict[str, Any]]:
        rows = network.cli(f"verifier-{n}", "batches", "--limit", "1000")
        assert not [r for r in rows if r["verdict"] == "invalid"], rows
        return [r for r in rows if r["trades"] > 0 and r["verdict"] == "valid"]

    for n in (1, 2, 3):
        rows = wait_for(lambda n=n: traded(n), f"verifier-{n} to verify the trade's batch")
        with L1Client(l1_url) as c:
            batch = c.batch(rows[0]["batch_id"])
            assert batch["post_root"] == rows[0]["claimed_root"] == rows[0]["computed_root"]
        st = network.cli(f"verifier-{n}", "status")
        assert st["address"] == addresses["verifiers"][n - 1], "each verifier runs on its own key"
        assert st["games"]["open"] == 0 and "invalid" not in st["verified"]["batches"]
    seq_batches = httpx.get(seq_url + "/v1/batches", params={"limit": 1000}).json()
    assert any(b["postRoot"] == rows[0]["claimed_root"] for b in seq_batches)

    # every service stops on SIGTERM within compose's grace period, and wrote only into its volumes
    codes = network.down()
    assert codes == {n: 0 for n in codes} and set(codes) == {n for n, s in network.services.items() if s.proc}, codes
    for svc in network.services.values():
        assert not any(svc.root.iterdir()), f"{svc.name} wrote outside its volumes: {list(svc.root.iterdir())}"
    keys = [local.volumes[v] for v in ("sequencer-key", "oracle-keys", "verifier-1-key", "governance-key")]
    for f in (p for d in keys for p in d.iterdir()):
        assert f.stat().st_mode & 0o077 == 0, f"{f} is readable by others"
