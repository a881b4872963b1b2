"""The spec's vocabulary: named integers, market parameters, signed messages, transactions,
state records and the batch header. Plain frozen dataclasses; no behaviour beyond trivia.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum
from typing import Final, NewType

# --- named integers ------------------------------------------------------------------------

Lots = NewType("Lots", int)  # a position or order size, in lots of the market (signed for positions)
Ticks = NewType("Ticks", int)  # a price, in ticks of the market
Atoms = NewType("Atoms", int)  # USDC atoms (1e-6 USDC)
Ppm = NewType("Ppm", int)  # parts per million
Seconds = NewType("Seconds", int)  # unix time or a duration, in whole seconds

Address = bytes  # 20 bytes
Hash32 = bytes  # 32 bytes
Root = bytes  # 32 bytes, a Merkle root

PPM: Final = 1_000_000
INDEX_SCALE: Final = 1_000_000  # funding and loss indices are in atoms per lot x INDEX_SCALE

ZERO_ADDRESS: Final = bytes(20)
INSURANCE_FUND: Final = bytes(19) + b"\x01"  # the backstop account: takes liquidated positions
FEE_ACCOUNT: Final = bytes(19) + b"\x02"  # collects trading fees
SYSTEM_ACCOUNTS: Final = frozenset({INSURANCE_FUND, FEE_ACCOUNT})


# --- markets and presets -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class MarketParams:
    market_id: int
    symbol: str
    lot_size: str  # human-readable base amount of one lot, e.g. "0.0001" (display only)
    tick_size: str  # human-readable quote amount of one tick, e.g. "0.1" (display only)
    atoms_per_lot_tick: Atoms  # notional of one lot at a price of one tick: the only rule-bearing size
    initial_margin_ppm: Ppm
    maintenance_margin_ppm: Ppm
    taker_fee_ppm: Ppm
    maker_fee_ppm: Ppm
    liquidation_penalty_ppm: Ppm
    funding_rate_cap_ppm: Ppm  # per funding interval
    funding_interval: Seconds
    oracle_staleness: Seconds  # an oracle price older than this cannot back a trade or liquidation
    price_band_ppm: Ppm  # trades and liquidations must print within this band of the oracle price
    max_oracle_move_ppm: Ppm  # bound on one oracle update's move; 0 = unbounded
    max_position_lots: Lots
    max_open_interest_lots: Lots


@dataclass(frozen=True, slots=True)
class Preset:
    name: str
    chain_id: int
    rollup_address: Address  # the rollup's base-layer address: EIP-712 verifying contract
    block_time: Seconds
    max_time_lag: Seconds  # a batch's time may lag the base layer's block time by at most this
    challenge_window: Seconds
    game_clock: Seconds  # each side's chess clock
    clock_extension: Seconds  # a move leaving less than this on the mover's clock... see dispute
    challenger_bond: int  # native-coin units
    sequencer_stake_min: int
    bond_burn_ppm: Ppm  # share of a lost bond that is burnt, not paid to the winner
    max_batch_txs: int
    max_batch_bytes: int  # compressed data
    forced_inclusion_delay: Seconds
    escape_delay: Seconds
    governance_delay: Seconds
    admin_time_travel: bool  # dev only: the base layer may advance time on request


@dataclass(frozen=True, slots=True)
class Genesis:
    preset: Preset
    markets: tuple[MarketParams, ...]
    oracle_signers: tuple[Address, ...]
    oracle_quorum: int
    sequencer: Address
    governance: Address
    genesis_time: Seconds


# --- signed messages -----------------------------------------------------------------------


class TimeInForce(IntEnum):
    GTC = 0  # good til cancel (with expiry > 0: good til time)
    IOC = 1
    FOK = 2
    POST_ONLY = 3


@dataclass(frozen=True, slots=True)
class Order:
    account: Address
    market: int
    is_buy: bool
    price: Ticks  # limit price
    lots: Lots  # > 0
    tif: TimeInForce
    reduce_only: bool
    expiry: Seconds  # 0 = none; otherwise the order is dead when now > expiry
    nonce: int  # uint64; cancel-all raises the account's floor above it
    client_id: int  # uint64, the client's own id; no rule reads it


@dataclass(frozen=True, slots=True)
class SignedOrder:
    order: Order
    signature: bytes  # 65 bytes, EIP-712


@dataclass(frozen=True, slots=True)
class OracleReport:
    market: int
    price: Ticks
    time: Seconds
    signature: bytes  # by a registered oracle signer, EIP-712


# --- transactions --------------------------------------------------------------------------


class TxKind(IntEnum):
    DEPOSIT = 1
    FORCED_WITHDRAW = 2
    TRADE = 3
    CANCEL = 4
    CANCEL_ALL = 5
    ORACLE_PRICE = 6
    FUNDING_TICK = 7
    LIQUIDATE = 8
    WITHDRAW = 9
    APPLY_GOVERNANCE = 10


@dataclass(frozen=True, slots=True)
class Deposit:
    queue_index: int  # the entry itself is read from the bridge's deposit queue


@dataclass(frozen=True, slots=True)
class ForcedWithdraw:
    queue_index: int  # the entry itself is read from the bridge's forced-request queue


@dataclass(frozen=True, slots=True)
class Trade:
    maker: int  # index into the batch's signed orders
    taker: int
    lots: Lots
    price: Ticks


@dataclass(frozen=True, slots=True)
class Cancel:
    account: Address
    order_id: Hash32
    signature: bytes


@dataclass(frozen=True, slots=True)
class CancelAll:
    account: Address
    nonce_floor: int  # every order of the account with nonce < floor is cancelled
    signature: bytes


@dataclass(frozen=True, slots=True)
class OraclePrice:
    market: int
    time: Seconds
    reports: tuple[OracleReport, ...]


@dataclass(frozen=True, slots=True)
class FundingTick:
    market: int


@dataclass(frozen=True, slots=True)
class Liquidate:
    account: Address
    market: int
    lots: Lots  # > 0, taken off the account's position toward zero
    price: Ticks


@dataclass(frozen=True, slots=True)
class Withdraw:
    account: Address
    amount: Atoms
    nonce: int  # must equal the account's withdraw_nonce
    signature: bytes


@dataclass(frozen=True, slots=True)
class ApplyGovernance:
    queue_index: int  # the change itself is read from the base layer's governance queue


Tx = (
    Deposit | ForcedWithdraw | Trade | Cancel | CancelAll | OraclePrice | FundingTick | Liquidate | Withdraw
    | ApplyGovernance
)


# --- bridge queue entries (base-layer storage, read by the STF through BridgeView) ----------


@dataclass(frozen=True, slots=True)
class DepositEntry:
    account: Address
    amount: Atoms


@dataclass(frozen=True, slots=True)
class ForcedEntry:
    account: Address
    amount: Atoms


# --- governance changes (announced on the base layer, applied by ApplyGovernance) ------------


@dataclass(frozen=True, slots=True)
class SetMarketParams:
    params: MarketParams  # new parameters of market params.market_id, or a new market (the next id)


@dataclass(frozen=True, slots=True)
class SetOracleSigners:
    signers: tuple[Address, ...]
    quorum: int


GovernanceChange = SetMarketParams | SetOracleSigners


@dataclass(frozen=True, slots=True)
class GovernanceEntry:
    change: GovernanceChange
    effective_time: Seconds  # announcement time + the preset's governance_delay


# --- state records -------------------------------------------------------------------------
# Account, Position, OrderStatus and Market are built several times per trade: they are
# immutable by convention (never assign a field; build a new record), not `frozen=True`,
# whose __init__ sets every field through object.__setattr__ at ~3x the cost (bench/spec.py).
# unsafe_hash keeps them hashable by value like the frozen records.


@dataclass(slots=True, unsafe_hash=True)
class Account:
    collateral: Atoms = Atoms(0)  # signed quote balance
    withdraw_nonce: int = 0
    order_nonce_floor: int = 0
    markets: tuple[int, ...] = ()  # sorted ids of markets with a non-zero position


@dataclass(slots=True, unsafe_hash=True)
class Position:
    lots: Lots = Lots(0)
    funding_index: int = 0  # market funding index at last settlement
    loss_index: int = 0  # market loss index at last settlement


@dataclass(slots=True, unsafe_hash=True)
class OrderStatus:
    filled: Lots = Lots(0)
    cancelled: bool = False


@dataclass(slots=True, unsafe_hash=True)
class Market:
    params: MarketParams
    oracle_price: Ticks = Ticks(0)
    oracle_time: Seconds = Seconds(0)
    funding_index: int = 0  # cumulative, atoms per lot x INDEX_SCALE; longs pay when it rises
    loss_index: int = 0  # cumulative socialised loss, atoms per |lot| x INDEX_SCALE
    premium_sum: int = 0  # sum over trades since the last tick of (price - oracle) x lots
    premium_lots: Lots = Lots(0)  # sum of lots traded since the last tick
    last_funding_time: Seconds = Seconds(0)
    open_interest: Lots = Lots(0)  # total long lots (= total short lots)


WITHDRAWAL_TREE_DEPTH: Final = 32


@dataclass(frozen=True, slots=True)
class Globals:
    deposits_consumed: int = 0  # next deposit-queue index the rollup will consume
    forced_consumed: int = 0  # next forced-request index
    withdrawal_count: int = 0
    withdrawal_branch: tuple[Hash32, ...] = field(default_factory=lambda: (bytes(32),) * WITHDRAWAL_TREE_DEPTH)
    governance_applied: int = 0  # next governance-queue index the rollup will apply


@dataclass(frozen=True, slots=True)
class Config:
    oracle_signers: tuple[Address, ...]
    oracle_quorum: int
    sequencer: Address


@dataclass(frozen=True, slots=True)
class WithdrawalLeaf:
    index: int
    account: Address
    amount: Atoms


# --- batches -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class BatchHeader:
    index: int
    prev_root: Root
    post_root: Root
    tx_count: int
    tx_root: Root  # Merkle root over transaction hashes, in order
    data_hash: Hash32  # keccak of the compressed batch data
    deposits_consumed: int  # deposit-queue position after the batch (a leaf of the post-state)
    forced_consumed: int  # forced-queue position after the batch (a leaf of the post-state)
    withdrawal_root: Root  # withdrawal-tree root after the batch (a leaf of the post-state)
    orders_root: Root  # Merkle root over the signed orders' hashes, in order
    time: Seconds


@dataclass(frozen=True, slots=True)
class BatchData:
    orders: tuple[SignedOrder, ...]
    txs: tuple[Tx, ...]
