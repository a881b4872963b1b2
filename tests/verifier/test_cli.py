"""The operator CLI through typer's CliRunner (and once as a real process): keys, run --once,
every read with --json parsed, replay of honest, lying and rejecting batches, a challenge by
hand, bonds and claims, and the clear errors (no base layer, wrong key, unknown batch)."""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from contracts_spec.params import DEV
from tests.verifier import node_fixtures as nf
from tests.verifier.node_fixtures import World, defend, lying_batch, rejected_batch
from verifier import views
from verifier.cli import app
from verifier.views import eth

keys, genesis, l1, vdb, world = nf.keys, nf.genesis, nf.l1, nf.vdb, nf.world

runner = CliRunner()


def flags(w: World, name: str, key_file: Path | None = None) -> list[str]:
    """The global flags pointing `rampart-verifier` at verifier `name`'s base layer, database and key."""
    s = w.settings(name)
    return ["--l1-url", s.l1_url, "--db", s.db, *(["--db-schema", s.db_schema] if s.db_schema else []),
            "--key-file", str(key_file or s.key_file)]


def cli(w: World, name: str, *args: str, input: str | None = None, code: int = 0) -> Any:
    """Run `rampart-verifier` as verifier `name`; returns the parsed JSON when --json is given."""
    result = runner.invoke(app, [*flags(w, name), *args], input=input)
    assert result.exit_code == code, (args, result.exit_code, result.output, result.exception)
    if "--json" not in args or code != 0:
        return result
    text = result.stdout  # after a prompt, the runner echoes the answer first
    return json.loads(text[min(i for i in (text.find("{"), text.find("[")) if i >= 0):])


def flat(output: str) -> str:
    """Rich wraps errors at 80 columns, wherever a tmp path's length puts the break."""
    return " ".join(output.split())


def test_keys_create_import_show(tmp_path: Path) -> None:
    path = tmp_path / "k.json"
    base = ["--key-file", str(path)]
    created = json.loads(runner.invoke(app, [*base, "keys", "create", "--json"]).stdout)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    shown = json.loads(runner.invoke(app, [*base, "keys", "show", "--json"]).stdout)
    assert shown["address"] == created["address"]
    again = runner.invoke(app, [*base, "keys", "create"])
    assert again.exit_code == 2 and "already holds a key" in flat(again.output)
    key = "11" * 32
    imported = json.loads(runner.invoke(app, [*base, "keys", "import", key, "--force", "--json"]).stdout)
    assert imported["address"] != created["address"]
    hidden = runner.invoke(app, [*base, "keys", "import", "--force", "--json"], input="0x" + "22" * 32 + "\n")
    assert hidden.exit_code == 0 and "22" * 32 not in hidden.stdout
    bad = runner.invoke(app, [*base, "keys", "import", "zz", "--force"])
    assert bad.exit_code == 2 and "64 hex digits" in flat(bad.output)
    os.chmod(path, 0o644)
    unsafe = runner.invoke(app, [*base, "keys", "show"])
    assert unsafe.exit_code == 2 and "readable by others" in flat(unsafe.output)


def test_base_layer_that_does_not_answer(tmp_path: Path) -> None:
    result = runner.invoke(app, ["--l1-url", "http://127.0.0.1:9", "--db", f"sqlite:///{tmp_path / 'v.db'}",
                                 "--key-file", str(tmp_path / "none"), "status", "--json"])
    assert result.exit_code == 2 and "does not answer" in flat(result.output)


