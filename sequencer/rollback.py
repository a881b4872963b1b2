"""What a rollback changes outside the batcher's spec state, as one journal record (Kind.ROLLBACK):
the outputs the spec now rejects (busted for good), the bridge entries the base layer holds where
the sequencer's copy differed, and the engine records that must follow the spec's again.

The engine matched the outputs after the last valid root on its own live state. When the batcher
re-applies them with the spec and drops what the spec now rejects, the engine still holds the
effect of what was dropped; `compute_corrections` compares every account, position and market
of the engine with the spec's records, and `apply_corrections` writes the spec's values back.
Both run at the same point of the input stream, live and on replay, so the record holds values,
not deltas.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from contracts_spec import codec
from contracts_spec.state import State
from contracts_spec.types import Account, Address, Market, Position, Root
from sequencer.engine import Engine


@dataclass(frozen=True, slots=True)
class Corrections:
    """The body of a ROLLBACK record."""

    index: int  # the rollup batch index re-applied from (the first lost one, or the first rebuilt)
    valid_root: Root  # the root the spec state went back to
    lost: tuple[int, ...]  # base-layer ids of the batches lost (empty: a rebuild without a loss)
    busted: tuple[int, ...]  # output numbers the spec now rejects
    deposits: tuple[tuple[int, Address, int], ...] = ()  # (queue index, account, amount) as on the base layer
    forced: tuple[tuple[int, Address, int], ...] = ()
    accounts: tuple[tuple[Address, Account], ...] = ()
    positions: tuple[tuple[Address, int, Position], ...] = ()
    markets: tuple[tuple[int, Market], ...] = ()

    @property
    def engine_records(self) -> int:
        return len(self.accounts) + len(self.positions) + len(self.markets)


def encode_corrections(c: Corrections) -> bytes:
    """JSON: a rare record, read by people as much as by replay."""
    return json.dumps({
        "index": c.index, "valid_root": c.valid_root.hex(), "lost": list(c.lost), "busted": list(c.busted),
        "deposits": [[i, a.hex(), amount] for i, a, amount in c.deposits],
        "forced": [[i, a.hex(), amount] for i, a, amount in c.forced],
        "accounts": [[a.hex(), codec.encode_record(r).hex()] for a, r in c.accounts],
        "positions": [[a.hex(), m, codec.encode_record(r).hex()] for a, m, r in c.positions],
        "markets": [[m, codec.encode_record(r).hex()] for m, r in c.markets],
    }, separators=(",", ":")).encode()


def decode_corrections(body: bytes) -> Corrections:
    d: dict[str, Any] = json.loads(body)
    return Corrections(
        index=int(d["index"]), valid_root=bytes.fromhex(d["valid_root"]), lost=tuple(d["lost"]),
        busted=tuple(d["busted"]),
        deposits=tuple((int(i), bytes.fromhex(a), int(amount)) for i, a, amount in d["deposits"]),
        forced=tuple((int(i), bytes.fromhex(a), int(amount)) for i, a, amount in d["forced"]),
        accounts=tuple((bytes.fromhex(a), codec.decode_account(bytes.fromhex(r))) for a, r in d["accounts"]),
        positions=tuple((bytes.fromhex(a), int(m), codec.decode_position(bytes.fromhex(r)))
                        for a, m, r in d["positions"]),
        markets=tuple((int(m), codec.decode_market(bytes.fromhex(r))) for m, r in d["markets"]),
    )


def compute_corrections(engine: Engine, state: State, withdraw_nonce: dict[Address, int]
                        ) -> tuple[tuple[tuple[Address, Account], ...], tuple[tuple[Address, int, Position], ...],
                                   tuple[tuple[int, Market], ...]]:
    """Every account, held position and market where the engine differs from the spec's `state`
    (both after the same outputs): the spec's record of each. Empty when they agree."""
    risk = engine.risk
    markets = tuple((mid, state.market(mid)) for mid in sorted(risk.markets)
                    if engine.market_record(mid) != state.market(mid))
    accounts: list[tuple[Address, Account]] = []
    positions: list[tuple[Address, int, Position]] = []
    for address in sorted(set(risk.accounts) | set(state.accounts())):
        spec = state.account(address)
        acct = risk.accounts.get(address)
        collateral = acct.collateral if acct is not None else 0
        floor = acct.nonce_floor if acct is not None else 0
        if acct is not None and acct.system:
            floor = spec.order_nonce_floor  # the engine keeps no floor for system accounts
        if (collateral, floor, withdraw_nonce.get(address, 0)) != (spec.collateral, spec.order_nonce_floor,
                                                                  spec.withdraw_nonce):
            accounts.append((address, spec))
        held = {m for m, p in acct.positions.items() if p.lots} if acct is not None else set()
        for mid in sorted(held | set(spec.markets)):
            want = state.position(address, mid)
            pos = acct.positions.get(mid) if acct is not None else None
            have = (pos.lots, pos.funding_index, pos.loss_index) if pos is not None else (0, 0, 0)
            if have != (want.lots, want.funding_index, want.loss_index):
                positions.append((address, mid, want))
    return tuple(accounts), tuple(positions), markets


def apply_corrections(engine: Engine, c: Corrections, withdraw_nonce: dict[Address, int], now: int) -> None:
    """Write the spec's records into the engine's live risk state, then resync the engine at `now`
    (the ROLLBACK record's time): a corrected price, index or position can leave an account the
    corrections never named outside its safe box, so every box is redrawn, open interest is
    recounted, and whoever is now below maintenance is liquidated (outputs of this record)."""
    risk = engine.risk
    for mid, spec in c.markets:
        mkt = risk.markets[mid]
        if mkt.params != spec.params:  # a governance change the spec applied differently
            mkt.set_params(spec.params)
        if (mkt.oracle, mkt.oracle_time) != (spec.oracle_price, spec.oracle_time):
            mkt.set_oracle(spec.oracle_price, spec.oracle_time)
        if (mkt.funding_index, mkt.loss_index) != (spec.funding_index, spec.loss_index):
            mkt.funding_index, mkt.loss_index = spec.funding_index, spec.loss_index
            mkt.epoch += 1  # every holder owes differently: settle them again
            for holder in mkt.holders:
                if holder.lots:
                    risk.touch(holder.acct)
        mkt.premium_sum, mkt.premium_lots = spec.premium_sum, spec.premium_lots
        mkt.last_funding_time = spec.last_funding_time
    for address, account in c.accounts:
        acct = risk.account(address)
        acct.collateral = account.collateral
        if not acct.system:
            acct.nonce_floor = account.order_nonce_floor
        if account.withdraw_nonce or address in withdraw_nonce:
            withdraw_nonce[address] = account.withdraw_nonce
        risk.touch(acct)
    for address, mid, position in c.positions:
        acct = risk.account(address)
        mkt = risk.markets[mid]
        pos = risk.position(acct, mkt)
        pos.lots, pos.funding_index, pos.loss_index = position.lots, position.funding_index, position.loss_index
        # equal epochs mean "nothing owed" to the engine's hot path: claim it only when it is so
        pos.epoch = mkt.epoch if (pos.funding_index, pos.loss_index) == (mkt.funding_index, mkt.loss_index) else -1
        risk.touch(acct)
    engine.resync(now)
