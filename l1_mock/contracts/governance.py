"""The governance contract: the genesis governance key announces a change (market parameters,
oracle signers and quorum); it is queued with its effective time, visible to everyone (event
and reads), and applied by a batch's ApplyGovernance once effective (contracts_spec.governance).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from contracts_spec import codec, governance
from contracts_spec.errors import DecodeError
from contracts_spec.types import GovernanceChange, GovernanceEntry, Seconds, SetMarketParams
from l1_mock import errors
from l1_mock.chain import Ctx, method
from l1_mock.contracts.args import Args, HexBytes
from l1_mock.envelope import hex0x, unhex
from l1_mock.models import GovernanceRow


class AnnounceArgs(Args):
    change: HexBytes  # codec.encode_governance_change


@method("announce_governance", AnnounceArgs)
def announce(ctx: Ctx, args: AnnounceArgs) -> dict[str, Any]:
    """Queue a change; it is effective governance_delay later and must then be applied within
    the forced-inclusion delay (posting refuses a batch that leaves it out longer)."""
    # Verify the sender is the genesis governance key
    if not governance.is_governor(unhex(ctx.sender), ctx.genesis):
        raise errors.Forbidden("only the genesis governance key announces changes", "not_governance")
    try:
        change = codec.decode_governance_change(args.change)
    except DecodeError as exc:
        raise errors.Malformed(f"bad governance change: {exc}") from exc
    governance.validate_change(change)
    index = _next_index(ctx.s)
    effective = governance.compute_effective_time(ctx.time, ctx.genesis.preset)
    row = GovernanceRow(index=index, change=args.change, announced_time=ctx.time, effective_time=effective,
                        block_number=ctx.block)
    ctx.s.add(row)
    view = governance_view(row)
    ctx.emit("GovernanceAnnounced", **view)
    return view


def _next_index(s: Session) -> int:
    last = s.scalar(select(func.max(GovernanceRow.index)))
    return 0 if last is None else last + 1


def entry_of(row: GovernanceRow) -> GovernanceEntry:
    return GovernanceEntry(codec.decode_governance_change(row.change), Seconds(row.effective_time))


def change_to_json(change: GovernanceChange) -> dict[str, Any]:
    if isinstance(change, SetMarketParams):
        p = change.params
        return {"kind": "market_params", "params": {k: getattr(p, k) for k in type(p).__dataclass_fields__}}
    return {"kind": "oracle_signers", "signers": [hex0x(a) for a in change.signers], "quorum": change.quorum}


def governance_view(row: GovernanceRow) -> dict[str, Any]:
    return {"index": row.index, "change": hex0x(row.change),
            "decoded": change_to_json(codec.decode_governance_change(row.change)),
            "announced_time": row.announced_time, "effective_time": row.effective_time, "block": row.block_number}


def effective_time(s: Session, index: int) -> int | None:
    row = s.get(GovernanceRow, index)
    return None if row is None else row.effective_time


def view_entry(s: Session, index: int) -> dict[str, Any]:
    row = s.get(GovernanceRow, index)
    if row is None:
        raise errors.NotFound(f"no governance change {index}")
    return governance_view(row)


def list_entries(s: Session, after: int, limit: int, applied: int, now: int) -> dict[str, Any]:
    """Changes with index >= after; `applied` is the valid head's governance position."""
    q = select(GovernanceRow).where(GovernanceRow.index >= after).order_by(GovernanceRow.index).limit(limit)
    rows = []
    for r in s.scalars(q):
        v = governance_view(r)
        v["status"] = "applied" if r.index < applied else ("effective" if now >= r.effective_time else "announced")
        rows.append(v)
    return {"changes": rows, "applied": applied, "time": now}
