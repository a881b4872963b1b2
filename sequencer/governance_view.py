"""Governance as the sequencer publishes it: the base layer's whole queue as the follower last read
it (announced changes, not yet effective, are shown so traders see what is coming), each change's
application from the journaled core (its ApplyGovernance output, batch and batch status), and the
oracle config and market parameters the applied changes left.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

from contracts_spec import codec
from contracts_spec.types import (
    Address,
    GovernanceChange,
    GovernanceEntry,
    MarketParams,
    Seconds,
    SetOracleSigners,
)
from sequencer.core import LIFE_NAMES, Core

_PAGE = 100


@dataclass(frozen=True, slots=True)
class Announced:
    """One entry of the base layer's governance queue (never changes once queued)."""

    index: int
    entry: GovernanceEntry
    announced_time: int
    block: int | None = None


def read_queue(client: Any, after: int) -> list[Announced]:
    """The queue entries from index `after` on, in order (blocking: run it in a worker thread)."""
    out: list[Announced] = []
    while True:
        page = client.governance_changes(after=after + len(out), limit=_PAGE)["changes"]
        for e in page:
            change = codec.decode_governance_change(bytes.fromhex(e["change"].removeprefix("0x")))
            out.append(Announced(int(e["index"]), GovernanceEntry(change, Seconds(int(e["effective_time"]))),
                                 int(e["announced_time"]), e.get("block")))
        if len(page) < _PAGE:
            return out


def effective_changes(queue: dict[int, Announced], start: int, now: int) -> list[tuple[int, GovernanceEntry]]:
    """The queued changes from `start` on that are effective at `now`, in order (the first one not
    yet effective stops the list: the queue is applied in order)."""
    out = []
    index = start
    while index in queue and queue[index].entry.effective_time <= now:
        out.append((index, queue[index].entry))
        index += 1
    return out


# --- rendering ---------------------------------------------------------------------------------------


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(w.capitalize() for w in rest)


def params_json(p: MarketParams) -> dict[str, Any]:
    """Every parameter of a market, named as /v1/markets names them."""
    return {_camel(f.name): getattr(p, f.name) for f in fields(p)}


def _hex(a: Address) -> str:
    return "0x" + a.hex()


def _would_apply(change: GovernanceChange, markets: dict[int, MarketParams]) -> bool:
    """contracts_spec.governance.apply_change's verdict on a change the queue already validated."""
    if isinstance(change, SetOracleSigners):
        return True
    old = markets.get(change.params.market_id)
    if old is None:
        return change.params.market_id == len(markets)  # a new market takes the next id
    return old.atoms_per_lot_tick == change.params.atoms_per_lot_tick


def describe_change(change: GovernanceChange, markets: dict[int, MarketParams], signers: tuple[Address, ...],
                    quorum: int) -> dict[str, Any]:
    """The change in readable form, against the config and markets before it."""
    if isinstance(change, SetOracleSigners):
        return {"kind": "oracle_signers", "signers": [_hex(a) for a in change.signers], "quorum": change.quorum,
                "added": [_hex(a) for a in change.signers if a not in signers],
                "removed": [_hex(a) for a in signers if a not in change.signers], "previousQuorum": quorum}
    p = change.params
    old = markets.get(p.market_id)
    view: dict[str, Any] = {"kind": "market_params", "market": p.market_id, "symbol": p.symbol,
                            "newMarket": old is None, "params": params_json(p)}
    if old is not None:
        before = params_json(old)
        view["changed"] = {k: {"from": before[k], "to": v} for k, v in view["params"].items() if before[k] != v}
    return view


def compute_governance(core: Core) -> dict[str, Any]:
    """Every change the sequencer knows of, oldest first, with the config and markets now in force.

    Applied changes come from the journal (core.governance_entries / governance_outs), later ones
    from the follower's last read of the base layer's queue; each is described against what the
    changes before it left (for those not applied yet: as if the earlier ones apply)."""
    genesis = core.genesis
    delay = genesis.preset.governance_delay
    markets = {m.market_id: m for m in genesis.markets}
    signers, quorum = tuple(genesis.oracle_signers), genesis.oracle_quorum
    applied_count = len(core.governance_entries)
    queue: dict[int, Announced] = core.governance_queue
    rows = []
    index = 0
    while index < applied_count or index in queue:
        announced = queue.get(index)
        entry = core.governance_entries[index] if index < applied_count else announced.entry  # type: ignore[union-attr]
        row: dict[str, Any] = {
            "index": index, **describe_change(entry.change, markets, signers, quorum),
            "announcedTime": announced.announced_time if announced else entry.effective_time - delay,
            "effectiveTime": entry.effective_time, "block": announced.block if announced else None,
        }
        if index < applied_count:
            out, t, took = core.governance_outs[index]
            b = core.batch_of(out)
            row["status"] = "applied" if took else "rejected"  # rejected: consumed, nothing changed
            row["application"] = {"output": out, "time": t, "life": LIFE_NAMES[core.life(out)],
                                  "batch": b.index if b else None, "batchStatus": b.status if b else None,
                                  "l1BatchId": b.l1_batch_id if b else None}
        else:
            took = _would_apply(entry.change, markets)
            row["status"] = "pending" if entry.effective_time <= core.now else "announced"
            row["application"] = None
        if took:
            change = entry.change
            if isinstance(change, SetOracleSigners):
                signers, quorum = tuple(change.signers), change.quorum
            else:
                markets[change.params.market_id] = change.params
        rows.append(row)
        index += 1
    return {
        "time": core.now, "governor": _hex(genesis.governance), "governanceDelay": delay,
        "nextToApply": applied_count, "changes": rows,
        "oracle": {"signers": sorted(_hex(a) for a in core.oracle_signers), "quorum": core.oracle_quorum},
        "markets": [params_json(core.markets[m]) for m in sorted(core.markets)],
    }


def change_view(core: Core, index: int) -> dict[str, Any] | None:
    """One change as compute_governance shows it (None if unknown)."""
    rows = compute_governance(core)["changes"]
    return rows[index] if 0 <= index < len(rows) else None
