"""Settings of the verifier node and its CLI, in one place: env prefix RAMPART_VERIFIER_, flags
override. Unsafe choices (a key file others can read) are refused by `keys.load_key`.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from l1_mock.cli_common import DatabaseUrl, HttpUrl


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="RAMPART_VERIFIER_")

    l1_url: HttpUrl = "http://127.0.0.1:8545"
    l1_timeout: float = Field(10.0, gt=0)  # seconds per base-layer request
    db: DatabaseUrl = "sqlite:///rampart-verifier.db"
    db_schema: str | None = None  # PostgreSQL only: run inside this schema (created if missing)
    key_file: Path = Path("rampart-verifier.key")
    poll_interval: float = Field(1.0, gt=0)  # seconds between polls of the base layer when idle
    # A checkpoint of the state every N verified batches bounds what a restart replays
    checkpoint_every: int = Field(16, ge=1)
    challenge: bool = True  # open a game against every batch whose root is wrong
    join: bool = True  # open our own game when another's game on a wrong batch heads the wrong way
    claim: bool = True  # claim bonds and winnings as soon as they are credited
    # Processes recovering order signatures, for the next batch while the node executes this one
    # (0: one per CPU but the node's own, none on one CPU; 1: inline, in the node; N: N processes);
    # batches under `parallel_orders` orders are recovered inline, where a pool's overhead would
    # cost more than it saves
    workers: int = Field(0, ge=0)
    parallel_orders: int = Field(2_000, ge=1)
    # Prometheus metrics of `run` (verifier/metrics.py) on this port, when set (0: any free port)
    metrics_port: int | None = Field(None, ge=0, le=65535)
    metrics_host: str = "127.0.0.1"
    # Warn when the side to move in a watched game has less than this share of its clock left
    warn_clock_share: float = Field(0.5, ge=0, le=1)