def test_run_once_and_every_read(world: World) -> None:
    world.c("vera").faucet(native=10 * nf.NATIVE)
    world.post_honest(3)
    cli(world, "vera", "run", "--once")
    st = cli(world, "vera", "status", "--json")
    assert st["verified"]["batches"] == {"valid": 4} and st["lag"] == {"batches": 0, "unverified": 0, "seconds": 0}
    assert st["verified"]["head_root"] == world.seq_client.rollup()["head_root"]
    assert st["bond"]["balance"] == 10 * nf.NATIVE and st["games"]["open"] == 0
    assert st["address"] == "0x" + world.keys.addr("vera").hex()
    rows = cli(world, "vera", "batches", "--json")
    assert [r["verdict"] for r in rows] == ["valid"] * 4 and rows[0]["computed_root"] == rows[0]["claimed_root"]
    assert cli(world, "vera", "batches", "--json", "--verdict", "invalid") == []
    assert cli(world, "vera", "games", "--json") == []
    bonds = cli(world, "vera", "bonds", "--json")
    assert bonds["locked_total"] == 0 and bonds["claimable"] == 0
    assert cli(world, "vera", "claim", "--json") == {"claimed": 0}
    honest = cli(world, "vera", "replay", str(rows[-1]["batch_id"]), "--json")
    assert honest["expected_root"] == honest["claimed_root"] and honest["diverges"] is None
    # tables for people render too
    for cmd in (["status"], ["batches"], ["games"], ["bonds"], ["replay", str(rows[1]["batch_id"]), "--tx", "0"]):
        assert cli(world, "vera", *cmd).exit_code == 0
    assert "balance 10 ETH, locked 0 ETH, claimable 0 ETH" in flat(cli(world, "vera", "bonds").output)  # --json keeps wei
    # the lag shows before the node catches up
    world.post(world.honest_batch(9))
    assert cli(world, "vera", "status", "--json")["lag"]["batches"] == 1


def test_unknown_batch_and_game(world: World) -> None:
    world.c("vera").faucet(native=10 * nf.NATIVE)
    cli(world, "vera", "run", "--once")
    assert "no batch 42" in cli(world, "vera", "replay", "42", code=1).output
    assert "no batch 42" in cli(world, "vera", "challenge", "42", "--yes", code=1).output
    assert "no game 7" in cli(world, "vera", "game", "7", code=1).output


def test_wrong_key_for_the_database(world: World) -> None:
    cli(world, "vera", "run", "--once")
    other = world.tmp / "other.key"
    nf.write_key(other, world.keys["victor"])
    result = runner.invoke(app, [*flags(world, "vera", other), "status"])
    assert result.exit_code == 2 and "plays for" in result.output


def test_replay_shows_the_first_diverging_transaction(world: World) -> None:
    world.c("vera").faucet(native=10 * nf.NATIVE)
    world.post(world.setup_batch())
    bad = lying_batch(world, "trade")
    bad_id = world.post(bad)
    cli(world, "vera", "run", "--once", "--no-challenge")
    before = cli(world, "vera", "replay", str(bad_id), "--json")
    assert before["expected_root"] != before["claimed_root"]
    assert before["diverges"] == {"from": 0, "to": len(bad.body.txs)}  # only the header's claims so far
    # a game reveals the author's roots: the replay narrows down to the lying transaction
    world.c("victor").faucet(native=10 * nf.NATIVE)
    gid = world.c("victor").open_game(bad_id).game_id
    for _ in range(8):
        defend(world, gid, bad)
        g = world.seq_client.game(gid).game
        if g.status != 0 or g.hi - g.lo == 1:
            break
        mid = (g.lo + g.hi) // 2
        world.c("victor").answer(gid, bad.roots[min(mid, len(bad.roots) - 1)] == bad.true_roots[min(mid, len(bad.roots) - 1)])
    cli(world, "vera", "run", "--once", "--no-challenge", "--no-join")
    after = cli(world, "vera", "replay", str(bad_id), "--json")
    lie_at = len(bad.body.txs) - 2  # lying_batch lies at its last-but-one transaction
    assert after["diverges"] == {"from": lie_at, "to": lie_at + 1}
    tx = after["transaction"]
    assert tx["index"] == lie_at and tx["kind"] == "Trade" and tx["rejected"] is None
    assert tx["expected_root_after"] == "0x" + bad.true_roots[lie_at + 1].hex()
    assert tx["claimed_root_after"] == "0x" + bad.roots[lie_at + 1].hex()
    kinds = {leaf["kind"] for leaf in tx["leaves"]}
    assert {"account", "position", "order", "market"} <= kinds
    fee = next(leaf for leaf in tx["leaves"] if leaf["identity"] == "0x" + (b"\x00" * 19 + b"\x02").hex())
    assert fee["expected"]["collateral"] > (fee["before"] or {"collateral": 0})["collateral"]


