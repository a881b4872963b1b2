"""`rampart-sequencer`, `rampart-oracle` and `rampart-demo` as a user meets them, as processes: a
bad flag or variable is one line naming it and exit code 2 with nothing started; a genesis that
does not fit is one line; a base layer (for the sequencer) or a sequencer (for the feeder) that
does not answer yet is waited for, said once, and SIGTERM ends the wait cleanly."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
from trader_net import T0, Net, Proc, free_port, wait_for

from contracts_spec.params import genesis_to_json
from sequencer.scenario import Keys, dev_genesis


def run(module: str, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """One run of a console program to its end, in a clean RAMPART_ environment plus `env`."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("RAMPART_")}
    return subprocess.run([sys.executable, "-m", module, *args], env={**clean, **(env or {})},
                          capture_output=True, text=True, timeout=120)


def refused(done: subprocess.CompletedProcess[str], code: int, *lines: str) -> list[str]:
    """The run ended with `code`, each of `lines` is one whole line of stderr, no traceback."""
    out = done.stderr.splitlines()
    assert done.returncode == code, (done.returncode, done.stdout, done.stderr)
    assert "Traceback" not in done.stderr + done.stdout, done.stderr
    for line in lines:
        assert line in out, (line, out)
    return out


def start(module: str, *args: str, log: Path) -> subprocess.Popen[bytes]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("RAMPART_")}
    with log.open("wb") as err:
        return subprocess.Popen([sys.executable, "-m", module, *args], env=clean, stdout=subprocess.DEVNULL,
                                stderr=err)


def stop(proc: subprocess.Popen[Any]) -> int:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:  # pragma: no cover - only if SIGTERM was ignored
            proc.kill()
            proc.wait(10)
    return int(proc.returncode)


def stopped_while_waiting(module: str, *args: str, log: Path) -> tuple[int, str]:
    """Start a program whose peer does not answer, SIGTERM it once it says it waits (still
    running): its exit code and what it wrote to stderr."""
    proc = start(module, *args, log=log)
    try:
        wait_for(lambda: "waiting" in log.read_text() or proc.poll() is not None, f"{module} to wait")
        assert proc.poll() is None, log.read_text()
    finally:
        code = stop(proc)
    return code, log.read_text()


def health(url: str) -> bool:
    try:
        return httpx.get(url + "/health", timeout=2).json().get("status") == "ok"
    except (httpx.HTTPError, ValueError):
        return False


# --- rampart-sequencer ------------------------------------------------------------------------------


def test_bad_sequencer_settings_are_one_line_each_and_nothing_starts(tmp_path: Path) -> None:
    db = tmp_path / "seq.db"
    done = run("sequencer.cli", "--port", "70000", "--follow-interval", "0", "--env", "staging",
               "--db", f"sqlite:///{db}", env={"RAMPART_BATCH_INTERVAL": "soon"})
    refused(done, 2,
            "rampart-sequencer: --port: Input should be less than or equal to 65535, got '70000'",
            "rampart-sequencer: RAMPART_BATCH_INTERVAL: Input should be a valid number, unable to parse string "
            "as a number, got 'soon'",
            "rampart-sequencer: --follow-interval: Input should be greater than 0, got '0'",
            "rampart-sequencer: --env: Input should be 'dev' or 'prod', got 'staging'")
    assert len(done.stderr.splitlines()) == 4 and not db.exists()  # one line each, no journal opened

    done = run("sequencer.cli", "--l1", "localhost:8545", env={"RAMPART_PORT": "-1", "RAMPART_VERIFY_WORKERS": "-2"})
    refused(done, 2, "rampart-sequencer: --l1: not an http(s) URL such as http://127.0.0.1:8000, got 'localhost:8545'",
            "rampart-sequencer: RAMPART_PORT: Input should be greater than or equal to 1, got '-1'",
            "rampart-sequencer: RAMPART_VERIFY_WORKERS: Input should be greater than or equal to 0, got '-2'")

    secret = "zz" + "11" * 31  # a key is never repeated back, not even a wrong one
    done = run("sequencer.cli", env={"RAMPART_SEQUENCER_KEY": secret})
    refused(done, 2, "rampart-sequencer: RAMPART_SEQUENCER_KEY: a private key is 32 bytes of hex")
    assert secret not in done.stderr


