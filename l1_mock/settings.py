"""Settings of the base-layer service, in one place: env prefix RAMPART_L1_, CLI flags override."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from l1_mock.cli_common import DatabaseUrl, Port


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="RAMPART_L1_")

    genesis: Path | None = None  # required on first start; afterwards the stored one is used
    db: DatabaseUrl = "sqlite:///rampart-l1.db"
    db_schema: str | None = None  # PostgreSQL only: run inside this schema (created if missing)
    host: str = "127.0.0.1"
    port: Port = 8545
    # None: instant mode, a block per transaction; otherwise a block every `block_time` seconds
    block_time: int | None = Field(None, ge=1)
    # Time moves only through the admin call (dev only): tests drive every clock this way
    manual_time: bool = False
