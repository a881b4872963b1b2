"""The verifier's Prometheus metrics: scraped in-process after honest batches and a won game, with
the base layer gone, and over HTTP from `rampart-verifier run --metrics-port` as a process."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time

import httpx
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import CollectorRegistry
from typer.testing import CliRunner

from contracts_spec.params import DEV
from tests.l1.conftest import free_port
from tests.verifier import node_fixtures as nf
from tests.verifier.node_fixtures import World, lying_batch, play_out
from tests.verifier.test_cli import flags, flat
from verifier import views
from verifier.cli import app
from verifier.metrics import NodeMetrics
from verifier.node import Node as Verifier
from verifier.node import SyncReport

keys, genesis, l1, vdb, world = nf.keys, nf.genesis, nf.l1, nf.vdb, nf.world

BOND = DEV.challenger_bond
runner = CliRunner()
WINNINGS = 2 * BOND - (-(-BOND * DEV.bond_burn_ppm // 1_000_000))


def parse(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """{(name, sorted labels): value} of an exposition."""
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def scrape(v: Verifier, l1_url: str | None = None) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    metrics = NodeMetrics(v.sessions, l1_url or v.settings.l1_url, v.address)
    registry = CollectorRegistry(auto_describe=False)
    registry.register(metrics)
    try:
        return parse(generate_latest(registry).decode())
    finally:
        metrics.close()


def m(name: str, **labels: str) -> tuple[str, tuple[tuple[str, str], ...]]:
    return ("rampart_verifier_" + name, tuple(sorted(labels.items())))


def test_metrics_follow_the_node_through_honest_batches_and_a_won_game(world: World) -> None:
    v = world.verifier()
    ids = world.post_honest(3)
    got = scrape(v)
    assert got[m("l1_up")] == 1 and got[m("verified_head_index")] == -1
    assert got[m("lag_batches")] == 4 and got[m("rollup_head_index")] == 3
    v.sync()
    got = scrape(v)
    assert got[m("verified_head_index")] == 3 and got[m("lag_batches")] == 0 and got[m("lag_seconds")] == 0
    assert got[m("batches", verdict="valid")] == len(ids) and got[m("batches", verdict="invalid")] == 0
    assert got[m("unverified_batches")] == 0 and got[m("trades_verified")] > 0 and got[m("verify_seconds")] > 0
    assert got[m("bond_wei", kind="balance")] == 10 * nf.NATIVE and got[m("bond_wei", kind="locked")] == 0

    bad = lying_batch(world, "trade")
    world.post(bad)
    v.sync()  # judged wrong, a game opened with our bond
    got = scrape(v)
    assert got[m("batches", verdict="invalid")] == 1 and got[m("games", state="open")] == 1
    assert got[m("bond_wei", kind="locked")] == BOND and got[m("bond_wei", kind="balance")] == 10 * nf.NATIVE - BOND
    assert got[m("lag_batches")] == 1  # a wrong batch is never the verified head
    play_out(world, bad, [v])
    got = scrape(v)
    assert got[m("games", state="open")] == 0 and got[m("games", state="won")] == 1
    assert got[m("bond_wei", kind="claimable")] == 0  # claimed as soon as credited
    assert got[m("bond_wei", kind="balance")] == 10 * nf.NATIVE - BOND + WINNINGS
    assert got[m("alerts", kind="invalid_batch")] == 1


def test_a_game_out_of_clock_and_unresolved_is_overdue(world: World) -> None:
    v = world.verifier()
    world.post(world.setup_batch())
    v.sync()
    world.post(lying_batch(world, "trade"))
    v.sync()  # our game is open, the defender to move, and nobody defends
    assert scrape(v)[m("games_overdue")] == 0
    world.advance(DEV.game_clock + 1)
    v.ingest(SyncReport(opened=[]))  # the node has seen the time, not yet acted on it
    got = scrape(v)
    assert got[m("games_overdue")] == 1 and got[m("games", state="open")] == 1
    v.sync()  # it resolves the game it won on the clock
    v.sync()  # and reads the resolution back from the chain's events
    got = scrape(v)
    assert got[m("games_overdue")] == 0 and got[m("games", state="won")] == 1


def test_the_database_figures_are_served_when_the_base_layer_is_away(world: World) -> None:
    v = world.verifier()
    world.post_honest(1)
    v.sync()
    got = scrape(v, "http://127.0.0.1:1")
    assert got[m("l1_up")] == 0 and got[m("verified_head_index")] == 1
    assert got[m("batches", verdict="valid")] == 2
    assert m("lag_batches") not in got and m("bond_wei", kind="balance") not in got


def test_a_taken_metrics_port_is_a_warning_and_the_node_verifies_all_the_same(world: World) -> None:
    world.c("vera").faucet(native=10 * nf.NATIVE)
    world.post(world.setup_batch())
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = runner.invoke(app, [*flags(world, "vera"), "run", "--once", "--metrics-port", str(port)])
    assert result.exit_code == 0, result.output
    assert f"metrics not served on 127.0.0.1:{port}" in flat(result.output)
    with world.verifier().sessions() as session:
        assert views.local_status(session)["verified"]["batches"] == {"valid": 1}


def test_run_serves_metrics_over_http(world: World) -> None:
    world.c("vera").faucet(native=10 * nf.NATIVE)
    world.post(world.setup_batch())
    port = free_port()
    args = [sys.executable, "-m", "verifier.cli", *flags(world, "vera")]
    env = {**os.environ, "RAMPART_VERIFIER_METRICS_PORT": str(port)}  # the setting, through the environment
    proc = subprocess.Popen([*args, "run", "--poll-interval", "0.05"], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        world.post(world.honest_batch(0))
        got: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
        # the daemon polls on its own schedule: scrape (bounded) until it has caught up
        for _ in range(600):
            try:
                got = parse(httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text)
            except httpx.TransportError:
                got = {}  # not listening yet
            if got.get(m("verified_head_index")) == 1 or proc.poll() is not None:
                break
            time.sleep(0.05)
        assert got[m("verified_head_index")] == 1 and got[m("batches", verdict="valid")] == 2
        assert got[m("lag_batches")] == 0 and got[m("l1_up")] == 1
        # the process and the state it holds, served by the running node only
        assert got[m("state_records")] > 3 and got[("process_resident_memory_bytes", ())] > 10 * 2**20
    finally:
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 0, stderr
    assert f"metrics at http://127.0.0.1:{port}/metrics" in stderr
    # stopped with the node: the port is free again
    with httpx.Client() as c:
        try:
            c.get(f"http://127.0.0.1:{port}/metrics", timeout=2)
            raise AssertionError("metrics still served after the node stopped")
        except httpx.TransportError:
            pass