def test_a_genesis_that_does_not_fit_is_one_line_before_any_wait(tmp_path: Path) -> None:
    nowhere = f"http://127.0.0.1:{free_port()}"  # nothing answers there: the checks need no base layer
    base = ["--l1", nowhere, "--db", f"sqlite:///{tmp_path / 'seq.db'}"]
    refused(run("sequencer.cli", *base, "--genesis", str(tmp_path / "none.json")), 2,
            f"rampart-sequencer: --genesis {tmp_path / 'none.json'}: cannot be read: No such file or directory")
    bad = tmp_path / "bad.json"
    bad.write_text('{"preset": "dev",')
    out = refused(run("sequencer.cli", *base, env={"RAMPART_GENESIS": str(bad)}), 2)
    assert out[0].startswith(f"rampart-sequencer: RAMPART_GENESIS {bad}: not a genesis: not JSON")
    good = tmp_path / "genesis.json"
    good.write_text(genesis_to_json(dev_genesis(Keys(), genesis_time=T0)))
    out = refused(run("sequencer.cli", *base, "--genesis", str(good), env={"RAMPART_SEQUENCER_KEY": "11" * 32}), 2)
    assert len(out) == 1 and out[0].startswith("rampart-sequencer: the sequencer key (RAMPART_SEQUENCER_KEY) signs as 0x")
    assert out[0].endswith(f"not as the genesis sequencer 0x{Keys().addr('sequencer').hex()}")
    assert not (tmp_path / "seq.db").exists()


def test_the_sequencer_waits_for_a_base_layer_that_is_not_up_yet(tmp_path: Path) -> None:
    net = Net(tmp_path, ("sqlite", None), Keys())
    log = tmp_path / "seq.err"
    seq = start("sequencer.cli", "--l1", net.l1_url, "--db", f"sqlite:///{tmp_path / 'seq.db'}",
                "--port", str(net.seq_port), "--follow-interval", "0.02", log=log)
    try:
        wait_for(lambda: "waiting" in log.read_text() or seq.poll() is not None, "the sequencer to wait")
        assert seq.poll() is None
        net.l1 = Proc([sys.executable, "-m", "l1_mock.cli", "--genesis", str(tmp_path / "genesis.json"),
                       "--db", f"sqlite:///{tmp_path / 'l1.db'}", "--port", str(net.l1_port), "--manual-time"],
                      tmp_path / "l1.log", net.l1_url + "/info")
        # bounded polls on the process; no clock depends on them
        wait_for(lambda: health(net.seq_url) or seq.poll() is not None, "the sequencer to serve")
        assert health(net.seq_url)
    finally:
        stop(seq)
        net.stop()
    text = log.read_text()
    assert text.splitlines()[0].startswith(f"rampart-sequencer: waiting for the base layer at {net.l1_url} (")
    assert text.count("waiting for the base layer") == 1 and "Traceback" not in text


