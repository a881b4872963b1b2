"""`rampart-verifier replay`: re-execute one batch locally and show where it diverges.

The trace (verifier.trace) gives our root after every transaction. What the batch's author
claimed is known at index 0 (prev root), n (post root) and at every midpoint revealed in a game
on the batch; the first diverging transaction lies after the last index where both agree and
at or before the first where they differ. A transaction the rules reject diverges by itself.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from sqlalchemy import select

from contracts_spec import dispute
from contracts_spec.types import Trade
from verifier.db import BatchRow, GameRow, MoveRow
from verifier.node import Node, NotChallengeable, UnknownBatch
from verifier.replay import touched_leaves
from verifier.trace import Trace
from verifier.views import show_record


def claimed_roots(node: Node, batch_id: int, tx_count: int, prev_root: str, post_root: str) -> dict[int, str]:
    """Trace index -> the root the batch's author claims there: the header's two and every reveal."""
    claims = {0: prev_root, tx_count: post_root}
    with node.sessions() as s:
        game_ids = list(s.scalars(select(GameRow.game_id).where(GameRow.batch_id == batch_id)))
        for m in s.scalars(select(MoveRow).where(MoveRow.game_id.in_(game_ids), MoveRow.kind == "reveal")):
            d = json.loads(m.data_json)
            claims[dispute.trace_index((d["lo"] + d["hi"]) // 2, tx_count)] = d["root"]
    return claims


def diagnose(node: Node, batch_id: int, tx: int | None = None,
             progress: Callable[[str, int, int], None] | None = None) -> dict[str, Any]:
    with node.sessions() as s:
        row = s.get(BatchRow, batch_id)
        if row is None:
            raise UnknownBatch(f"no batch {batch_id} in this verifier's database (is the node following?)")
        parent = s.get(BatchRow, row.parent_id) if row.parent_id is not None else None
    if parent is not None and parent.verdict != "valid":
        raise NotChallengeable(f"batch {batch_id} builds on batch {parent.batch_id}, which is "
                               f"{parent.verdict or 'not verified yet'}: replay that one")
    pre, header, body, env = node.pre_state(batch_id)
    trace = Trace(pre, header, body, env)
    n = len(body.txs)
    ours: list[str] = []
    for i in range(n + 1):
        ours.append("0x" + trace.root_at(i).hex())
        if progress is not None and (i % 64 == 0 or i == n):
            progress("replay", i, n)
    claims = claimed_roots(node, batch_id, n, row.prev_root, row.post_root)
    agreed = [i for i, r in claims.items() if ours[i] == r]
    differing = sorted(i for i, r in claims.items() if ours[i] != r)
    out: dict[str, Any] = {
        "batch_id": batch_id, "index": row.index, "tx_count": n, "verdict": row.verdict,
        "expected_root": ours[n], "claimed_root": row.post_root,
        "header": json.loads(row.mismatch_json) if row.mismatch_json else {},
        "claims": [{"index": i, "claimed": claims[i], "expected": ours[i], "agree": ours[i] == claims[i]}
                   for i in sorted(claims)],
        "rejected_index": trace.rejected_at,
    }
    lo: int | None
    hi: int | None
    if trace.rejected_at is not None:
        lo, hi = trace.rejected_at, trace.rejected_at + 1
    elif differing:
        hi = differing[0]
        lo = max(i for i in agreed if i < hi)
    else:
        lo = hi = None
    out["diverges"] = None if lo is None else {"from": lo, "to": hi}
    focus = tx if tx is not None else (lo if lo is not None and hi == lo + 1 else None)
    if lo is not None and hi is not None and hi - lo > 1:
        out["candidates"] = [{"index": i, "kind": type(body.txs[i]).__name__} for i in range(lo, min(hi, n))]
    if focus is not None:
        if not 0 <= focus < n:
            raise UnknownBatch(f"batch {batch_id} has no transaction {focus}")
        if trace.rejected_at is not None and focus > trace.rejected_at:
            raise NotChallengeable(f"transaction {trace.rejected_at} is rejected: no state reaches {focus}")
        state = trace.seek(focus)
        leaves, error = touched_leaves(state, focus, body, env)
        txn = body.txs[focus]
        out["transaction"] = {
            "index": focus, "kind": type(txn).__name__, "tx": show_record(txn),
            "orders": [show_record(body.orders[i].order) for i in
                       ((txn.maker, txn.taker) if isinstance(txn, Trade) else ()) if 0 <= i < len(body.orders)],
            "rejected": error,
            "root_before": ours[focus], "expected_root_after": ours[focus + 1] if error is None else None,
            "claimed_root_after": claims.get(focus + 1),
            "leaves": [{"kind": t.kind, "identity": t.identity, "before": show_record(t.before),
                        "expected": show_record(t.after)} for t in leaves],
        }
    return out
