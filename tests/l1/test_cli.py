"""`rampart-l1` as a user meets it, as a process: a bad flag or variable is one line naming it and
exit code 2 with no database created; a genesis file that cannot be read or is no genesis, and a
database that cannot be opened, are one line too — never a traceback."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from contracts_spec.params import genesis_to_json
from sequencer.scenario import Keys, dev_genesis

from .conftest import T0, free_port


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("RAMPART_")}
    return subprocess.run([sys.executable, "-m", "l1_mock.cli", *args], env={**clean, **(env or {})},
                          capture_output=True, text=True, timeout=120)


def lines(done: subprocess.CompletedProcess[str], code: int) -> list[str]:
    assert done.returncode == code, (done.returncode, done.stdout, done.stderr)
    assert "Traceback" not in done.stderr and done.stdout == "", done.stderr  # never "listening"
    return done.stderr.splitlines()


def test_bad_settings_are_one_line_each_and_nothing_starts(tmp_path: Path) -> None:
    db = tmp_path / "l1.db"
    done = run("--port", "70000", "--block-time", "0", "--db", f"sqlite:///{db}",
               env={"RAMPART_L1_MANUAL_TIME": "maybe", "RAMPART_L1_HOST": "127.0.0.1"})
    assert lines(done, 2) == [
        "rampart-l1: --port: Input should be less than or equal to 65535, got '70000'",
        "rampart-l1: --block-time: Input should be greater than or equal to 1, got '0'",
        "rampart-l1: RAMPART_L1_MANUAL_TIME: Input should be a valid boolean, unable to interpret input, got 'maybe'",
    ]
    assert not db.exists()
    done = run(env={"RAMPART_L1_PORT": "x", "RAMPART_L1_DB": "postgresql+psycopg//rampart:hunter2@db/l1"})
    out = lines(done, 2)
    assert out == ["rampart-l1: RAMPART_L1_DB: not a SQLAlchemy URL such as sqlite:///rampart.db",
                   "rampart-l1: RAMPART_L1_PORT: Input should be a valid integer, unable to parse string as an "
                   "integer, got 'x'"]
    assert "hunter2" not in done.stderr  # a database URL is never repeated back: it may hold a password


def test_a_genesis_file_that_cannot_be_used_is_one_line(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'l1.db'}"
    missing = tmp_path / "none.json"
    assert lines(run("--genesis", str(missing), "--db", db), 2) == [
        f"rampart-l1: --genesis {missing}: cannot be read: No such file or directory"]
    bad = tmp_path / "bad.json"
    bad.write_text('{"preset": "moon"}')
    assert lines(run("--db", db, env={"RAMPART_L1_GENESIS": str(bad)}), 2) == [
        f"rampart-l1: RAMPART_L1_GENESIS {bad}: not a genesis: unknown preset 'moon'; known: ['dev', 'mainnet']"]
    assert lines(run("--db", db), 2) == ["rampart-l1: a fresh chain needs a genesis file (--genesis)"]


def test_a_database_that_cannot_be_opened_is_one_line(tmp_path: Path) -> None:
    genesis = tmp_path / "genesis.json"
    genesis.write_text(genesis_to_json(dev_genesis(Keys(), genesis_time=T0)))
    url = f"sqlite:///{tmp_path / 'no' / 'such' / 'dir' / 'l1.db'}"
    assert lines(run("--genesis", str(genesis), "--db", url, "--port", str(free_port())), 1) == [
        f"rampart-l1: the database {url} (--db) cannot be opened: (sqlite3.OperationalError) unable to open "
        "database file"]
