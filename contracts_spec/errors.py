"""The spec's one exception tree.

`InvalidTransaction` subclasses are rejections: a transaction the rules refuse. `WitnessError`
subclasses are not rejections: they say the evidence given was not enough (a one-step proof
with a leaf left out, or a bad proof) and decide nothing. `DecodeError` is hostile bytes.
"""

from __future__ import annotations


class SpecError(Exception):
    """Base of every error the spec raises on purpose."""


# --- evidence, never a verdict -------------------------------------------------------------


class WitnessError(SpecError):
    """The evidence was insufficient or malformed: never a rejection of the transaction."""


class WitnessIncomplete(WitnessError):
    """A read touched a leaf the witness does not cover."""


class BadProof(WitnessError):
    """A Merkle proof does not match the root it claims."""


# --- encoding ------------------------------------------------------------------------------


class DecodeError(SpecError):
    """Bytes that are not a canonical encoding."""


# --- batch-level ---------------------------------------------------------------------------


class InvalidBatch(SpecError):
    """A batch header or batch data the rules refuse."""


class BadGenesis(SpecError):
    """A genesis file the rules refuse."""


# --- transaction rejections ---------------------------------------------------------------


class InvalidTransaction(SpecError):
    """A transaction the rules reject; a batch holding one is invalid."""


class BadSignature(InvalidTransaction):
    pass


class WrongSigner(InvalidTransaction):
    pass


class UnknownMarket(InvalidTransaction):
    pass


class UnknownOrder(InvalidTransaction):
    pass


class OrderExpired(InvalidTransaction):
    pass


class OrderCancelled(InvalidTransaction):
    pass


class Overfill(InvalidTransaction):
    pass


class PriceOutsideLimit(InvalidTransaction):
    pass


class SelfTrade(InvalidTransaction):
    pass


class ReduceOnlyViolated(InvalidTransaction):
    pass


class PostOnlyViolated(InvalidTransaction):
    pass


class SideMismatch(InvalidTransaction):
    pass


class InvalidAmount(InvalidTransaction):
    pass


class InsufficientMargin(InvalidTransaction):
    pass


class HealthyAccount(InvalidTransaction):
    pass


class PriceOutsideBand(InvalidTransaction):
    pass


class StaleOracle(InvalidTransaction):
    pass


class BadNonce(InvalidTransaction):
    pass


class BadQueueIndex(InvalidTransaction):
    pass


class OracleQuorum(InvalidTransaction):
    pass


class OracleNotMonotonic(InvalidTransaction):
    pass


class OracleMoveTooLarge(InvalidTransaction):
    pass


class FundingTooEarly(InvalidTransaction):
    pass


class PositionLimit(InvalidTransaction):
    pass


class GovernanceNotEffective(InvalidTransaction):
    """A governance change applied before its effective time."""


class BadGovernanceChange(InvalidTransaction):
    """A governance change the rules refuse at announcement (malformed parameters or signers)."""
