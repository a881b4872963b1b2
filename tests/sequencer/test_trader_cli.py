"""`rampart-trader` against a real base layer and sequencer (processes): keys, deposit, orders,
fills, positions, margin, withdraw and claim, escape status — `--json` on every command, and
every refusal a code with exit status 1."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from trader_net import BTC, PRICE, USDC, Net, db_fixture, free_port, net_fixture, shared_net_fixture, wait_for  # noqa: F401  (fixtures)
from typer.testing import CliRunner

from contracts_spec.types import SetMarketParams
from l1_mock.client import L1Client
from sequencer.scenario import Keys
from sequencer.trader_cli import app


class Cli:
    def __init__(self, net: Net, home: Path) -> None:
        self.runner = CliRunner()
        self.env = {"RAMPART_L1_URL": net.l1_url, "RAMPART_SEQUENCER_URL": net.seq_url,
                    "RAMPART_TRADER_HOME": str(home)}

    def raw(self, *args: str, key: str | None = None) -> Any:
        env = dict(self.env)
        if key is not None:
            env["RAMPART_TRADER_KEY"] = key
        return self.runner.invoke(app, list(args), env=env)

    def ok(self, *args: str, key: str | None = None) -> Any:
        """Run with --json; the exit status is 0 and stdout is JSON."""
        result = self.raw("--json", *args, key=key)
        assert result.exit_code == 0, (result.stdout, result.stderr)
        return json.loads(result.stdout)

    def refused(self, code: str, *args: str, key: str | None = None) -> dict[str, Any]:
        result = self.raw(*args, "--json", key=key)  # --json after the command works too
        assert result.exit_code == 1, (result.stdout, result.stderr)
        error: dict[str, Any] = json.loads(result.stdout)["error"]
        assert error["code"] == code, error
        text = self.raw(*args, key=key)  # without --json: the code on stderr
        assert text.exit_code == 1 and code in text.stderr
        return error


@pytest.fixture
def cli(net: Net, tmp_path: Path) -> Cli:
    return Cli(net, tmp_path / "keys")


def test_keys(shared_net: Net, tmp_path: Path) -> None:
    cli = Cli(shared_net, tmp_path / "keys")
    created = cli.ok("keys", "create", "mine")
    assert created["address"].startswith("0x") and len(created["address"]) == 42
    assert os.stat(created["path"]).st_mode & 0o777 == 0o600
    bob = Keys()["bob"]
    imported = cli.ok("keys", "import", "bob", "0x" + bob.hex())
    assert imported["address"] == "0x" + Keys().addr("bob").hex()
    assert sorted(k["name"] for k in cli.ok("keys", "list")) == ["bob", "mine"]
    cli.refused("key_exists", "keys", "create", "mine")
    cli.refused("bad_key", "keys", "import", "x", "0x1234")
    cli.refused("bad_key_name", "keys", "create", "../evil")
    cli.refused("unknown_key", "margin", key="nobody")
    cli.refused("no_key", "margin")


def test_trading_from_the_command_line(cli: Cli, net: Net) -> None:
    for name in ("alice", "bob"):
        cli.ok("keys", "import", name, "0x" + Keys()[name].hex())
        assert cli.ok("faucet", "10000", "--native", str(10**18), key=name)["usdc"] == 10_000 * USDC
        assert cli.ok("deposit", "5000", key=name) == {"queueIndex": 0 if name == "alice" else 1,
                                                         "amount": 5_000 * USDC}
        wait_for(lambda n=name: cli.ok("margin", key=n)["collateral"] == 5_000 * USDC, f"{name}'s deposit")
    net.oracle(BTC, PRICE)
    assert [m["symbol"] for m in cli.ok("markets", key="alice")] == ["BTC-USD", "ETH-USD"]

    # 0.01 BTC at 60,000.0: 100 lots at 600,000 ticks
    placed = cli.ok("place", "BTC-USD", "buy", "0.01", "60000", key="alice")
    assert placed["state"] == "open" and placed["remaining"] == 100
    assert cli.ok("book", "BTC-USD", key="alice")["bids"][0][:2] == [PRICE, 100]
    taken = cli.ok("place", "BTC", "sell", "0.01", "60000", "--tif", "IOC", key="bob")
    assert taken["state"] == "filled", taken
    (fill,) = cli.ok("fills", key="alice")
    assert fill["orderId"] == placed["orderId"] and fill["life"] in ("matched", "posted")
    (pos,) = cli.ok("positions", key="alice")
    assert pos["lots"] == 100 and pos["side"] == "long"
    text = cli.raw("margin", key="alice")
    assert text.exit_code == 0 and "USDC" in text.stdout and "free" in text.stdout

    resting = cli.ok("place", "BTC-USD", "buy", "0.001", "59000", key="alice")
    replaced = cli.ok("replace", resting["orderId"], "BTC-USD", "buy", "0.002", "58000", key="alice")
    assert replaced["replaced"] == resting["orderId"]
    assert cli.ok("cancel", replaced["orderId"], key="alice")["status"] == "ok"
    quotes = [cli.ok("place", "BTC-USD", "buy", "0.001", str(57000 - i), key="alice")["orderId"] for i in range(2)]
    pulled = cli.ok("cancel", *quotes, replaced["orderId"], key="alice")  # one request, one answer each
    assert [(r["orderId"], r["status"], r["code"]) for r in pulled] == [
        (quotes[0], "ok", ""), (quotes[1], "ok", ""), (replaced["orderId"], "error", "unknown_order")]
    assert cli.ok("cancel-all", key="alice")["status"] == "ok"
    assert cli.ok("orders", "--status", "open", key="alice") == []

    # refusals: local and remote, each with its code
    cli.refused("unknown_order", "cancel", replaced["orderId"], key="alice")
    cli.refused("bad_amount", "place", "BTC-USD", "buy", "0.00001", "60000", key="alice")
    cli.refused("bad_amount", "place", "BTC-USD", "buy", "0.01", "60000.05", key="alice")
    cli.refused("bad_side", "place", "BTC-USD", "up", "0.01", "60000", key="alice")
    cli.refused("unknown_market", "place", "DOGE", "buy", "1", "1", key="alice")
    cli.refused("insufficient_margin", "withdraw", "6000", key="alice")
    cli.refused("insufficient_balance", "deposit", "1000000", key="alice")
    # a field the spec cannot sign is refused here, before anything is sent (it was a traceback)
    cli.refused("invalid_amount", "place", "BTC-USD", "buy", "0.01", "60000", "--expiry", "-1", key="alice")
    cli.refused("invalid_amount", "withdraw", "1e30", key="alice")
    cli.refused("invalid_amount", "cancel-all", "--floor", "-1", key="alice")

    # withdraw, let the batch become final, claim on the base layer
    assert cli.ok("withdraw", "100", key="bob")["amount"] == 100 * USDC
    net.finalize(lambda: cli.ok("withdrawals", key="bob")[0]["life"], "the withdrawal")
    before = cli.ok("balances", key="bob")["usdc"]
    (paid,) = cli.ok("claim", key="bob")
    assert paid["amount"] == 100 * USDC and cli.ok("balances", key="bob")["usdc"] == before + 100 * USDC
    assert cli.ok("claim", key="bob") == []
    assert cli.ok("fills", key="alice")[0]["life"] == "final"

    # the escape hatch is visible, and shut while the rollup is live
    assert cli.ok("escape-status", key="bob")["frozen"] is False
    cli.refused("freeze_refused", "freeze", key="bob")
    cli.refused("not_frozen", "escape", key="bob")
    assert cli.ok("force-withdraw", "1", key="bob") == {"forcedIndex": 0, "amount": USDC}

    # a time-locked governance change is visible to every trader as soon as it is announced
    assert cli.ok("governance", key="bob")["changes"] == []
    params = replace(net.genesis.markets[BTC], taker_fee_ppm=600)
    with L1Client(net.l1_url, Keys()["governance"]) as gov:
        announced = gov.announce_governance(SetMarketParams(params))
    (change,) = cli.ok("governance", key="bob")["changes"]
    assert change["status"] == "announced" and change["effective_time"] == announced["effective_time"]
    assert change["decoded"]["params"]["taker_fee_ppm"] == 600
    text = cli.raw("governance", key="bob")
    assert text.exit_code == 0 and "market_params" in text.stdout


def test_the_console_entry_point_runs(shared_net: Net, tmp_path: Path) -> None:
    env = {**os.environ, "RAMPART_L1_URL": shared_net.l1_url, "RAMPART_TRADER_HOME": str(tmp_path),
           "RAMPART_TRADER_KEY": "0x" + Keys()["carol"].hex()}
    done = subprocess.run([sys.executable, "-m", "sequencer.trader_cli", "--json", "escape-status"],
                          env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["frozen"] is False
    done = subprocess.run([sys.executable, "-m", "sequencer.trader_cli", "--json", "deposit", "5"],
                          env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 1 and json.loads(done.stdout)["error"]["code"] == "insufficient_balance"


def test_a_bad_query_parameter_is_one_clean_line_naming_it(shared_net: Net, tmp_path: Path) -> None:
    env = {**os.environ, "RAMPART_L1_URL": shared_net.l1_url, "RAMPART_SEQUENCER_URL": shared_net.seq_url,
           "RAMPART_TRADER_HOME": str(tmp_path), "RAMPART_TRADER_KEY": "0x" + Keys()["carol"].hex()}
    done = subprocess.run([sys.executable, "-m", "sequencer.trader_cli", "book", "BTC", "--depth", "-5"],
                          env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 1 and done.stdout == "" and done.stderr == (
        "refused malformed (sequencer): query parameter depth: Input should be greater than or equal to 1, "
        "got '-5'\n")
    done = subprocess.run([sys.executable, "-m", "sequencer.trader_cli", "--json", "book", "BTC", "--depth", "-5"],
                          env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 1 and json.loads(done.stdout)["error"]["code"] == "malformed"


def test_public_reads_need_no_key(shared_net: Net, tmp_path: Path) -> None:
    home = tmp_path / "trader-home"
    env = {**os.environ, "RAMPART_L1_URL": shared_net.l1_url, "RAMPART_SEQUENCER_URL": shared_net.seq_url,
           "RAMPART_TRADER_HOME": str(home)}
    env.pop("RAMPART_TRADER_KEY", None)

    def trader(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "sequencer.trader_cli", "--json", *args], env=env,
                              capture_output=True, text=True, timeout=60)

    markets = trader("markets")
    assert markets.returncode == 0, markets.stderr
    assert [m["symbol"] for m in json.loads(markets.stdout)] == [m.symbol for m in shared_net.genesis.markets]
    book = trader("book", "BTC", "--depth", "3")
    assert book.returncode == 0 and {"bids", "asks"} <= set(json.loads(book.stdout)), book.stdout + book.stderr
    governance = trader("governance")
    assert governance.returncode == 0 and "changes" in json.loads(governance.stdout), governance.stderr
    # what belongs to an account still asks for its key, and nothing was written for the reads
    margin = trader("margin")
    assert margin.returncode == 1 and json.loads(margin.stdout)["error"]["code"] == "no_key"
    assert not home.exists() or list(home.iterdir()) == []


# --- what a user can get wrong: no network needed ------------------------------------------------------


def test_a_service_that_does_not_answer_is_one_line_naming_its_url(tmp_path: Path) -> None:
    l1, seq = f"http://127.0.0.1:{free_port()}", f"http://127.0.0.1:{free_port()}"  # nothing answers there
    env = {"RAMPART_L1_URL": l1, "RAMPART_SEQUENCER_URL": seq, "RAMPART_TRADER_HOME": str(tmp_path),
           "RAMPART_TRADER_KEY": "0x" + Keys()["carol"].hex()}
    runner = CliRunner()
    result = runner.invoke(app, ["balances"], env=env)
    assert result.exit_code == 1 and len(result.stderr.splitlines()) == 1, result.stderr
    assert result.stderr.startswith(f"error unreachable (l1): the base layer at {l1} does not answer (GET /accounts/")
    result = runner.invoke(app, ["--json", "markets"], env=env)
    error = json.loads(result.stdout)["error"]
    assert result.exit_code == 1 and error["code"] == "unreachable" and error["source"] == "sequencer"
    assert error["message"] == (f"the sequencer at {seq} does not answer "
                                "(GET /v1/markets: ConnectError('[Errno 111] Connection refused'))")
    # the console program itself: the same line, no traceback
    done = subprocess.run([sys.executable, "-m", "sequencer.trader_cli", "positions"], env={**os.environ, **env},
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert done.stderr.startswith(f"error unreachable (sequencer): the sequencer at {seq} does not answer (")


def test_a_bad_global_option_is_one_line_naming_it_and_exit_2(tmp_path: Path) -> None:
    a_file = tmp_path / "file"
    a_file.write_text("")
    runner = CliRunner()
    result = runner.invoke(app, ["--sequencer", "localhost:8000", "--home", str(a_file), "keys", "create", "x"],
                           env={"RAMPART_L1_URL": "ftp://l1"})
    assert result.exit_code == 2 and result.stderr.splitlines() == [
        "error RAMPART_L1_URL: not an http(s) URL such as http://127.0.0.1:8000, got 'ftp://l1'",
        "error --sequencer: not an http(s) URL such as http://127.0.0.1:8000, got 'localhost:8000'",
        f"error --home: not a directory, got '{a_file}'",
    ]
    assert a_file.read_text() == ""  # nothing was written
    result = runner.invoke(app, ["keys", "list"], env={"RAMPART_TRADER_HOME": str(a_file)})
    assert result.exit_code == 2 and result.stderr == f"error RAMPART_TRADER_HOME: not a directory, got '{a_file}'\n"


def test_a_key_file_that_is_not_one_is_refused_by_name(tmp_path: Path) -> None:
    (tmp_path / "broken.json").write_text("{not json")
    runner = CliRunner()
    env = {"RAMPART_TRADER_HOME": str(tmp_path)}
    for args in (["--key", "broken", "balances"], ["keys", "list"]):
        result = runner.invoke(app, args, env=env)
        assert result.exit_code == 1 and result.stderr == (
            f"refused bad_key_file (client): {tmp_path / 'broken.json'} is not a key file of rampart-trader "
            "(JSON with name, address and private_key)\n"), result.stderr
