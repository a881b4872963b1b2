"""The sequencer's in-process core: order books, pre-trade risk, matching, liquidations, funding.

No I/O, no clock: the service wraps `Engine` and feeds it verified orders, oracle prices and
time; each call answers with a named `Reject` (or None, or a count), and what it emitted is
collected, in order, by `Engine.take()`: `Fill(maker id, taker id, lots, price)` per trade and
the spec's Deposit, Cancel, CancelAll, OraclePrice, FundingTick and Liquidate.

    engine = Engine.from_genesis(genesis)
    engine.deposit(account, amount)                       # Deposit(queue index)
    engine.set_oracle(market, price, time, reports)       # OraclePrice, then any Liquidate
    engine.place(signed, order_id, Stp.EXPIRE_MAKER, now, market=False)   # Fills
    engine.cancel(account, order_id, signed_cancel)       # Cancel (unsigned: emits nothing)
    engine.cancel_client(account, client_id, signed_cancel)
    engine.cancel_all(account, market=None, signed_cancel_all=None)
    engine.replace(account, old_id, signed, order_id, stp, now, signed_cancel_of_old)
    engine.tick(now); engine.funding_tick(market, now)    # expiries; FundingTick when due
    engine.liquidations(now); engine.unwind_fund(now); engine.resync(now)
    engine.take()                                         # everything emitted, in order

Modules: book.py (the book structure), matching.py (the matching loop, spec-exact fills),
risk.py (live risk state, pre-trade check, safe boxes), liquidation.py (the index over boxes),
engine.py (the API above).
"""

from sequencer.engine.book import Book, Resting, Stp
from sequencer.engine.engine import Engine
from sequencer.engine.risk import Fill, Reject

__all__ = ["Book", "Engine", "Fill", "Reject", "Resting", "Stp"]
