"""l1_mock/db: the engine and table creation every service's database goes through."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Column, Integer, MetaData, Table, inspect
from sqlalchemy.exc import OperationalError

from l1_mock.db import create_tables, make_engine


def test_the_loser_of_a_creation_race_finds_the_tables_there(tmp_path: Path) -> None:
    """Another process creates the tables between our check and our CREATE: refused "already
    exists" once, the next attempt finds them."""
    engine = make_engine(f"sqlite:///{tmp_path / 'race.db'}")
    metadata = MetaData()
    Table("t", metadata, Column("a", Integer, primary_key=True))
    real, calls = metadata.create_all, []

    def racing(bind: Any, **kw: Any) -> None:
        calls.append(1)
        if len(calls) == 1:
            real(bind)  # the other process
            raise OperationalError("CREATE TABLE t", {}, sqlite3.OperationalError("table t already exists"))
        real(bind, **kw)

    metadata.create_all = racing  # type: ignore[method-assign]
    create_tables(metadata, engine)
    assert len(calls) == 2 and inspect(engine).has_table("t")
    metadata.create_all = lambda bind, **kw: (_ for _ in ()).throw(  # type: ignore[method-assign]
        OperationalError("x", {}, sqlite3.OperationalError("disk I/O error")))
    with pytest.raises(OperationalError, match="disk I/O"):  # anything else is not swallowed
        create_tables(metadata, engine)


def test_processes_opening_one_fresh_database_at_once_all_succeed(db: tuple[str, str | None]) -> None:
    """A verifier's daemon and its operator's `status` (or several services) start on a fresh
    database at the same moment: each creates the tables, none fails."""
    url, schema = db
    code = ("import sys; from verifier.db import make_engine; from sequencer.journal import Journal; "
            "make_engine(sys.argv[1], sys.argv[2] or None); Journal.open(sys.argv[1], sys.argv[2] or None).close()")
    procs = [subprocess.Popen([sys.executable, "-c", code, url, schema or ""], stderr=subprocess.PIPE, text=True)
             for _ in range(6)]
    for p in procs:
        _, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
