"""The state transition function: `apply_batch` -> `process_tx` -> one `process_*` per kind.

Reads top to bottom like the execution specs: every check is preceded by `# Verify ...` and
every rejection is a named InvalidTransaction. `env.now` is the batch header's time. The
formulas and their rounding are stated in contracts_spec/README.md.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from contracts_spec import eip712, governance
from contracts_spec.codec import encode_withdrawal_leaf
from contracts_spec.crypto import keccak, recover_address
from contracts_spec.errors import (
    BadNonce,
    BadQueueIndex,
    BadSignature,
    FundingTooEarly,
    GovernanceNotEffective,
    HealthyAccount,
    InsufficientMargin,
    InvalidAmount,
    InvalidBatch,
    OracleMoveTooLarge,
    OracleNotMonotonic,
    OracleQuorum,
    OrderCancelled,
    OrderExpired,
    Overfill,
    PositionLimit,
    PostOnlyViolated,
    PriceOutsideBand,
    PriceOutsideLimit,
    ReduceOnlyViolated,
    SelfTrade,
    SideMismatch,
    StaleOracle,
    UnknownOrder,
    WrongSigner,
)
from contracts_spec.margin import (
    account_value,
    ceil_div,
    fee,
    initial_requirement,
    is_risk_increasing,
    maintenance_requirement,
    owed_atoms,
    position_value,
    requirement,
    within_band,
)
from contracts_spec.merkle import withdrawal_append
from contracts_spec.state import State
from contracts_spec.types import (
    FEE_ACCOUNT,
    INDEX_SCALE,
    INSURANCE_FUND,
    PPM,
    SYSTEM_ACCOUNTS,
    Account,
    Address,
    ApplyGovernance,
    BatchData,
    Cancel,
    CancelAll,
    Deposit,
    DepositEntry,
    ForcedEntry,
    ForcedWithdraw,
    FundingTick,
    Globals,
    GovernanceEntry,
    Hash32,
    Liquidate,
    Market,
    OraclePrice,
    OrderStatus,
    Position,
    Preset,
    Seconds,
    SignedOrder,
    TimeInForce,
    Trade,
    Tx,
    Withdraw,
    WithdrawalLeaf,
)

# --- the environment of a batch -------------------------------------------------------------


class BridgeView(Protocol):
    """The base layer's bridge queues, read by the STF; never supplied by the batch's author."""

    def deposit(self, index: int) -> DepositEntry | None: ...

    def forced(self, index: int) -> ForcedEntry | None: ...

    def governance(self, index: int) -> GovernanceEntry | None: ...


class MemoryBridge:
    """A BridgeView over lists: what tests, benchmarks and followers that mirror the queues use."""

    def __init__(
        self,
        deposits: Sequence[DepositEntry] = (),
        forced: Sequence[ForcedEntry] = (),
        governance: Sequence[GovernanceEntry] = (),
    ) -> None:
        self.deposits = list(deposits)
        self.forced_requests = list(forced)
        self.governance_entries = list(governance)

    def deposit(self, index: int) -> DepositEntry | None:
        return self.deposits[index] if 0 <= index < len(self.deposits) else None

    def forced(self, index: int) -> ForcedEntry | None:
        return self.forced_requests[index] if 0 <= index < len(self.forced_requests) else None

    def governance(self, index: int) -> GovernanceEntry | None:
        return self.governance_entries[index] if 0 <= index < len(self.governance_entries) else None


@dataclass(frozen=True, slots=True)
class Env:
    preset: Preset  # fixes the EIP-712 domain
    now: Seconds  # the batch header's time
    bridge: BridgeView


class BatchOrders:
    """The batch's signed orders, addressed by index; ids and signers computed once each.

    `signers` and `ids` let intake hand over what it already computed (the sequencer checks
    every signature and derives every order id when an order arrives); anything not handed
    over is computed here. A handed-over id must be `eip712.order_digest` of that order.
    `recovered` does the same for the transactions' signed messages (cancels): (digest,
    signature) -> `recover_address(digest, signature)`, as a verifier derives them ahead.
    """

    __slots__ = ("orders", "preset", "_ids", "_signers", "_recovered")

    def __init__(
        self,
        orders: Sequence[SignedOrder] | Mapping[int, SignedOrder],
        preset: Preset,
        signers: Mapping[int, Address] | None = None,
        ids: Mapping[int, Hash32] | None = None,
        recovered: Mapping[tuple[bytes, bytes], Address] | None = None,
    ) -> None:
        self.orders: Mapping[int, SignedOrder] = (
            orders if isinstance(orders, Mapping) else dict(enumerate(orders))
        )
        self.preset = preset
        self._ids: dict[int, Hash32] = dict(ids or {})
        self._signers: dict[int, Address] = dict(signers or {})
        self._recovered: Mapping[tuple[bytes, bytes], Address] = recovered or {}

    def recover(self, digest: Hash32, signature: bytes) -> Address:
        """`recover_address(digest, signature)`, unless it was handed over."""
        signer = self._recovered.get((digest, signature))
        return signer if signer is not None else recover_address(digest, signature)

    def get(self, index: int) -> SignedOrder:
        # Verify the index names an order of the batch
        signed = self.orders.get(index)
        if signed is None:
            raise UnknownOrder(f"order index {index} is not in the batch")
        return signed

    def order_id(self, index: int) -> Hash32:
        oid = self._ids.get(index)
        if oid is None:
            oid = self._ids[index] = eip712.order_digest(self.preset, self.get(index).order)
        return oid

    def verify(self, index: int) -> Hash32:
        """Check the order's signature; return its id."""
        signed = self.get(index)
        oid = self._ids.get(index)
        if oid is None:
            oid = self._ids[index] = eip712.order_digest(self.preset, signed.order)
        signer = self._signers.get(index)
        if signer is None:
            signer = self._signers[index] = recover_address(oid, signed.signature)
        # Verify the order is signed by its account
        if signer != signed.order.account:
            raise WrongSigner("order signature is not by the order's account")
        return oid


