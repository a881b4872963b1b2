"""Engine and sessions: SQLite in WAL mode by default, PostgreSQL by URL (optionally in a schema).

Every transaction of the chain runs in one database transaction that commits before the
chain answers, so whatever was acknowledged survives kill -9.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Engine, MetaData, create_engine, event, text
from sqlalchemy.exc import IntegrityError, OperationalError, ProgrammingError
from sqlalchemy.orm import Session, sessionmaker

from l1_mock.models import Base


def make_engine(url: str, schema: str | None = None, *, synchronous: str = "NORMAL",
                foreign_keys: bool = True) -> Engine:
    """A SQLAlchemy engine for any Rampart service: SQLite in WAL mode, or PostgreSQL in `schema`.

    synchronous NORMAL in WAL mode: a commit survives a killed process (only power loss may
    drop it); FULL also survives power loss. The base layer, the sequencer's journal and the
    verifier all open their databases here.
    """
    connect_args: dict[str, Any] = {}
    if url.startswith("sqlite"):
        connect_args["check_same_thread"] = False
        connect_args["timeout"] = 30
    elif schema:
        connect_args["options"] = f"-csearch_path={schema}"
    engine = create_engine(url, connect_args=connect_args, pool_pre_ping=True)
    if url.startswith("sqlite"):

        @event.listens_for(engine, "connect")
        def _pragmas(dbapi_connection: Any, _record: Any) -> None:
            cur = dbapi_connection.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute(f"PRAGMA synchronous={synchronous}")
            if foreign_keys:
                cur.execute("PRAGMA foreign_keys=ON")
            cur.close()

    elif schema:
        with engine.begin() as conn:
            conn.execute(text(f'CREATE SCHEMA IF NOT EXISTS "{schema}"'))
    return engine


def create_tables(metadata: MetaData, engine: Engine, attempts: int = 5) -> None:
    """`metadata.create_all`, safe when another process creates the same tables at the same
    moment (an operator's `rampart-verifier status` while the daemon starts on a fresh database):
    the loser of that race is refused ("already exists", or PostgreSQL's duplicate pg_type row)
    and tries again, finding them there."""
    for attempt in range(attempts):
        try:
            metadata.create_all(engine)
            return
        except (OperationalError, ProgrammingError, IntegrityError) as exc:
            text_ = str(exc).lower()
            if attempt == attempts - 1 or not ("already exists" in text_ or "duplicate" in text_):
                raise


def create_schema(engine: Engine) -> None:
    create_tables(Base.metadata, engine)


def make_sessionmaker(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)