def test_replay_of_a_rejected_transaction(world: World) -> None:
    world.c("vera").faucet(native=10 * nf.NATIVE)
    world.post(world.setup_batch())
    bad_id = world.post(rejected_batch(world, "overdrawn_withdrawal"))
    cli(world, "vera", "run", "--once", "--no-challenge")
    out = cli(world, "vera", "replay", str(bad_id), "--json")
    assert out["rejected_index"] == 1 and out["diverges"] == {"from": 1, "to": 2}
    assert out["transaction"]["kind"] == "Withdraw" and "InsufficientMargin" in out["transaction"]["rejected"]
    assert cli(world, "vera", "replay", str(bad_id)).exit_code == 0


def test_challenge_by_hand_with_confirmation_and_the_game_views(world: World) -> None:
    world.c("vera").faucet(native=10 * nf.NATIVE)
    world.post(world.setup_batch())
    bad = lying_batch(world, "cancel")
    bad_id = world.post(bad)
    cli(world, "vera", "run", "--once", "--no-challenge")
    declined = cli(world, "vera", "challenge", str(bad_id), input="n\n", code=1)
    assert "Open a game against batch" in declined.output and world.seq_client.games() == []
    assert f"with a bond of {eth(DEV.challenger_bond)}?" in flat(declined.output)
    opened = cli(world, "vera", "challenge", str(bad_id), "--json", input="y\n")
    gid = opened["game_id"]
    assert opened["verdict"] == "invalid" and world.seq_client.game(gid).status == "open"
    for _ in range(20):  # `run` plays the game opened by hand
        defend(world, gid, bad)
        cli(world, "vera", "run", "--once", "--no-challenge")
        if world.seq_client.game(gid).status != "open":
            break
    cli(world, "vera", "run", "--once")
    games = cli(world, "vera", "games", "--json")
    assert [(g["game_id"], g["mine"], g["status"]) for g in games] == [(gid, True, "challenger_won")]
    detail = cli(world, "vera", "game", str(gid), "--json")
    kinds = [m["kind"] for m in detail["moves"]]
    rounds = detail["rounds"]
    assert kinds == ["open"] + ["reveal", "answer"] * rounds + ["step", "resolve"]
    assert detail["status"] == "challenger_won" and detail["payout"]["challenger"] == 2 * DEV.challenger_bond - (
        -(-DEV.challenger_bond * DEV.bond_burn_ppm // 1_000_000))
    assert set(detail["clocks"]) == {"sequencer", "challenger"} and detail["interval"]["hi"] - detail["interval"]["lo"] == 1
    st = cli(world, "vera", "status", "--json")
    assert st["games"]["won"] == 1 and st["bond"]["claimable"] == 0
    assert f"payout: challenger {eth(detail['payout']['challenger'])}" in flat(cli(world, "vera", "game", str(gid)).output)


def test_amounts_for_people_are_exact_eth() -> None:
    assert eth(0) == "0 ETH" and eth(10**18) == "1 ETH" and eth(1_900_000_000_000_000_000) == "1.9 ETH"
    assert eth(1) == "0.000000000000000001 ETH" and eth(-2 * 10**18) == "-2 ETH"
    assert eth(str(1234 * 10**18 + 5 * 10**17)) == "1,234.5 ETH"


def test_warning_before_challenging_a_valid_batch(world: World) -> None:
    world.c("vera").faucet(native=10 * nf.NATIVE)
    bid = world.post(world.setup_batch())
    cli(world, "vera", "run", "--once")
    result = cli(world, "vera", "challenge", str(bid), input="n\n", code=1)
    assert "VALID" in result.output and world.seq_client.games() == []


def test_the_console_script_runs_as_a_process(world: World) -> None:
    world.c("vera").faucet(native=10 * nf.NATIVE)
    world.post(world.setup_batch())
    s = world.settings("vera")
    env = {**os.environ, "RAMPART_VERIFIER_L1_URL": s.l1_url, "RAMPART_VERIFIER_DB": s.db,
           "RAMPART_VERIFIER_KEY_FILE": str(s.key_file)}
    if s.db_schema:
        env["RAMPART_VERIFIER_DB_SCHEMA"] = s.db_schema
    run = [sys.executable, "-m", "verifier.cli"]
    done = subprocess.run([*run, "run", "--once"], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    st = subprocess.run([*run, "status", "--json"], env=env, capture_output=True, text=True, timeout=120)
    assert st.returncode == 0 and json.loads(st.stdout)["verified"]["batches"] == {"valid": 1}


def test_a_bad_setting_is_one_line_and_exit_2(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    result = cli(world, "vera", "run", "--once", "--metrics-port", "70000", code=2)
    assert "RAMPART_VERIFIER_METRICS_PORT (or its flag): Input should be less than or equal to 65535" in flat(
        result.output) and "Traceback" not in result.output
    args = [*flags(world, "vera"), "status"]  # the test's own Settings read the environment too
    monkeypatch.setenv("RAMPART_VERIFIER_POLL_INTERVAL", "soon")
    result = runner.invoke(app, args)
    assert result.exit_code == 2 and "RAMPART_VERIFIER_POLL_INTERVAL (or its flag)" in flat(result.output)
    monkeypatch.delenv("RAMPART_VERIFIER_POLL_INTERVAL")
    for flag, value, line in (("--l1-url", "127.0.0.1:8545", "RAMPART_VERIFIER_L1_URL (or its flag): not an "
                                                             "http(s) URL such as http://127.0.0.1:8000, got "
                                                             "'127.0.0.1:8545'"),
                              ("--db", "rampart.db", "RAMPART_VERIFIER_DB (or its flag): not a SQLAlchemy URL "
                                                     "such as sqlite:///rampart.db, got 'rampart.db'")):
        result = runner.invoke(app, [flag, value, "status"])
        assert result.exit_code == 2 and line in flat(result.output) and "Traceback" not in result.output
    with world.verifier().sessions() as s:  # and nothing ran: the database holds no verdict
        assert views.local_status(s)["verified"]["batches"] == {}


def test_run_waits_for_a_base_layer_that_is_not_up_yet(world: World, tmp_path: Path) -> None:
    world.c("vera").faucet(native=10 * nf.NATIVE)
    world.post(world.setup_batch())
    args = [sys.executable, "-m", "verifier.cli", *flags(world, "vera")]
    world.l1.stop()  # the base layer is down when the daemon starts (compose start order, a restart)
    log = tmp_path / "verifier.err"
    with log.open("w") as stderr:
        proc = subprocess.Popen([*args, "run", "--poll-interval", "0.05"], stdout=subprocess.DEVNULL, stderr=stderr)
    try:
        for _ in range(600):  # bounded waits on the process, no game clock depends on them
            if "waiting for the base layer" in log.read_text() or proc.poll() is not None:
                break
            time.sleep(0.05)
        assert proc.poll() is None and "waiting for the base layer" in flat(log.read_text())
        world.l1.start()  # on the same port and database
        for _ in range(600):
            st = cli(world, "vera", "status", "--json")
            if st["verified"]["batches"] == {"valid": 1} or proc.poll() is not None:
                break
            time.sleep(0.05)
        assert st["verified"]["batches"] == {"valid": 1}
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
    assert proc.returncode == 0, log.read_text()
    assert log.read_text().count("waiting for the base layer") == 1 and "following" in log.read_text()


def test_run_as_a_daemon_follows_and_stops_on_sigterm(world: World) -> None:
    world.c("vera").faucet(native=10 * nf.NATIVE)
    world.post(world.setup_batch())
    args = [sys.executable, "-m", "verifier.cli", *flags(world, "vera")]
    proc = subprocess.Popen([*args, "run", "--poll-interval", "0.05"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        posted = world.post(world.honest_batch(0))
        # the daemon polls on its own schedule: wait (bounded) for it to catch up; no game clock
        # depends on this wait
        for _ in range(600):
            st = cli(world, "vera", "status", "--json")
            if st["verified"]["head_batch_id"] == posted or proc.poll() is not None:
                break
            time.sleep(0.05)
        assert st["verified"]["head_batch_id"] == posted
    finally:
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 0, stderr
    assert "following" in stderr