# --- batch --------------------------------------------------------------------------------


def apply_batch(
    state: State,
    data: BatchData,
    env: Env,
    signers: Mapping[int, Address] | None = None,
    ids: Mapping[int, Hash32] | None = None,
    recovered: Mapping[tuple[bytes, bytes], Address] | None = None,
) -> None:
    """Apply every transaction of a batch, in order; on any rejection nothing is changed.

    `signers` and `ids` are what intake already derived per order index, `recovered` the
    signers of transactions' messages (see BatchOrders).
    """
    # Verify the batch is within the preset's bounds
    if len(data.txs) > env.preset.max_batch_txs:
        raise InvalidBatch(f"{len(data.txs)} transactions exceed the preset's {env.preset.max_batch_txs}")
    orders = BatchOrders(data.orders, env.preset, signers, ids, recovered)
    mark = len(state.undo)
    try:
        for tx in data.txs:
            process_tx(state, tx, orders, env)
    except BaseException:
        state.rollback_to(mark)
        raise


def process_tx(state: State, tx: Tx, orders: BatchOrders, env: Env) -> None:
    """Apply one transaction atomically: it is applied whole or raises and changes nothing."""
    handler = _HANDLERS.get(type(tx))
    if handler is None:
        raise InvalidBatch(f"unknown transaction type {type(tx).__name__}")
    # state.atomic(), spelt out: a generator context per transaction costs ~1 us (bench/spec.py)
    mark = len(state.undo)
    try:
        handler(state, tx, orders, env)
    except BaseException:
        state.rollback_to(mark)
        raise


# --- shared helpers -------------------------------------------------------------------------


def holdings(state: State, address: Address, account: Account) -> list[tuple[Position, Market]]:
    """Every (position, market) of the account's open-market set: what margin reads."""
    return [(state.position(address, m), state.market(m)) for m in account.markets]


