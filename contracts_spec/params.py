"""Presets, markets and genesis as data.

`dev` has windows of seconds so a whole game fits in a test; `mainnet` has days. Each preset
fixes the chain id and the rollup's base-layer address, which sign every EIP-712 message.
"""

from __future__ import annotations

import json
from typing import Any, Final

from contracts_spec.errors import BadGenesis
from contracts_spec.types import (
    Atoms,
    Genesis,
    Lots,
    MarketParams,
    Ppm,
    Preset,
    Seconds,
)

DEV: Final = Preset(
    name="dev",
    chain_id=31337,
    rollup_address=bytes.fromhex("5a3f0000000000000000000000000000000000d1"),
    block_time=Seconds(1),
    max_time_lag=Seconds(600),
    challenge_window=Seconds(60),
    game_clock=Seconds(30),
    clock_extension=Seconds(5),
    challenger_bond=10**18,
    sequencer_stake_min=100 * 10**18,
    bond_burn_ppm=Ppm(100_000),
    max_batch_txs=65_536,
    max_batch_bytes=4 * 1024 * 1024,
    forced_inclusion_delay=Seconds(120),
    escape_delay=Seconds(600),
    governance_delay=Seconds(30),
    admin_time_travel=True,
)

MAINNET: Final = Preset(
    name="mainnet",
    chain_id=1,
    rollup_address=bytes.fromhex("5a3f00000000000000000000000000000000a001"),
    block_time=Seconds(12),
    max_time_lag=Seconds(3600),
    challenge_window=Seconds(7 * 86_400),
    game_clock=Seconds(302_400),  # 3.5 days, as Optimism's FaultDisputeGame
    clock_extension=Seconds(3 * 3600),
    challenger_bond=10**18,
    sequencer_stake_min=1_000 * 10**18,
    bond_burn_ppm=Ppm(100_000),
    max_batch_txs=65_536,
    max_batch_bytes=4 * 1024 * 1024,
    forced_inclusion_delay=Seconds(86_400),
    escape_delay=Seconds(14 * 86_400),
    governance_delay=Seconds(7 * 86_400),
    admin_time_travel=False,
)

PRESETS: Final = {p.name: p for p in (DEV, MAINNET)}

BTC_USD: Final = MarketParams(
    market_id=0,
    symbol="BTC-USD",
    lot_size="0.0001",
    tick_size="0.1",
    atoms_per_lot_tick=Atoms(10),  # 0.0001 BTC x 0.1 USD = 0.00001 USD = 10 atoms
    initial_margin_ppm=Ppm(50_000),  # 20x
    maintenance_margin_ppm=Ppm(30_000),
    taker_fee_ppm=Ppm(500),
    maker_fee_ppm=Ppm(100),
    liquidation_penalty_ppm=Ppm(10_000),
    funding_rate_cap_ppm=Ppm(1_000),
    funding_interval=Seconds(3600),
    oracle_staleness=Seconds(60),
    price_band_ppm=Ppm(100_000),
    max_oracle_move_ppm=Ppm(200_000),
    max_position_lots=Lots(10_000_000),
    max_open_interest_lots=Lots(1_000_000_000),
)

ETH_USD: Final = MarketParams(
    market_id=1,
    symbol="ETH-USD",
    lot_size="0.001",
    tick_size="0.01",
    atoms_per_lot_tick=Atoms(10),  # 0.001 ETH x 0.01 USD = 0.00001 USD = 10 atoms
    initial_margin_ppm=Ppm(50_000),
    maintenance_margin_ppm=Ppm(30_000),
    taker_fee_ppm=Ppm(500),
    maker_fee_ppm=Ppm(100),
    liquidation_penalty_ppm=Ppm(10_000),
    funding_rate_cap_ppm=Ppm(1_000),
    funding_interval=Seconds(3600),
    oracle_staleness=Seconds(60),
    price_band_ppm=Ppm(100_000),
    max_oracle_move_ppm=Ppm(200_000),
    max_position_lots=Lots(10_000_000),
    max_open_interest_lots=Lots(1_000_000_000),
)

DEFAULT_MARKETS: Final = (BTC_USD, ETH_USD)


def dev_market(params: MarketParams, preset: Preset) -> MarketParams:
    """The dev preset shortens the funding interval so funding happens inside a demo."""
    if preset.name != "dev":
        return params
    from dataclasses import replace

    return replace(params, funding_interval=Seconds(60))


# --- genesis file ---------------------------------------------------------------------------


def _addr(value: Any, what: str) -> bytes:
    if not isinstance(value, str) or not value.startswith("0x") or len(value) != 42:
        raise BadGenesis(f"{what}: expected a 0x-prefixed 20-byte address")
    try:
        return bytes.fromhex(value[2:])
    except ValueError as exc:
        raise BadGenesis(f"{what}: not hex") from exc


