"""`rampart-harness` as a user meets it, as a process, when what it needs is not there: a work
directory it cannot make, a PostgreSQL URL that is none or does not answer, a base layer that does
not answer a player — one line each, exit 2 or 1, no traceback and no service left running. And a
service of the network that exits while it starts is said at once, with its last words."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from harness.procs import Proc, ServiceExited, free_port


def harness(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("RAMPART_")}
    return subprocess.run([sys.executable, "-m", "harness.cli", *args], env={**clean, **(env or {})},
                          capture_output=True, text=True, timeout=120)


def one_line(done: subprocess.CompletedProcess[str], code: int) -> str:
    assert done.returncode == code, (done.returncode, done.stdout, done.stderr)
    assert "Traceback" not in done.stderr + done.stdout, done.stderr
    lines = done.stderr.splitlines()
    assert len(lines) == 1, lines
    return lines[0]


def test_a_work_directory_that_cannot_be_made(tmp_path: Path) -> None:
    a_file = tmp_path / "file"
    a_file.write_text("")
    for command in ("matrix", "up"):
        line = one_line(harness(command, "--workdir", str(a_file / "work")), 2)
        assert line == f"error: --workdir {a_file / 'work'}: Not a directory"


def test_a_database_that_is_none_or_does_not_answer(tmp_path: Path) -> None:
    line = one_line(harness("matrix", "--workdir", str(tmp_path), "--postgres", "postgres//me@db/x"), 2)
    assert line == "error: --postgres: not a SQLAlchemy URL such as sqlite:///rampart.db"
    url = f"postgresql+psycopg://me:hunter2@127.0.0.1:{free_port()}/x"  # nothing listens there
    done = harness("up", "--workdir", str(tmp_path), env={"RAMPART_DB": url})
    line = one_line(done, 1)
    assert line.startswith(f"error: the database at postgresql+psycopg://me:***@127.0.0.1:{url.split(':')[-1]} "
                           "(RAMPART_DB) does not answer: ") and "Connection refused" in line
    assert "hunter2" not in done.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # no service was started: no log, no database


def test_a_player_whose_base_layer_does_not_answer(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    line = one_line(harness("defend", "--l1", url, "--db", f"sqlite:///{tmp_path / 'd.db'}"), 1)
    assert line == (f"error: the base layer at {url} does not answer (GET /info: "
                    "ConnectError('[Errno 111] Connection refused'))")


def test_a_service_that_exits_while_starting_is_said_at_once(tmp_path: Path) -> None:
    proc = Proc("base layer", [sys.executable, "-c", "import sys; print('rampart-l1: no genesis'); sys.exit(2)"],
                tmp_path / "l1.log", ready_url=f"http://127.0.0.1:{free_port()}/info")
    with pytest.raises(ServiceExited) as caught:  # at once: not a TimeoutError after the bound
        proc.start(bound=600)
    assert caught.value.last_line == "rampart-l1: no genesis" and caught.value.log == tmp_path / "l1.log"
    assert not proc.alive()


def test_a_network_that_does_not_come_up_is_one_line_naming_the_service_and_its_log(tmp_path: Path) -> None:
    (tmp_path / "l1.db").mkdir()  # where the base layer's database goes: it cannot open it
    line = one_line(harness("matrix", "--only", "fee", "--workdir", str(tmp_path)), 1)
    assert line.startswith(f"error: the base layer exited: rampart-l1: the database sqlite:///{tmp_path / 'l1.db'} "
                           "(--db) cannot be opened: ") and line.endswith(f"(its log: {tmp_path / 'l1.log'})")