def settle(state: State, address: Address, market_id: int, market: Market) -> None:
    """Settle a position's funding and loss against the insurance fund; bring its indices current.

    The fund is the counterparty of every settlement: zero-sum funding nets out across
    positions, and the rounding dust (debts up, credits down) stays with the fund.
    """
    position = state.position(address, market_id)
    owed = owed_atoms(position, market)
    if owed and address != INSURANCE_FUND:
        account = state.account(address)
        state.set_account(address, _with_collateral(account, account.collateral - owed))
        fund = state.account(INSURANCE_FUND)
        state.set_account(INSURANCE_FUND, _with_collateral(fund, fund.collateral + owed))
    if position.funding_index != market.funding_index or position.loss_index != market.loss_index:
        state.set_position(address, market_id, Position(position.lots, market.funding_index, market.loss_index))


def move_position(state: State, address: Address, market_id: int, delta: int) -> tuple[int, int]:
    """Add `delta` lots to a settled position; keep the account's open-market set exact."""
    position = state.position(address, market_id)
    old = position.lots
    new = old + delta
    state.set_position(address, market_id, Position(new, position.funding_index, position.loss_index))  # type: ignore[arg-type]
    if (old == 0) != (new == 0):
        account = state.account(address)
        markets = set(account.markets)
        if new == 0:
            markets.discard(market_id)
        else:
            markets.add(market_id)
        state.set_account(
            address,
            Account(account.collateral, account.withdraw_nonce, account.order_nonce_floor, tuple(sorted(markets))),
        )
    return old, new


def add_collateral(state: State, address: Address, amount: int) -> None:
    account = state.account(address)
    state.set_account(address, _with_collateral(account, account.collateral + amount))


def _with_collateral(account: Account, collateral: int) -> Account:
    return Account(collateral, account.withdraw_nonce, account.order_nonce_floor, account.markets)  # type: ignore[arg-type]


def open_interest_delta(old: int, new: int) -> int:
    """Change in total long lots when one position goes from `old` to `new`."""
    return max(new, 0) - max(old, 0)


def verify_fresh_oracle(market: Market, now: int) -> None:
    # Verify the market has an oracle price that is not stale at `now`
    if market.oracle_price <= 0 or market.oracle_time + market.params.oracle_staleness < now:
        raise StaleOracle(f"{market.params.symbol}: oracle price missing or older than the staleness limit")


def verify_margin(state: State, address: Address, account: Account, risk_increasing: bool) -> None:
    """After a trade: initial margin if the account added risk, otherwise solvency.

    `account` is the account's record as the trade left it.
    """
    if address in SYSTEM_ACCOUNTS:
        return
    # account_value and initial_requirement over `holdings`, in one pass with no list: runs
    # twice per trade (bench/spec.py)
    value: int = account.collateral
    required = 0
    for m in account.markets:
        position, market = state.position(address, m), state.market(m)
        value += position_value(position, market)
        if risk_increasing:
            required += requirement(position.lots, market, market.params.initial_margin_ppm)
    if risk_increasing:
        # Verify the account covers its initial margin after a risk-increasing trade
        if value < required:
            raise InsufficientMargin("account value below initial margin after a risk-increasing trade")
    # Verify the account is not left bankrupt by a risk-reducing trade
    elif value < 0:
        raise InsufficientMargin("risk-reducing trade leaves the account with negative value")


def append_withdrawal(state: State, address: Address, amount: int) -> None:
    g = state.globals()
    leaf = keccak(encode_withdrawal_leaf(WithdrawalLeaf(g.withdrawal_count, address, amount)))  # type: ignore[arg-type]
    branch = withdrawal_append(g.withdrawal_branch, g.withdrawal_count, leaf)
    state.set_globals(Globals(g.deposits_consumed, g.forced_consumed, g.withdrawal_count + 1, branch, g.governance_applied))


def free_after_withdrawal(state: State, address: Address, amount: int) -> bool:
    """Could the account withdraw `amount` and still cover its initial margin?"""
    account = state.account(address)
    held = holdings(state, address, account)
    return account_value(account.collateral - amount, held) >= initial_requirement(held)


# --- deposits and withdrawals ---------------------------------------------------------------