def test_sigterm_ends_the_wait_for_the_base_layer(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    code, text = stopped_while_waiting("sequencer.cli", "--l1", url, "--db", f"sqlite:///{tmp_path / 'seq.db'}",
                                       "--follow-interval", "0.02", log=tmp_path / "seq.err")
    assert code == 0 and text == (
        f"rampart-sequencer: waiting for the base layer at {url} (GET /info: "
        "ConnectError('[Errno 111] Connection refused'))\n")


def test_a_genesis_file_of_another_chain_than_the_base_layer_is_refused(tmp_path: Path) -> None:
    net = Net(tmp_path, ("sqlite", None), Keys())
    other = tmp_path / "other.json"
    other.write_text(genesis_to_json(dev_genesis(Keys(), genesis_time=T0 + 1)))
    try:
        net.l1 = Proc([sys.executable, "-m", "l1_mock.cli", "--genesis", str(tmp_path / "genesis.json"),
                       "--db", f"sqlite:///{tmp_path / 'l1.db'}", "--port", str(net.l1_port), "--manual-time"],
                      tmp_path / "l1.log", net.l1_url + "/info")
        done = run("sequencer.cli", "--l1", net.l1_url, "--db", f"sqlite:///{tmp_path / 'seq.db'}",
                   "--genesis", str(other))
        refused(done, 2, f"rampart-sequencer: --genesis {other} is not the genesis of the base layer at {net.l1_url}")
        # and a URL that answers, but not as a base layer
        done = run("sequencer.cli", "--l1", net.l1_url + "/nothing", "--db", f"sqlite:///{tmp_path / 'seq.db'}")
        out = refused(done, 2)
        assert len(out) == 1 and out[0].startswith(f"rampart-sequencer: {net.l1_url}/nothing does not answer as a "
                                                   "base layer: ")
    finally:
        net.stop()
    assert not (tmp_path / "seq.db").exists()


# --- rampart-oracle -----------------------------------------------------------------------------------


def test_bad_feeder_flags_are_one_line_each(tmp_path: Path) -> None:
    done = run("sequencer.oracle_feeder", "--dev-signers", "9", "--interval", "0", "--steps", "-1", "--clock", "moon",
               "--preset", "x", "--start", "0=abc", "--sequencer", "localhost:8000")
    out = refused(done, 2,
                  "rampart-oracle: --preset: not a preset; known: dev, mainnet, got 'x'",
                  "rampart-oracle: --dev-signers: Input should be less than or equal to 3, got '9'",
                  "rampart-oracle: --start: not market=ticks pairs such as 0=500000,1=30000, got '0=abc'",
                  "rampart-oracle: --interval: Input should be greater than 0, got '0'",
                  "rampart-oracle: --steps: Input should be greater than or equal to 0, got '-1'",
                  "rampart-oracle: --clock: Input should be 'sequencer' or 'wall', got 'moon'",
                  "rampart-oracle: --sequencer: not an http(s) URL such as http://127.0.0.1:8000, got 'localhost:8000'")
    assert len(out) == 7
    refused(run("sequencer.oracle_feeder"), 2, "rampart-oracle: give --keys (hex, comma-separated) or --dev-signers N")
    secret = "ab" * 31
    done = run("sequencer.oracle_feeder", "--keys", secret)
    refused(done, 2, "rampart-oracle: --keys: private keys are 32 bytes of hex each (within the secp256k1 order), "
                     "comma-separated")
    assert secret not in done.stderr


def test_a_prices_file_is_checked_whole_before_anything_is_posted(tmp_path: Path) -> None:
    nowhere = f"http://127.0.0.1:{free_port()}"
    missing = tmp_path / "none.jsonl"
    refused(run("sequencer.oracle_feeder", "--dev-signers", "2", "--sequencer", nowhere, "--file", str(missing)), 2,
            f"rampart-oracle: --file {missing}: cannot be read: No such file or directory")
    prices = tmp_path / "prices.jsonl"
    prices.write_text('{"market": 0, "price": 500000}\n\n{"market": 0, "price": "cheap"}\n')
    refused(run("sequencer.oracle_feeder", "--dev-signers", "2", "--sequencer", nowhere, "--file", str(prices)), 2,
            f"rampart-oracle: --file {prices}: line 3 is not a price line "
            '({"market": 0, "price": 500000} or {"prices": {"0": 500000, "1": 30000}})')


def test_the_feeder_waits_for_its_sequencer_then_checks_its_chain(tmp_path: Path) -> None:
    net = Net(tmp_path, ("sqlite", None), Keys())
    log = tmp_path / "oracle.err"
    feeder = start("sequencer.oracle_feeder", "--sequencer", net.seq_url, "--dev-signers", "2", "--steps", "1",
                   "--interval", "0.05", log=log)
    try:
        wait_for(lambda: "waiting" in log.read_text() or feeder.poll() is not None, "the feeder to wait")
        assert feeder.poll() is None
        net.start()
        feeder.wait(120)  # it posts its one step as soon as the sequencer answers, then ends
        assert feeder.returncode == 0, log.read_text()
        assert httpx.get(net.seq_url + "/v1/markets/0", timeout=10).json()["oraclePrice"] == 500_000
        # a feeder signing for another chain is refused at once, not left posting reports the sequencer drops
        done = run("sequencer.oracle_feeder", "--sequencer", net.seq_url, "--dev-signers", "2", "--preset", "mainnet")
        out = refused(done, 2)
        assert len(out) == 1 and out[0].startswith(
            f"rampart-oracle: --preset mainnet signs for chain 1, but the sequencer at {net.seq_url} runs chain 31337")
    finally:
        stop(feeder)
        net.stop()
    assert log.read_text() == (f"rampart-oracle: waiting for the sequencer at {net.seq_url} "
                               "([Errno 111] Connection refused)\n"
                               "rampart-oracle: 1 step posted: 1 accepted, 0 refused; reports: 4 accepted, 0 refused\n")


def test_sigterm_ends_the_feeders_wait(tmp_path: Path) -> None:
    code, text = stopped_while_waiting("sequencer.oracle_feeder", "--sequencer", f"http://127.0.0.1:{free_port()}",
                                       "--dev-signers", "2", log=tmp_path / "oracle.err")
    assert code == 0 and text.count("\n") == 1 and "Traceback" not in text


# --- rampart-demo ---------------------------------------------------------------------------------------


def test_the_demo_takes_no_options() -> None:
    done = run("sequencer.demo", "--fast")
    refused(done, 2, "rampart-demo: error: unrecognized arguments: --fast")
    assert done.stdout == ""
    helped = run("sequencer.demo", "--help")
    assert helped.returncode == 0 and "A spec-level demo" in helped.stdout
