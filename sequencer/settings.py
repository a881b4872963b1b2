"""Settings of the sequencer service, in one place: env prefix RAMPART_, CLI flags override.

Unsafe defaults (the dev sequencer key, time travel, a world-open bind without a real key) are
refused outside `env=dev` by `Settings.check`, before anything is opened.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from contracts_spec.crypto import is_private_key, private_key_from_seed
from l1_mock.cli_common import DatabaseUrl, HttpUrl, Port, usable_cpus

# `sequencer.scenario.Keys()["sequencer"]`: the key of every dev genesis. Never outside dev.
DEV_SEQUENCER_KEY = private_key_from_seed(b"sequencer").hex()


class UnsafeSettings(ValueError):
    """A setting that is only acceptable in dev was used elsewhere."""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="RAMPART_")

    env: Literal["dev", "prod"] = "dev"
    l1_url: HttpUrl = "http://127.0.0.1:8545"
    sequencer_key: str | None = None  # hex private key; the dev key when unset (dev only)
    genesis: Path | None = None  # default: the base layer's stored genesis
    db: DatabaseUrl = "sqlite:///rampart-sequencer.db"  # journal; PostgreSQL by URL
    db_schema: str | None = None  # PostgreSQL only: run inside this schema (created if missing)
    host: str = "127.0.0.1"
    port: Port = 8000

    # batcher and follower
    batch_interval: float = Field(2.0, gt=0)  # seconds between batches (a batch is cut earlier at batch_max_txs)
    batch_max_txs: int = Field(4096, ge=1)  # never above the preset's max_batch_txs
    follow_interval: float = Field(0.5, gt=0)  # seconds between base-layer polls (time, deposits, statuses)
    post_batches: bool = True  # False: build and execute batches but never post (read-only replicas, tests)
    auto_stake: bool = True  # dev: take native coin from the faucet to register, and to top the stake up
    defend: bool = True  # answer every dispute game against our batches (verifier.player in our seat)

    # intake limits
    max_body_bytes: int = Field(4 * 1024 * 1024, ge=1)
    max_batch_orders: int = Field(2000, ge=1)  # orders in one batch request
    max_open_orders: int = Field(10_000, ge=1)  # resting orders per account
    account_rate: float = Field(50_000.0, gt=0)  # state-changing requests per second per account (token bucket)
    account_burst: int = Field(100_000, ge=1)
    connection_rate: float = Field(50_000.0, gt=0)  # requests per second per connection
    connection_burst: int = Field(100_000, ge=1)
    auth_window: int = Field(300, ge=1)  # a private read's Subscribe timestamp must be within this of the clock

    # websocket
    ws_queue: int = Field(8192, ge=1)  # messages buffered per connection; a client that falls further behind is dropped
    ws_max_subscriptions: int = Field(64, ge=1)

    # signatures: 0 checks them on the event loop; N > 0 uses N worker processes (the default: one
    # when the machine has a second core)
    verify_workers: int = Field(default_factory=lambda: 1 if usable_cpus() > 1 else 0, ge=0)
    journal_group: int = Field(8192, ge=1)  # most records per journal commit
    snapshot_every: int = Field(100_000, ge=0)  # records between snapshots of the core (and one at shutdown); 0: none

    @field_validator("sequencer_key")
    @classmethod
    def _a_private_key(cls, value: str | None) -> str | None:
        if value:  # unset or empty: the dev key (refused outside dev by `check`)
            try:
                key = bytes.fromhex(value.removeprefix("0x"))
            except ValueError:
                raise ValueError("a private key is 32 bytes of hex") from None
            if not is_private_key(key):
                raise ValueError("a private key is 32 bytes of hex, within the secp256k1 order")
        return value

    def key_bytes(self) -> bytes:
        return bytes.fromhex((self.sequencer_key or DEV_SEQUENCER_KEY).removeprefix("0x"))

    def check(self) -> None:
        """Refuse dev-only settings outside dev."""
        if self.env == "dev":
            return
        if self.env != "prod":
            raise UnsafeSettings(f"env must be dev or prod, not {self.env!r}")
        if not self.sequencer_key or self.key_bytes().hex() == DEV_SEQUENCER_KEY:
            raise UnsafeSettings("outside dev the sequencer key must be set, and not to the dev key")
        if self.auto_stake:
            raise UnsafeSettings("auto_stake takes coin from the dev faucet: dev only")
        if not self.post_batches:
            raise UnsafeSettings("a production sequencer posts its batches")