def process_deposit(state: State, tx: Deposit, orders: BatchOrders, env: Env) -> None:
    g = state.globals()
    # Verify the deposit is the next one in the bridge's queue
    if tx.queue_index != g.deposits_consumed:
        raise BadQueueIndex(f"deposit {tx.queue_index} is not the next in the queue ({g.deposits_consumed})")
    entry = env.bridge.deposit(tx.queue_index)
    # Verify the bridge holds that entry
    if entry is None:
        raise BadQueueIndex(f"the bridge has no deposit {tx.queue_index}")
    # Verify the deposit credits a user account with a positive amount
    if entry.amount <= 0 or entry.account in SYSTEM_ACCOUNTS:
        raise InvalidAmount("deposit must be positive and to a user account")
    add_collateral(state, entry.account, entry.amount)
    g = state.globals()
    state.set_globals(
        Globals(g.deposits_consumed + 1, g.forced_consumed, g.withdrawal_count, g.withdrawal_branch, g.governance_applied)
    )


def process_forced_withdraw(state: State, tx: ForcedWithdraw, orders: BatchOrders, env: Env) -> None:
    g = state.globals()
    # Verify the request is the next one in the forced queue
    if tx.queue_index != g.forced_consumed:
        raise BadQueueIndex(f"forced request {tx.queue_index} is not the next ({g.forced_consumed})")
    entry = env.bridge.forced(tx.queue_index)
    # Verify the bridge holds that entry
    if entry is None:
        raise BadQueueIndex(f"the bridge has no forced request {tx.queue_index}")
    state.set_globals(
        Globals(g.deposits_consumed, g.forced_consumed + 1, g.withdrawal_count, g.withdrawal_branch, g.governance_applied)
    )
    # A request the account cannot afford is consumed as rejected; the batch stays valid
    if entry.amount <= 0 or entry.account in SYSTEM_ACCOUNTS:
        return
    if not free_after_withdrawal(state, entry.account, entry.amount):
        return
    add_collateral(state, entry.account, -entry.amount)
    append_withdrawal(state, entry.account, entry.amount)


def process_withdraw(state: State, tx: Withdraw, orders: BatchOrders, env: Env) -> None:
    # Verify the signature is the account's
    signer = eip712.recover_withdraw_signer(env.preset, tx)
    if signer != tx.account:
        raise WrongSigner("withdrawal not signed by the account")
    # Verify the amount is positive
    if tx.amount <= 0:
        raise InvalidAmount("withdrawal amount must be positive")
    account = state.account(tx.account)
    # Verify the nonce is the account's next
    if tx.nonce != account.withdraw_nonce:
        raise BadNonce(f"withdraw nonce {tx.nonce}, expected {account.withdraw_nonce}")
    # Verify free collateral after the withdrawal covers initial margin
    if not free_after_withdrawal(state, tx.account, tx.amount):
        raise InsufficientMargin("withdrawal exceeds free collateral")
    state.set_account(
        tx.account,
        Account(account.collateral - tx.amount, account.withdraw_nonce + 1, account.order_nonce_floor, account.markets),  # type: ignore[arg-type]
    )
    append_withdrawal(state, tx.account, tx.amount)


# --- governance ---------------------------------------------------------------------------


def process_apply_governance(state: State, tx: ApplyGovernance, orders: BatchOrders, env: Env) -> None:
    g = state.globals()
    # Verify the change is the next one in the base layer's governance queue
    if tx.queue_index != g.governance_applied:
        raise BadQueueIndex(f"governance change {tx.queue_index} is not the next ({g.governance_applied})")
    entry = env.bridge.governance(tx.queue_index)
    # Verify the base layer holds that entry
    if entry is None:
        raise BadQueueIndex(f"the base layer has no governance change {tx.queue_index}")
    # Verify the change is effective at the batch time
    if not governance.is_effective(entry, env.now):
        raise GovernanceNotEffective(f"governance change {tx.queue_index} is effective at {entry.effective_time}")
    state.set_globals(
        Globals(g.deposits_consumed, g.forced_consumed, g.withdrawal_count, g.withdrawal_branch, g.governance_applied + 1)
    )
    # A change the state cannot take is consumed as rejected; the batch stays valid
    governance.apply_change(state, entry.change, env.now)


