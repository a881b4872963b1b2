"""Hypothesis strategies for every spec dataclass, over the full range of each encoded width.

Reusable by any spec test: `from strategies import signed_orders, txs, accounts, ...`.
"""

from __future__ import annotations

from hypothesis import strategies as st

from contracts_spec.types import (
    WITHDRAWAL_TREE_DEPTH,
    Account,
    BatchData,
    BatchHeader,
    Cancel,
    CancelAll,
    Config,
    Deposit,
    DepositEntry,
    ForcedEntry,
    ForcedWithdraw,
    FundingTick,
    Globals,
    Liquidate,
    Market,
    MarketParams,
    OraclePrice,
    OracleReport,
    Order,
    OrderStatus,
    Position,
    SignedOrder,
    TimeInForce,
    Trade,
    Tx,
    Withdraw,
    WithdrawalLeaf,
)

# --- primitives ----------------------------------------------------------------------------

addresses = st.binary(min_size=20, max_size=20)
hashes = st.binary(min_size=32, max_size=32)
signatures = st.binary(min_size=65, max_size=65)
u8 = st.integers(0, 2**8 - 1)
u32 = st.integers(0, 2**32 - 1)
u64 = st.integers(0, 2**64 - 1)
u128 = st.integers(0, 2**128 - 1)
i128 = st.integers(-(2**127), 2**127 - 1)
tifs = st.sampled_from(TimeInForce)
short_text = st.text(max_size=8)  # at most 32 UTF-8 bytes: the codec's string bound

# --- signed messages -----------------------------------------------------------------------

orders = st.builds(
    Order,
    account=addresses,
    market=u32,
    is_buy=st.booleans(),
    price=u64,
    lots=u64,
    tif=tifs,
    reduce_only=st.booleans(),
    expiry=u64,
    nonce=u64,
    client_id=u64,
)
signed_orders = st.builds(SignedOrder, order=orders, signature=signatures)
oracle_reports = st.builds(OracleReport, market=u32, price=u64, time=u64, signature=signatures)

# --- transactions --------------------------------------------------------------------------

deposits = st.builds(Deposit, queue_index=u64)
forced_withdraws = st.builds(ForcedWithdraw, queue_index=u64)
trades = st.builds(Trade, maker=u32, taker=u32, lots=u64, price=u64)
cancels = st.builds(Cancel, account=addresses, order_id=hashes, signature=signatures)
cancel_alls = st.builds(CancelAll, account=addresses, nonce_floor=u64, signature=signatures)
oracle_prices = st.builds(
    OraclePrice, market=u32, time=u64, reports=st.lists(oracle_reports, max_size=4).map(tuple)
)
funding_ticks = st.builds(FundingTick, market=u32)
liquidates = st.builds(Liquidate, account=addresses, market=u32, lots=u64, price=u64)
withdraws = st.builds(Withdraw, account=addresses, amount=u64, nonce=u64, signature=signatures)
txs: st.SearchStrategy[Tx] = st.one_of(
    deposits, forced_withdraws, trades, cancels, cancel_alls, oracle_prices, funding_ticks, liquidates, withdraws
)

# --- markets, records, queue entries -------------------------------------------------------

market_params = st.builds(
    MarketParams,
    market_id=u32,
    symbol=short_text,
    lot_size=short_text,
    tick_size=short_text,
    atoms_per_lot_tick=u64,
    initial_margin_ppm=u32,
    maintenance_margin_ppm=u32,
    taker_fee_ppm=u32,
    maker_fee_ppm=u32,
    liquidation_penalty_ppm=u32,
    funding_rate_cap_ppm=u32,
    funding_interval=u64,
    oracle_staleness=u64,
    price_band_ppm=u32,
    max_oracle_move_ppm=u32,
    max_position_lots=u64,
    max_open_interest_lots=u64,
)
markets = st.builds(
    Market,
    params=market_params,
    oracle_price=u64,
    oracle_time=u64,
    funding_index=i128,
    loss_index=i128,
    premium_sum=i128,
    premium_lots=u128,
    last_funding_time=u64,
    open_interest=u128,
)
accounts = st.builds(
    Account,
    collateral=i128,
    withdraw_nonce=u64,
    order_nonce_floor=u64,
    markets=st.lists(u32, unique=True, max_size=8).map(lambda ms: tuple(sorted(ms))),
)
positions = st.builds(Position, lots=i128, funding_index=i128, loss_index=i128)
order_statuses = st.builds(OrderStatus, filled=u64, cancelled=st.booleans())
globals_ = st.builds(
    Globals,
    deposits_consumed=u64,
    forced_consumed=u64,
    withdrawal_count=u64,
    withdrawal_branch=st.lists(
        st.one_of(st.just(bytes(32)), hashes), min_size=WITHDRAWAL_TREE_DEPTH, max_size=WITHDRAWAL_TREE_DEPTH
    ).map(tuple),
)
configs = st.builds(
    Config, oracle_signers=st.lists(addresses, max_size=5).map(tuple), oracle_quorum=u32, sequencer=addresses
)
withdrawal_leaves = st.builds(WithdrawalLeaf, index=u64, account=addresses, amount=u64)
deposit_entries = st.builds(DepositEntry, account=addresses, amount=u64)
forced_entries = st.builds(ForcedEntry, account=addresses, amount=u64)

# --- batches -------------------------------------------------------------------------------

headers = st.builds(
    BatchHeader,
    index=u64,
    prev_root=hashes,
    post_root=hashes,
    tx_count=u32,
    tx_root=hashes,
    data_hash=hashes,
    deposits_consumed=u64,
    forced_consumed=u64,
    withdrawal_root=hashes,
    orders_root=hashes,
    time=u64,
)
batch_data = st.builds(
    BatchData,
    orders=st.lists(signed_orders, max_size=4).map(tuple),
    txs=st.lists(txs, max_size=8).map(tuple),
)
