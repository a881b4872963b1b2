"""Base-layer fixtures: a chain served over real HTTP on 127.0.0.1 (uvicorn in a thread), on
SQLite and, when RAMPART_TEST_PG is set, on PostgreSQL in a fresh schema per test."""

from __future__ import annotations

import os
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from sqlalchemy import create_engine, text

from contracts_spec.params import DEV, genesis_to_json
from contracts_spec.types import Genesis, Preset
from harness.procs import free_port
from l1_mock.api import create_app
from l1_mock.chain import Chain
from l1_mock.client import L1Client
from l1_mock.db import make_engine
from l1_mock.settings import Settings
from sequencer.scenario import Keys, dev_genesis

PG_URL = os.environ.get("RAMPART_TEST_PG")
T0 = 1_700_000_000
NATIVE = 10**18


@dataclass
class Node:
    """One running chain process-in-a-thread; `restart()` reopens the same database."""

    settings: Settings
    genesis: Genesis | None
    server: Any = None
    thread: threading.Thread | None = None
    chain: Chain | None = None
    clients: list[L1Client] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.settings.port}"

    def start(self) -> Node:
        self.chain = Chain(make_engine(self.settings.db, self.settings.db_schema), self.settings, self.genesis)
        config = uvicorn.Config(create_app(self.chain), host="127.0.0.1", port=self.settings.port,
                                log_level="warning", lifespan="off")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        while not self.server.started:
            if not self.thread.is_alive():
                raise RuntimeError("uvicorn did not start")
            self.thread.join(0.01)
        return self

    def stop(self) -> None:
        for c in self.clients:
            c.close()
        self.clients.clear()
        if self.server is not None:
            self.server.should_exit = True
            assert self.thread is not None
            self.thread.join(10)
            self.server = None
        if self.chain is not None:
            self.chain.engine.dispose()
            self.chain = None

    def restart(self) -> Node:
        self.stop()
        self.settings = self.settings.model_copy(update={"port": free_port()})
        return self.start()

    def client(self, key: bytes | None = None) -> L1Client:
        c = L1Client(self.url, key)
        self.clients.append(c)
        return c


@pytest.fixture(params=["sqlite"] + (["postgresql"] if PG_URL else []))
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, str | None]]:
    """(url, schema): a fresh SQLite file, or a fresh PostgreSQL schema dropped afterwards."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'l1.db'}", None
        return
    assert PG_URL is not None
    schema = "l1test_" + uuid.uuid4().hex[:12]
    yield PG_URL, schema
    engine = create_engine(PG_URL)
    with engine.begin() as conn:
        conn.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
    engine.dispose()


@pytest.fixture
def keys() -> Keys:
    return Keys()


@pytest.fixture
def genesis(keys: Keys) -> Genesis:
    return dev_genesis(keys, genesis_time=T0)


def make_settings(db: tuple[str, str | None], **kw: Any) -> Settings:
    return Settings(**{"db": db[0], "db_schema": db[1], "port": free_port(), "manual_time": True, **kw})


@pytest.fixture
def node_factory(db: tuple[str, str | None]) -> Iterator[Any]:
    nodes: list[Node] = []

    def make(genesis: Genesis, **kw: Any) -> Node:
        node = Node(make_settings(db, **kw), genesis).start()
        nodes.append(node)
        return node

    yield make
    for n in nodes:
        n.stop()


@pytest.fixture
def node(node_factory: Any, genesis: Genesis) -> Node:
    return node_factory(genesis)


def write_genesis(path: Path, genesis: Genesis) -> Path:
    path.write_text(genesis_to_json(genesis))
    return path


def preset_genesis(keys: Keys, preset: Preset = DEV) -> Genesis:
    return dev_genesis(keys, preset=preset, genesis_time=T0)