# --- cancels ------------------------------------------------------------------------------


def process_cancel(state: State, tx: Cancel, orders: BatchOrders, env: Env) -> None:
    # Verify the cancel is signed by the account that owns the order slot it writes
    if orders.recover(eip712.cancel_digest(env.preset, tx.account, tx.order_id), tx.signature) != tx.account:
        raise WrongSigner("cancel not signed by the account")
    status = state.order_status(tx.account, tx.order_id)
    if not status.cancelled:
        state.set_order_status(tx.account, tx.order_id, OrderStatus(status.filled, True))


def process_cancel_all(state: State, tx: CancelAll, orders: BatchOrders, env: Env) -> None:
    # Verify the cancel-all is signed by the account
    digest = eip712.cancel_all_digest(env.preset, tx.account, tx.nonce_floor)
    if orders.recover(digest, tx.signature) != tx.account:
        raise WrongSigner("cancel-all not signed by the account")
    account = state.account(tx.account)
    # Verify the floor rises (a replayed cancel-all is refused)
    if tx.nonce_floor <= account.order_nonce_floor:
        raise BadNonce("cancel-all floor must exceed the current floor")
    state.set_account(
        tx.account, Account(account.collateral, account.withdraw_nonce, tx.nonce_floor, account.markets)
    )


# --- oracle and funding -------------------------------------------------------------------


