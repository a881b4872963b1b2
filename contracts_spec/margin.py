"""Cross-margin arithmetic: notional, unsettled funding and loss, account value and requirements.

Pure integer functions over state records; the STF, the sequencer's risk engine and the
escape hatch all use these. Rounding always favours the protocol: what an account owes rounds
up, what it is owed rounds down.
"""

from __future__ import annotations

from collections.abc import Iterable

from contracts_spec.types import INDEX_SCALE, PPM, Market, Position


def ceil_div(a: int, b: int) -> int:
    """Ceiling of a / b for b > 0, exact for any sign of a."""
    return -((-a) // b)


def notional(lots: int, price: int, market: Market) -> int:
    """Signed notional in atoms of `lots` at `price` ticks: exact, no rounding."""
    return lots * price * market.params.atoms_per_lot_tick


def owed_atoms(position: Position, market: Market) -> int:
    """What a position owes (positive) or is owed (negative) in unsettled funding and loss.

    Funding: longs pay lots x (index now - index then); shorts receive. Loss: every open lot,
    long or short, pays |lots| x (loss index now - then). Both indices are atoms per lot x
    INDEX_SCALE; the sum is converted to atoms rounding a debt up and a credit down.
    """
    lots = position.lots
    raw = lots * (market.funding_index - position.funding_index) + abs(lots) * (
        market.loss_index - position.loss_index
    )
    # A debt rounded up and a credit rounded down are both the ceiling: ceil_div, inlined
    # (six calls per trade, bench/spec.py)
    return -((-raw) // INDEX_SCALE)


def position_value(position: Position, market: Market) -> int:
    """Mark value of a position at the oracle price, net of what it owes unsettled."""
    lots = position.lots
    # owed_atoms, inlined (four calls per trade, bench/spec.py)
    raw = lots * (market.funding_index - position.funding_index) + abs(lots) * (
        market.loss_index - position.loss_index
    )
    return lots * market.oracle_price * market.params.atoms_per_lot_tick + ((-raw) // INDEX_SCALE)


def requirement(lots: int, market: Market, fraction_ppm: int) -> int:
    """Margin requirement of |lots| at the oracle price, rounded up."""
    return -((-abs(lots) * market.oracle_price * market.params.atoms_per_lot_tick * fraction_ppm) // PPM)  # ceil_div


def account_value(collateral: int, holdings: Iterable[tuple[Position, Market]]) -> int:
    """Account value = collateral + sum over open positions of (mark value - unsettled owed)."""
    value = collateral
    for position, market in holdings:
        value += position_value(position, market)
    return value


def initial_requirement(holdings: Iterable[tuple[Position, Market]]) -> int:
    return sum(requirement(p.lots, m, m.params.initial_margin_ppm) for p, m in holdings)


def maintenance_requirement(holdings: Iterable[tuple[Position, Market]]) -> int:
    return sum(requirement(p.lots, m, m.params.maintenance_margin_ppm) for p, m in holdings)


def fee(lots: int, price: int, market: Market, fee_ppm: int) -> int:
    """A fee on the absolute notional, rounded up (the account owes it)."""
    return -((-abs(lots) * price * market.params.atoms_per_lot_tick * fee_ppm) // PPM)  # ceil_div


def is_risk_increasing(old_lots: int, new_lots: int) -> bool:
    """A change that grows the position's size or flips its side."""
    return abs(new_lots) > abs(old_lots) or (old_lots != 0 and new_lots != 0 and (old_lots > 0) != (new_lots > 0))


def within_band(price: int, oracle_price: int, band_ppm: int) -> bool:
    """|price - oracle| <= band x oracle, compared exactly in integers."""
    return abs(price - oracle_price) * PPM <= band_ppm * oracle_price