def validate_market(m: MarketParams) -> None:
    # Verify sizes and fractions are sane: a market that breaks these cannot be margined
    if m.atoms_per_lot_tick <= 0:
        raise BadGenesis(f"{m.symbol}: atoms_per_lot_tick must be positive")
    if not (0 < m.maintenance_margin_ppm <= m.initial_margin_ppm <= 1_000_000):
        raise BadGenesis(f"{m.symbol}: need 0 < maintenance <= initial <= 1e6 ppm")
    for name in ("taker_fee_ppm", "maker_fee_ppm", "liquidation_penalty_ppm", "funding_rate_cap_ppm",
                 "price_band_ppm", "max_oracle_move_ppm"):
        if not (0 <= getattr(m, name) <= 1_000_000):
            raise BadGenesis(f"{m.symbol}: {name} must be within [0, 1e6]")
    if m.funding_interval <= 0 or m.oracle_staleness <= 0:
        raise BadGenesis(f"{m.symbol}: funding interval and oracle staleness must be positive")
    if m.max_position_lots <= 0 or m.max_open_interest_lots <= 0:
        raise BadGenesis(f"{m.symbol}: position and open-interest limits must be positive")


def genesis_from_json(text: str) -> Genesis:
    """Parse and validate a genesis file: {"preset", "genesis_time", "markets", "oracle": {...}, ...}."""
    try:
        doc = json.loads(text)
    except ValueError as exc:
        raise BadGenesis(f"not JSON: {exc}") from exc
    if not isinstance(doc, dict):
        raise BadGenesis("genesis must be a JSON object")
    preset = PRESETS.get(doc.get("preset", ""))
    if preset is None:
        raise BadGenesis(f"unknown preset {doc.get('preset')!r}; known: {sorted(PRESETS)}")
    markets = []
    try:
        for i, raw in enumerate(doc["markets"]):
            fields = {k: raw[k] for k in MarketParams.__dataclass_fields__}
            market = MarketParams(**fields)
            if market.market_id != i:
                raise BadGenesis("market ids must be 0, 1, 2, ... in file order")
            validate_market(market)
            markets.append(market)
        signers = tuple(_addr(s, "oracle signer") for s in doc["oracle"]["signers"])
        quorum = int(doc["oracle"]["quorum"])
        sequencer = _addr(doc["sequencer"], "sequencer")
        governance = _addr(doc.get("governance", doc["sequencer"]), "governance")
        genesis_time = int(doc.get("genesis_time", 0))
    except (KeyError, TypeError, ValueError) as exc:
        raise BadGenesis(f"malformed genesis: {exc!r}") from exc
    if not markets:
        raise BadGenesis("genesis needs at least one market")
    if len(set(signers)) != len(signers) or not (0 < quorum <= len(signers)):
        raise BadGenesis("oracle signers must be distinct and 0 < quorum <= len(signers)")
    return Genesis(
        preset=preset,
        markets=tuple(markets),
        oracle_signers=signers,
        oracle_quorum=quorum,
        sequencer=sequencer,
        governance=governance,
        genesis_time=Seconds(genesis_time),
    )


def genesis_to_json(genesis: Genesis) -> str:
    def market(m: MarketParams) -> dict[str, Any]:
        return {k: getattr(m, k) for k in MarketParams.__dataclass_fields__}

    return json.dumps(
        {
            "preset": genesis.preset.name,
            "genesis_time": genesis.genesis_time,
            "markets": [market(m) for m in genesis.markets],
            "oracle": {
                "signers": ["0x" + s.hex() for s in genesis.oracle_signers],
                "quorum": genesis.oracle_quorum,
            },
            "sequencer": "0x" + genesis.sequencer.hex(),
            "governance": "0x" + genesis.governance.hex(),
        },
        indent=2,
    )


def make_genesis(
    preset: Preset,
    oracle_signers: tuple[bytes, ...],
    oracle_quorum: int,
    sequencer: bytes,
    governance: bytes | None = None,
    genesis_time: int = 0,
    markets: tuple[MarketParams, ...] = DEFAULT_MARKETS,
) -> Genesis:
    g = Genesis(
        preset=preset,
        markets=tuple(dev_market(m, preset) for m in markets),
        oracle_signers=oracle_signers,
        oracle_quorum=oracle_quorum,
        sequencer=sequencer,
        governance=governance or sequencer,
        genesis_time=Seconds(genesis_time),
    )
    return genesis_from_json(genesis_to_json(g))  # one path validates every genesis
