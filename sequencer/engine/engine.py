"""The in-process engine: books + risk + matching + liquidation index + funding, emitting spec
transactions.

Every call appends what it emits to one ordered output (`take()` hands it over): a `Fill` per
trade (order ids where the batch puts indices), and the spec's Deposit, Cancel, CancelAll,
OraclePrice, FundingTick and Liquidate. IOC/FOK remainders, self-trade prevention, stale
quotes, expiries and liquidation cancels are engine policy and emit nothing. No clock, no
randomness, no set iteration: the same calls give the same output, byte for byte.
Hot path, guarded by bench/engine.py: `place` and `cancel`.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from heapq import heappop, heappush
from typing import Any, Final

from contracts_spec.crypto import keccak
from contracts_spec.stf import funding_rate_ppm
from contracts_spec.types import (
    INDEX_SCALE,
    PPM,
    SYSTEM_ACCOUNTS,
    Cancel,
    CancelAll,
    Deposit,
    FundingTick,
    Genesis,
    Liquidate,
    Lots,
    Market,
    MarketParams,
    OraclePrice,
    OracleReport,
    Seconds,
    SignedOrder,
    Ticks,
    TimeInForce,
)
from sequencer.engine import liquidation
from sequencer.engine.book import Book, Resting, Stp
from sequencer.engine.matching import fillable, match
from sequencer.engine.risk import AccountRisk, MarketRisk, Reject, Risk, compute_owed

_GTC: Final = TimeInForce.GTC
_POST_ONLY: Final = TimeInForce.POST_ONLY
# time in force -> (rests, post-only, fill-or-kill)
_TIF: Final = {
    TimeInForce.GTC: (True, False, False),
    TimeInForce.IOC: (False, False, False),
    TimeInForce.FOK: (False, False, True),
    TimeInForce.POST_ONLY: (True, True, False),
}
_EXPIRE_MAKER: Final = Stp.EXPIRE_MAKER
_NEVER: Final = 1 << 63  # an expiry later than any
_new = object.__new__


class Engine:
    """One sequencer's matching engine over every market of a genesis."""

    def __init__(self, markets: Iterable[MarketParams], genesis_time: int = 0) -> None:
        self.risk = Risk(tuple(markets), genesis_time)
        self.books: dict[int, Book] = {}
        for mid, mkt in self.risk.markets.items():
            mkt.book = self.books[mid] = Book(mid)
        # every order id ever accepted -> its acceptance number: an id trades under one order
        self.seen: dict[bytes, int] = {}
        # (expiry, seq, order, its id then) of resting good-til-time orders; `next_expiry` is the first
        self.expiries: list[tuple[int, int, Resting, bytes]] = []
        self.next_expiry = _NEVER
        self.accepted = 0
        self.seq = 0
        self.deposits = 0  # the next bridge deposit-queue index
        self.fund_orders: dict[bytes, Resting] = {}  # engine orders for the insurance fund, by id

    @classmethod
    def from_genesis(cls, genesis: Genesis) -> Engine:
        return cls(genesis.markets, genesis.genesis_time)

    # --- output ------------------------------------------------------------------------------

    @property
    def out(self) -> list[Any]:
        return self.risk.out

    def take(self) -> list[Any]:
        """Everything emitted since the last take, in order."""
        events = self.risk.out
        self.risk.out = []
        return events

    # --- orders (hot path: bench/engine.py) --------------------------------------------------

    def place(
        self,
        signed: SignedOrder,
        order_id: bytes,
        stp: Stp = _EXPIRE_MAKER,
        now: int = 0,
        market: bool = False,
    ) -> Reject | None:
        """Accept, match and maybe rest one signed order; None if accepted, else the reason.

        `order_id` is the EIP-712 digest intake computed; `stp` the request's self-trade
        prevention; `market=True` makes it a market order: it never rests and its limit is
        tightened to the oracle band's edge. The signature was checked at intake, never here.
        """
        order = signed.order
        risk = self.risk
        # Verify the order can be placed at all (a duplicate id is caught on acceptance, below)
        try:
            mkt = risk.markets[order.market]
        except KeyError:
            return Reject.UNKNOWN_MARKET
        lots = order.lots
        price = order.price
        if lots <= 0 or price <= 0:
            return Reject.INVALID_ORDER
        expiry = order.expiry
        if expiry and now > expiry:
            return Reject.EXPIRED
        if now > self.next_expiry:
            self.expire(now)
        try:
            acct = risk.accounts[order.account]
        except KeyError:
            acct = risk.account(order.account)
        if acct.system:  # nobody holds a system account's key: never let its flag skip margin
            return Reject.INVALID_ORDER
        if order.nonce < acct.nonce_floor:
            return Reject.CANCELLED
        # Verify the oracle price can back a trade, and the limit lies within its band
        if now > mkt.fresh_until:
            return Reject.STALE_ORACLE
        is_buy = order.is_buy
        try:
            rests, post_only, fok = _TIF[order.tif]
        except KeyError:
            return Reject.INVALID_ORDER
        if market:
            if post_only:
                return Reject.INVALID_ORDER
            limit = (price if price < mkt.hi else mkt.hi) if is_buy else (price if price > mkt.lo else mkt.lo)
            rests = False
        else:
            if (price > mkt.hi) if is_buy else (price < mkt.lo):
                return Reject.PRICE_BAND
            limit = price
        book = mkt.book
        if post_only and book.would_cross(is_buy, limit):
            return Reject.POST_ONLY_WOULD_CROSS
        try:
            pos = acct.positions[mkt.id]
        except KeyError:
            pos = risk.position(acct, mkt)
        # Verify a reduce-only order faces a position it reduces
        reduce_only = order.reduce_only
        if reduce_only and (pos.lots >= 0 if is_buy else pos.lots <= 0):
            return Reject.REDUCE_ONLY
        client_id = order.client_id
        if client_id and client_id in acct.clients:
            return Reject.DUPLICATE_CLIENT_ID
        # Resting(order_id, is_buy, limit, lots, reduce_only, pos, signed), without the cost
        # of a Python-level __init__ call (bench/engine.py)
        taker = _new(Resting)
        taker.id = order_id
        taker.is_buy = is_buy
        taker.price = limit
        taker.remaining = lots
        taker.reduce_only = reduce_only
        taker.pos = pos
        taker.signed = signed
        # Pre-trade risk: Risk.admit, its common case inlined (the box has room and slack for
        # the order's worst cost, open interest is far from its limit)
        room = pos.room
        slack = acct.slack
        if room >= lots and slack >= (cost := lots * pos.box_cost) and mkt.oi_room >= lots:
            acct.slack = slack - cost
            pos.room = room - lots
            verified = True
        else:
            reason, verified = risk.admit(taker)
            if reason is not None:
                return reason
        if fok and not fillable(risk, book, taker, limit, stp, verified):
            return Reject.FOK_UNFILLABLE
        # Verify the id is new: one lookup that also records it (the slack spent on a
        # duplicate's admission just stays spent: the box's bound only gets safer)
        number = self.accepted
        if self.seen.setdefault(order_id, number) != number:
            return Reject.DUPLICATE_ORDER
        self.accepted = number + 1
        if not post_only:
            if is_buy:
                keys = book.ask_keys
                crosses = keys and keys[0] <= limit
            else:
                keys = book.bid_keys
                crosses = keys and -keys[0] >= limit
            if crosses and not match(risk, book, taker, limit, stp, verified):
                return None  # stopped (self-trade prevention, a limit, margin): the rest is dropped
        if rests and taker.remaining:
            # rest: Book.add and Risk.rest, inlined
            if is_buy:
                key, levels, keys = -limit, book.bids, book.bid_keys
                pos.open_buy += taker.remaining
            else:
                key, levels, keys = limit, book.asks, book.ask_keys
                pos.open_sell += taker.remaining
            level = levels.get(key)
            if level is None:
                level = levels[key] = deque()
                heappush(keys, key)
            level.append(taker)
            acct.orders[order_id] = taker
            if client_id:
                acct.clients[client_id] = taker
            if expiry:
                self._expire_at(expiry, taker)
        return None

    def cancel(self, account: bytes, order_id: bytes, tx: Cancel | None = None) -> Reject | None:
        """Cancel one resting order; a user-signed `tx` is emitted, an engine cancel is not."""
        try:
            acct = self.risk.accounts[account]
        except KeyError:
            return Reject.UNKNOWN_ORDER
        order = acct.orders.get(order_id)  # often gone (filled): no exception for that
        if order is None:
            return Reject.UNKNOWN_ORDER
        if tx is not None and (tx.account != account or tx.order_id != order_id):
            return Reject.WRONG_ACCOUNT
        # Risk.drop and Book.cancel, inlined
        pos = order.pos
        if order.is_buy:
            pos.open_buy -= order.remaining
        else:
            pos.open_sell -= order.remaining
        order.remaining = 0
        del acct.orders[order_id]
        if acct.clients:
            client_id = order.signed.order.client_id
            if client_id:
                acct.clients.pop(client_id, None)
        book = pos.mkt.book
        book.dead += 1
        if book.dead > book.compact_at:
            book.compact()
        if tx is not None:
            self.risk.out.append(tx)
        return None

    def cancel_client(self, account: bytes, client_id: int, tx: Cancel | None = None) -> Reject | None:
        """Cancel by the client's own id."""
        acct = self.risk.accounts.get(account)
        order = acct.clients.get(client_id) if acct is not None and client_id else None
        if order is None:
            return Reject.UNKNOWN_ORDER
        return self.cancel(account, order.id, tx)

    def cancel_all(self, account: bytes, market: int | None = None, tx: CancelAll | None = None) -> int | Reject:
        """Cancel every resting order of the account (in one market, if given); return how many.

        With a signed CancelAll the account's nonce floor rises, every order below it is
        cancelled in every market, and the transaction is emitted.
        """
        acct = self.risk.account(account)
        if tx is not None:
            if tx.account != account or market is not None:
                return Reject.WRONG_ACCOUNT
            # Verify the floor rises, as process_cancel_all does
            if tx.nonce_floor <= acct.nonce_floor:
                return Reject.BAD_NONCE
            acct.nonce_floor = tx.nonce_floor
            doomed = [o for o in acct.orders.values() if o.signed.order.nonce < tx.nonce_floor]
        else:
            doomed = [o for o in acct.orders.values() if market is None or o.pos.mkt.id == market]
        for order in doomed:
            self._remove(order)
        if tx is not None:
            self.risk.out.append(tx)
        return len(doomed)

    def replace(
        self,
        account: bytes,
        old_id: bytes,
        signed: SignedOrder,
        order_id: bytes,
        stp: Stp = _EXPIRE_MAKER,
        now: int = 0,
        tx: Cancel | None = None,
    ) -> Reject | None:
        """Cancel `old_id` and place `signed` in its stead; `tx`, the user's signed cancel of the
        old order, is emitted.

        The new order keeps the old one's place in the queue only when it is on the same
        market, side and price, rests (GTC or post-only) and is no larger than what the old
        one had left; otherwise it is placed afresh at the back. The old order is gone either
        way, even if the new one is refused.
        """
        acct = self.risk.accounts.get(account)
        old = acct.orders.get(old_id) if acct is not None else None
        if acct is None or old is None:
            return Reject.UNKNOWN_ORDER
        new = signed.order
        if new.account != account or (tx is not None and (tx.account != account or tx.order_id != old_id)):
            return Reject.WRONG_ACCOUNT
        if tx is not None:
            self.risk.out.append(tx)
        keeps = (
            new.market == old.pos.mkt.id and new.is_buy == old.is_buy and new.price == old.price
            and 0 < new.lots <= old.remaining and new.tif in (_GTC, _POST_ONLY)
            and order_id not in self.seen and not (new.expiry and now > new.expiry)
            and new.nonce >= acct.nonce_floor
            and not (new.reduce_only and (old.pos.lots >= 0 if new.is_buy else old.pos.lots <= 0))
            and not (new.client_id and new.client_id != old.client_id and new.client_id in acct.clients)
        )
        if not keeps:
            self._remove(old)
            return self.place(signed, order_id, stp, now)
        # Same slot, no larger: its exposure only shrinks (E rises), so no new margin check.
        risk = self.risk
        risk.drop(old)
        old.id = order_id
        old.signed = signed
        old.remaining = new.lots
        old.reduce_only = new.reduce_only
        risk.rest(old)
        self.seen[order_id] = self.accepted
        self.accepted += 1
        if new.expiry:
            self._expire_at(new.expiry, old)
        return None

    def order(self, account: bytes, order_id: bytes) -> Resting | None:
        """A resting order of the account, or None."""
        acct = self.risk.accounts.get(account)
        return acct.orders.get(order_id) if acct is not None else None

    def _expire_at(self, expiry: int, order: Resting) -> None:
        self.seq += 1
        heappush(self.expiries, (expiry, self.seq, order, order.id))
        if expiry < self.next_expiry:
            self.next_expiry = expiry

    def expire(self, now: int) -> None:
        """Drop resting orders whose expiry has passed (now > expiry). Emits nothing."""
        heap = self.expiries
        while heap and heap[0][0] < now:
            _, _, order, order_id = heappop(heap)
            if order.remaining and order.id == order_id:  # not filled, cancelled or replaced since
                self._remove(order)
        self.next_expiry = heap[0][0] if heap else _NEVER

    def _remove(self, order: Resting) -> None:
        self.risk.drop(order)
        order.pos.mkt.book.cancel(order)

    # --- money, prices, funding ---------------------------------------------------------------

    def deposit(self, account: bytes, amount: int, queue_index: int | None = None) -> Reject | None:
        """Credit a bridge deposit (the next in the queue) and emit its Deposit."""
        # Verify what process_deposit verifies: the next index, a positive amount, a user account
        if queue_index is not None and queue_index != self.deposits:
            return Reject.BAD_QUEUE_INDEX
        if amount <= 0 or account in SYSTEM_ACCOUNTS:
            return Reject.INVALID_AMOUNT
        acct = self.risk.account(account)
        acct.collateral += amount
        if acct.slack >= 0:
            acct.slack += amount  # E rises by the deposit everywhere in the box
        elif acct.positions:
            self.risk.touch(acct)
        self.risk.out.append(Deposit(self.deposits))
        self.deposits += 1
        return None

    def set_oracle(
        self, market: int, price: int, time: int, reports: Iterable[OracleReport] = ()
    ) -> Reject | None:
        """A new oracle price (its reports checked at intake): emit it, then liquidate.

        Liquidations run at `time`: their batch's time must not pass any oracle's time plus
        the market's staleness.
        """
        mkt = self.risk.markets.get(market)
        if mkt is None:
            return Reject.UNKNOWN_MARKET
        # Verify what process_oracle_price verifies of the price itself
        if price <= 0:
            return Reject.INVALID_AMOUNT
        if time <= mkt.oracle_time:
            return Reject.ORACLE_NOT_MONOTONIC
        if mkt.max_move and mkt.oracle and abs(price - mkt.oracle) * PPM > mkt.max_move * mkt.oracle:
            return Reject.ORACLE_MOVE_TOO_LARGE
        mkt.set_oracle(price, time)
        self.risk.out.append(OraclePrice(market, Seconds(time), tuple(reports)))
        self._liquidate(liquidation.scan(self.risk, mkt), time)
        return None

    def funding_tick(self, market: int, now: int) -> Reject | None:
        """Emit the market's FundingTick if its interval has passed; the spec sets the rate."""
        mkt = self.risk.markets.get(market)
        if mkt is None:
            return Reject.UNKNOWN_MARKET
        # Verify what process_funding_tick verifies
        if now < mkt.last_funding_time + mkt.interval:
            return Reject.FUNDING_TOO_EARLY
        if not mkt.is_fresh(now):
            return Reject.STALE_ORACLE
        rate = funding_rate_ppm(self.market_record(market))
        delta = rate * mkt.oracle * mkt.k * INDEX_SCALE // PPM
        self.risk.apply_funding(mkt, delta, now)
        self.risk.out.append(FundingTick(market))
        self._liquidate(liquidation.drain(self.risk), now)
        return None

    def tick(self, now: int) -> None:
        """Time passes: expire orders, and tick funding in every market that is due."""
        self.expire(now)
        for mkt in self.risk.markets.values():
            if now >= mkt.last_funding_time + mkt.interval and mkt.is_fresh(now):
                self.funding_tick(mkt.id, now)

    # --- liquidation ------------------------------------------------------------------------

    def liquidations(self, now: int) -> int:
        """Liquidate every account the index knows to be below maintenance; return how many.

        Oracle updates and funding ticks run this themselves; call it after anything else that
        may have queued accounts (a risk-reducing trade may end below maintenance).
        """
        found = liquidation.drain(self.risk)
        found += [acct for acct in liquidation.critical(self.risk) if acct not in found]
        return self._liquidate(found, now)

    def _liquidate(self, accounts: list[AccountRisk], now: int) -> int:
        """Cancel the accounts' orders, then hand their positions to the fund, market by market.

        Each Liquidate is emitted only while the account is still below maintenance (the spec
        refuses a healthy one) and only at a fresh oracle price, at that price. Socialised
        losses may push other accounts under: those are taken in the next round.
        """
        risk = self.risk
        done = 0
        handled: set[int] = set()
        while accounts:
            for acct in accounts:
                if id(acct) in handled:
                    continue
                handled.add(id(acct))
                for order in list(acct.orders.values()):
                    self._remove(order)
                for mid in sorted(acct.positions):
                    pos = acct.positions[mid]
                    if not pos.lots:
                        continue
                    if not risk.is_liquidatable(acct):
                        break
                    mkt = pos.mkt
                    if not mkt.is_fresh(now):
                        continue
                    lots = abs(pos.lots)
                    risk.out.append(Liquidate(acct.address, mid, Lots(lots), Ticks(mkt.oracle)))
                    risk.apply_liquidation(pos, lots, mkt.oracle)
                done += 1
                risk.touch(acct)
            accounts = [a for a in liquidation.drain(risk) if id(a) not in handled]
        return done

    def unwind_fund(self, now: int, stp: Stp = _EXPIRE_MAKER) -> int:
        """Trade the insurance fund's inherited positions back toward zero; return lots filled.

        Each is an engine order for the fund: immediate-or-cancel, reduce-only, limited to the
        band's edge. TODO: these carry no signature, so the batcher cannot post their fills
        yet; the spec needs a sequencer-signed (or unsigned, fund-only) order form first.
        """
        risk = self.risk
        if now > self.next_expiry:
            self.expire(now)
        filled = 0
        for mid in sorted(risk.fund.positions):
            pos = risk.fund.positions[mid]
            mkt = pos.mkt
            if not pos.lots or not mkt.is_fresh(now):
                continue
            is_buy = pos.lots < 0
            self.seq += 1
            order_id = keccak(b"rampart/fund-unwind" + self.seq.to_bytes(8, "big"))
            limit = mkt.hi if is_buy else mkt.lo
            want = abs(pos.lots)
            order = Resting(order_id, is_buy, limit, want, True, pos, None)
            reason, verified = risk.admit(order)  # the fund is a system account: margin never binds it
            if reason is not None:
                continue
            self.fund_orders[order_id] = order
            match(risk, mkt.book, order, limit, stp, verified)
            filled += want - order.remaining
        return filled

    def set_market_params(self, params: MarketParams) -> None:
        """A governance change of an existing market's parameters (same id and lot-tick size);
        call `resync` after it: margins, limits and the band may have moved."""
        self.risk.markets[params.market_id].set_params(params)

    def add_market(self, params: MarketParams, now: int) -> None:
        """A market governance added (the next id): no price yet, funding counted from `now`."""
        mkt = self.risk.markets[params.market_id] = MarketRisk(params, now)
        mkt.book = self.books[params.market_id] = Book(params.market_id)

    def resync(self, now: int) -> int:
        """After the risk records were written from outside (a rollback onto the spec's state):
        recount open interest, redraw every account's box at the current prices, and liquidate
        whoever is now below maintenance. O(accounts): for rare events only.

        A box proves an account's fills only while the oracle prices stay inside it, so any
        outside change of prices, indices, collateral or positions must end with this.
        """
        risk = self.risk
        for mkt in risk.markets.values():
            risk.open_interest(mkt)
        for acct in risk.accounts.values():
            risk.touch(acct)
        found = liquidation.drain(risk)
        found += [acct for acct in liquidation.critical(risk) if acct not in found]
        return self._liquidate(found, now)

    # --- views ------------------------------------------------------------------------------

    def market_record(self, market: int) -> Market:
        """The market as the spec's record (what the STF's state holds for it)."""
        m = self.risk.markets[market]
        return Market(
            m.params, m.oracle, m.oracle_time, m.funding_index, m.loss_index,  # type: ignore[arg-type]
            m.premium_sum, m.premium_lots, m.last_funding_time, self.risk.open_interest(m),  # type: ignore[arg-type]
        )

    def account_summary(self, account: bytes) -> dict[str, Any]:
        """Collateral, positions, value and requirements of one account, from the live state."""
        risk = self.risk
        acct = risk.account(account)
        held = {mid: p for mid, p in sorted(acct.positions.items()) if p.lots}
        return {
            "collateral": acct.collateral,
            "positions": {mid: (p.lots, p.funding_index, p.loss_index) for mid, p in held.items()},
            "owed": {mid: compute_owed(p) for mid, p in held.items()},
            "value": risk.value(acct),
            "initial": risk.requirement(acct, False),
            "maintenance": risk.requirement(acct, True),
            "nonce_floor": acct.nonce_floor,
            "orders": len(acct.orders),
        }