def median_price(prices: Sequence[int]) -> int:
    """The lower median: the middle of the sorted prices, the lower of the two middles if even."""
    ordered = sorted(prices)
    return ordered[(len(ordered) - 1) // 2]


def process_oracle_price(state: State, tx: OraclePrice, orders: BatchOrders, env: Env) -> None:
    market = state.market(tx.market)
    config = state.config()
    registered = set(config.oracle_signers)
    signers: set[bytes] = set()
    for report in tx.reports:
        # Verify each report is for this market and time
        if report.market != tx.market or report.time != tx.time:
            raise OracleQuorum("report for another market or time")
        # Verify each report is signed by a distinct registered oracle signer
        try:
            signer = eip712.recover_oracle_report_signer(env.preset, report)
        except BadSignature as exc:
            raise OracleQuorum(f"bad oracle signature: {exc}") from exc
        if signer not in registered or signer in signers:
            raise OracleQuorum("report by an unregistered or repeated signer")
        # Verify the reported price is positive
        if report.price <= 0:
            raise InvalidAmount("oracle price must be positive")
        signers.add(signer)
    # Verify a quorum signed
    if len(signers) < config.oracle_quorum:
        raise OracleQuorum(f"{len(signers)} signers, quorum is {config.oracle_quorum}")
    # Verify time strictly increases and is not in the batch's future
    if tx.time <= market.oracle_time or tx.time > env.now:
        raise OracleNotMonotonic("oracle time must increase and not exceed the batch time")
    price = median_price([r.price for r in tx.reports])
    bound = market.params.max_oracle_move_ppm
    # Verify the move is bounded, if the market bounds it
    if bound and market.oracle_price and abs(price - market.oracle_price) * PPM > bound * market.oracle_price:
        raise OracleMoveTooLarge(f"{market.params.symbol}: move beyond {bound} ppm")
    state.set_market(
        tx.market,
        Market(
            market.params, price, tx.time, market.funding_index, market.loss_index,  # type: ignore[arg-type]
            market.premium_sum, market.premium_lots, market.last_funding_time, market.open_interest,
        ),
    )


def funding_rate_ppm(market: Market) -> int:
    """The interval's rate: average premium of trades over the oracle, capped; 0 with no trades.

    premium = premium_sum / (premium_lots x oracle), in ppm, truncated toward zero.
    """
    if market.premium_lots <= 0 or market.oracle_price <= 0:
        return 0
    numerator = market.premium_sum * PPM
    denominator = market.premium_lots * market.oracle_price
    rate = abs(numerator) // denominator
    rate = rate if numerator >= 0 else -rate
    cap = market.params.funding_rate_cap_ppm
    return max(-cap, min(cap, rate))


def process_funding_tick(state: State, tx: FundingTick, orders: BatchOrders, env: Env) -> None:
    market = state.market(tx.market)
    # Verify the funding interval has passed
    if env.now < market.last_funding_time + market.params.funding_interval:
        raise FundingTooEarly(f"{market.params.symbol}: next funding at {market.last_funding_time + market.params.funding_interval}")
    verify_fresh_oracle(market, env.now)
    # Index delta: rate/1e6 x oracle x K atoms per lot, in INDEX_SCALE (=1e6) units: exact
    delta = funding_rate_ppm(market) * market.oracle_price * market.params.atoms_per_lot_tick * INDEX_SCALE // PPM
    state.set_market(
        tx.market,
        Market(
            market.params, market.oracle_price, market.oracle_time, market.funding_index + delta,
            market.loss_index, 0, 0, env.now, market.open_interest,  # type: ignore[arg-type]
        ),
    )


# --- trades -------------------------------------------------------------------------------


def process_trade(state: State, tx: Trade, orders: BatchOrders, env: Env) -> None:
    maker_signed, taker_signed = orders.get(tx.maker), orders.get(tx.taker)
    maker, taker = maker_signed.order, taker_signed.order
    # Verify the trade names two different orders, both signed by their accounts
    if tx.maker == tx.taker:
        raise SelfTrade("maker and taker are the same order")
    maker_id, taker_id = orders.verify(tx.maker), orders.verify(tx.taker)
    # Verify they are on the same market and opposite sides
    if maker.market != taker.market or maker.is_buy == taker.is_buy:
        raise SideMismatch("orders must be on one market and opposite sides")
    # Verify no account trades with itself
    if maker.account == taker.account:
        raise SelfTrade("maker and taker are the same account")
    # Verify the size and price are positive
    if tx.lots <= 0 or tx.price <= 0:
        raise InvalidAmount("trade lots and price must be positive")
    # Verify neither order has expired
    if (maker.expiry and env.now > maker.expiry) or (taker.expiry and env.now > taker.expiry):
        raise OrderExpired("order expired before the batch time")
    # Verify the trade prints at the maker's price, within the taker's limit
    if tx.price != maker.price:
        raise PriceOutsideLimit("trade must print at the maker's price")
    if (taker.is_buy and tx.price > taker.price) or (not taker.is_buy and tx.price < taker.price):
        raise PriceOutsideLimit("trade price beyond the taker's limit")
    # Verify the taker is not post-only
    if taker.tif == TimeInForce.POST_ONLY:
        raise PostOnlyViolated("a post-only order cannot take liquidity")
    market_id = maker.market
    market = state.market(market_id)
    verify_fresh_oracle(market, env.now)
    # Verify the price is within the market's band around the oracle price
    if not within_band(tx.price, market.oracle_price, market.params.price_band_ppm):
        raise PriceOutsideBand(f"{market.params.symbol}: trade price outside the band")
    maker_account = fill_order(state, maker.account, maker_id, maker.nonce, maker.lots, tx.lots)
    taker_account = fill_order(state, taker.account, taker_id, taker.nonce, taker.lots, tx.lots)

    # Settlement, the position move, cash and fees are netted into one write per record: the
    # same integers summed in one go (bench/spec.py guards this path)
    lots, price, params = tx.lots, tx.price, market.params
    if taker.is_buy:
        buyer, seller, b_account, s_account = taker.account, maker.account, taker_account, maker_account
    else:
        buyer, seller, b_account, s_account = maker.account, taker.account, maker_account, taker_account
    b_old, b_new, b_owed = trade_position(state, buyer, market_id, market, lots)
    s_old, s_new, s_owed = trade_position(state, seller, market_id, market, -lots)
    cash = lots * price * params.atoms_per_lot_tick
    maker_fee = fee(lots, price, market, params.maker_fee_ppm)
    taker_fee = fee(lots, price, market, params.taker_fee_ppm)
    change = {buyer: -cash, seller: cash}  # distinct: no account trades with itself
    change[maker.account] -= maker_fee
    change[taker.account] -= taker_fee
    change[FEE_ACCOUNT] = change.get(FEE_ACCOUNT, 0) + maker_fee + taker_fee
    # The insurance fund is the counterparty of every settlement (see `settle`)
    fund_in = None
    if b_owed and buyer != INSURANCE_FUND:
        change[buyer] -= b_owed
        fund_in = b_owed
    if s_owed and seller != INSURANCE_FUND:
        change[seller] -= s_owed
        fund_in = (fund_in or 0) + s_owed
    if fund_in is not None:
        change[INSURANCE_FUND] = change.get(INSURANCE_FUND, 0) + fund_in
    b_account = Account(
        b_account.collateral + change.pop(buyer), b_account.withdraw_nonce, b_account.order_nonce_floor,  # type: ignore[arg-type]
        open_markets(b_account.markets, market_id, b_old, b_new),
    )
    state.set_account(buyer, b_account)
    s_account = Account(
        s_account.collateral + change.pop(seller), s_account.withdraw_nonce, s_account.order_nonce_floor,  # type: ignore[arg-type]
        open_markets(s_account.markets, market_id, s_old, s_new),
    )
    state.set_account(seller, s_account)
    for address, amount in change.items():
        add_collateral(state, address, amount)

    b_order, s_order = (taker, maker) if taker.is_buy else (maker, taker)
    # Verify reduce-only orders only reduced their positions
    if b_order.reduce_only and not (b_old < 0 and b_new <= 0):
        raise ReduceOnlyViolated("reduce-only buy did not reduce a short")
    if s_order.reduce_only and not (s_old > 0 and s_new >= 0):
        raise ReduceOnlyViolated("reduce-only sell did not reduce a long")
    # Verify position and open-interest limits
    limit = params.max_position_lots
    if (abs(b_new) > limit and abs(b_new) > abs(b_old)) or (abs(s_new) > limit and abs(s_new) > abs(s_old)):
        raise PositionLimit(f"{params.symbol}: position above {limit} lots")
    oi = market.open_interest + open_interest_delta(b_old, b_new) + open_interest_delta(s_old, s_new)
    if oi > params.max_open_interest_lots and oi > market.open_interest:
        raise PositionLimit(f"{params.symbol}: open interest above the market's limit")
    state.set_market(
        market_id,
        Market(
            params, market.oracle_price, market.oracle_time, market.funding_index, market.loss_index,
            market.premium_sum + (price - market.oracle_price) * lots,
            market.premium_lots + lots, market.last_funding_time, oi,  # type: ignore[arg-type]
        ),
    )
    verify_margin(state, buyer, b_account, is_risk_increasing(b_old, b_new))
    verify_margin(state, seller, s_account, is_risk_increasing(s_old, s_new))


def trade_position(state: State, address: Address, market_id: int, market: Market, delta: int) -> tuple[int, int, int]:
    """`settle` and `move_position` in one write; return old lots, new lots and what it owed.

    The caller moves the owed collateral and keeps the open-market set (`open_markets`).
    """
    position = state.position(address, market_id)
    old = position.lots
    new = old + delta
    state.set_position(address, market_id, Position(new, market.funding_index, market.loss_index))  # type: ignore[arg-type]
    return old, new, owed_atoms(position, market)


def open_markets(markets: tuple[int, ...], market_id: int, old: int, new: int) -> tuple[int, ...]:
    """The sorted open-market set after a position in `market_id` goes from `old` to `new` lots."""
    if (old == 0) == (new == 0):
        return markets
    held = set(markets)
    if new == 0:
        held.discard(market_id)
    else:
        held.add(market_id)
    return tuple(sorted(held))


def fill_order(state: State, account: Address, order_id: Hash32, nonce: int, size: int, lots: int) -> Account:
    """Record the fill; return the account record, which the trade reads next anyway."""
    status = state.order_status(account, order_id)
    # Verify the order is not cancelled, individually or by the account's nonce floor
    if status.cancelled:
        raise OrderCancelled("order was cancelled")
    record = state.account(account)
    if nonce < record.order_nonce_floor:
        raise OrderCancelled("order was cancelled")
    # Verify the cumulative fill stays within the order's size
    if status.filled + lots > size:
        raise Overfill(f"fill of {lots} lots exceeds the order's remaining {size - status.filled}")
    state.set_order_status(account, order_id, OrderStatus(status.filled + lots, False))  # type: ignore[arg-type]
    return record


# --- liquidation --------------------------------------------------------------------------


def process_liquidation(state: State, tx: Liquidate, orders: BatchOrders, env: Env) -> None:
    # Verify the account is a user account
    if tx.account in SYSTEM_ACCOUNTS:
        raise HealthyAccount("system accounts are never liquidated")
    market = state.market(tx.market)
    verify_fresh_oracle(market, env.now)
    # Verify the price is within the band around the oracle price
    if tx.price <= 0 or not within_band(tx.price, market.oracle_price, market.params.price_band_ppm):
        raise PriceOutsideBand(f"{market.params.symbol}: liquidation price outside the band")
    account = state.account(tx.account)
    held = holdings(state, tx.account, account)
    # Verify the account is below maintenance margin at the oracle prices
    if account_value(account.collateral, held) >= maintenance_requirement(held):
        raise HealthyAccount("account is at or above maintenance margin")
    position = state.position(tx.account, tx.market)
    # Verify the size is positive and does not exceed the position
    if tx.lots <= 0 or tx.lots > abs(position.lots):
        raise InvalidAmount("liquidation size must be within the position")

    settle(state, tx.account, tx.market, market)
    settle(state, INSURANCE_FUND, tx.market, market)
    delta = -tx.lots if position.lots > 0 else tx.lots  # toward zero for the account
    a_old, a_new = move_position(state, tx.account, tx.market, delta)
    f_old, f_new = move_position(state, INSURANCE_FUND, tx.market, -delta)
    cash = delta * tx.price * market.params.atoms_per_lot_tick  # the account buys (+) or sells (-)
    penalty = fee(tx.lots, tx.price, market, market.params.liquidation_penalty_ppm)
    add_collateral(state, tx.account, -cash - penalty)
    add_collateral(state, INSURANCE_FUND, cash + penalty)
    oi = market.open_interest + open_interest_delta(a_old, a_new) + open_interest_delta(f_old, f_new)
    loss_index = market.loss_index
    if not state.account(tx.account).markets:
        loss_index += cover_deficit(state, tx.account, oi, abs(f_new))
    state.set_market(
        tx.market,
        Market(
            market.params, market.oracle_price, market.oracle_time, market.funding_index, loss_index,
            market.premium_sum, market.premium_lots, market.last_funding_time, oi,  # type: ignore[arg-type]
        ),
    )


def cover_deficit(state: State, address: Address, open_interest: int, fund_lots: int) -> int:
    """Bring a fully liquidated account's negative collateral to zero; return the loss-index rise.

    The insurance fund pays the whole deficit. The part beyond what the fund had is socialised
    over every other open lot of the market (long and short), rounded up per lot, and flows back
    to the fund as positions settle. With no other open lots nothing is socialised.
    """
    account = state.account(address)
    if account.collateral >= 0:
        return 0
    deficit = -account.collateral
    state.set_account(address, _with_collateral(account, 0))
    fund = state.account(INSURANCE_FUND)
    shortfall = deficit - max(fund.collateral, 0)
    state.set_account(INSURANCE_FUND, _with_collateral(fund, fund.collateral - deficit))
    other_lots = 2 * open_interest - fund_lots
    if shortfall <= 0 or other_lots <= 0:
        return 0
    return ceil_div(shortfall * INDEX_SCALE, other_lots)


_HANDLERS: dict[type, Callable[[State, Any, BatchOrders, Env], None]] = {
    Deposit: process_deposit,
    ForcedWithdraw: process_forced_withdraw,
    Trade: process_trade,
    Cancel: process_cancel,
    CancelAll: process_cancel_all,
    OraclePrice: process_oracle_price,
    FundingTick: process_funding_tick,
    Liquidate: process_liquidation,
    Withdraw: process_withdraw,
    ApplyGovernance: process_apply_governance,
}
