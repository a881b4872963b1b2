"""The sequencer's in-process core: order books, pre-trade risk, liquidations and funding.

No I/O, no clock: the service wraps `Engine` and feeds it verified orders, oracle prices and
time; the engine answers with a named reject or an ordered list of spec transactions.
"""

from sequencer.engine.book import Book, Resting, Stp
from sequencer.engine.engine import Engine
from sequencer.engine.risk import Fill, Reject

__all__ = ["Book", "Engine", "Fill", "Reject", "Resting", "Stp"]
