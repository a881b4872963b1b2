"""What the operator CLI shows, as plain JSON-ready dicts: status, batches, games and one game
with its moves and clocks, bonds. Reads the verifier's database, and the base layer where a
live figure (time, balance, clocks) is asked for.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from contracts_spec import dispute
from contracts_spec.dispute import Seat
from contracts_spec.types import Market, MarketParams
from l1_mock.client import L1Client
from l1_mock.wire import game_from_json
from verifier.db import AlertRow, BatchRow, CheckpointRow, GameRow, MoveRow, NodeRow


def local_status(s: Session) -> dict[str, Any]:
    """What the database alone tells: the head followed and verified, the verdicts, what waits,
    our games, checkpoints, the latest alerts (also when the base layer does not answer)."""
    node = s.get(NodeRow, 1)
    verdicts = {v: n for v, n in s.execute(select(BatchRow.verdict, func.count()).group_by(BatchRow.verdict))}
    unverified, oldest = s.execute(select(func.count(), func.min(BatchRow.posted_time)).where(
        BatchRow.verdict.is_(None), BatchRow.l1_status == "pending")).one()
    games = {st: n for st, n in s.execute(select(GameRow.status, func.count()).where(GameRow.mine.is_(True))
                                          .group_by(GameRow.status))}
    watched = s.scalar(select(func.count()).select_from(GameRow).where(GameRow.mine.is_(False),
                                                                         GameRow.status == "open"))
    # open games, ours or watched, whose side to move ran out of clock: someone should resolve them
    now = node.l1_time if node else 0
    overdue = sum(1 for g in s.scalars(select(GameRow).where(GameRow.status == "open"))
                  if dispute.get_deadline(game_from_json(json.loads(g.game_json))) < now)
    return {
        "followed": {"event_cursor": node.cursor if node else 0, "block": node.l1_head_block if node else 0},
        "verified": {"head_batch_id": node.head_batch_id if node else None,
                     "head_index": node.head_index if node else -1,
                     "head_root": node.head_root if node else None,
                     "batches": {str(k): v for k, v in verdicts.items() if k is not None},
                     "unverified": unverified, "oldest_unverified_posted": oldest},
        "games": {"open": games.get("open", 0), "won": games.get("challenger_won", 0),
                  "lost": games.get("sequencer_won", 0), "refunded": games.get("refunded", 0),
                  "watched_open": watched or 0, "overdue": overdue},
        "checkpoints": s.scalar(select(func.count()).select_from(CheckpointRow)) or 0,
        "alerts": [alert_view(a) for a in s.scalars(select(AlertRow).order_by(AlertRow.id.desc()).limit(10))],
    }


def status(s: Session, client: L1Client, address: str | None, l1_url: str) -> dict[str, Any]:
    local = local_status(s)
    rollup, info = client.rollup(), client.info()
    out: dict[str, Any] = {
        "address": address,
        "l1": {"url": l1_url, "preset": info["preset"], "head_block": info["head_block"], "time": info["time"],
               "rollup_head_index": rollup["head_index"], "rollup_head_batch_id": rollup["head_batch_id"]},
        "followed": local["followed"],
        "verified": local["verified"],
        "lag": lag(local["verified"], rollup, info),
        "games": local["games"], "checkpoints": local["checkpoints"], "alerts": local["alerts"],
    }
    if address is not None:
        out["bond"] = bonds(client, address)
    return out


def lag(verified: dict[str, Any], rollup: dict[str, Any], info: dict[str, Any]) -> dict[str, int]:
    """How far the verified head (`local_status`'s) is behind the base layer's rollup head: in
    batches, in batches not judged yet, and in chain seconds since the oldest of those was posted."""
    oldest = verified["oldest_unverified_posted"]
    return {"batches": max(rollup["head_index"] - verified["head_index"], 0), "unverified": verified["unverified"],
            "seconds": int(info["time"]) - oldest if oldest is not None else 0}


def totals(s: Session) -> dict[str, Any]:
    """Running totals for monitoring: trades verified valid and the seconds spent judging them,
    and every alert raised, by kind."""
    trades, seconds = s.execute(select(func.coalesce(func.sum(BatchRow.trades), 0),
                                       func.coalesce(func.sum(BatchRow.verify_seconds), 0.0))
                                .where(BatchRow.verdict == "valid")).one()
    alerts = {k: n for k, n in s.execute(select(AlertRow.kind, func.count()).group_by(AlertRow.kind))}
    return {"trades_verified": int(trades), "verify_seconds": float(seconds or 0), "alerts": alerts}


def alert_view(a: AlertRow) -> dict[str, Any]:
    return {"id": a.id, "time": a.l1_time, "kind": a.kind, "game_id": a.game_id, "batch_id": a.batch_id,
            "message": a.message}


def batch_view(b: BatchRow, games: list[int] | None = None) -> dict[str, Any]:
    return {
        "batch_id": b.batch_id, "index": b.index, "parent_id": b.parent_id, "l1_status": b.l1_status,
        "verdict": b.verdict, "tx_count": b.tx_count, "trades": b.trades, "time": b.time,
        "posted_time": b.posted_time, "window_ends": b.window_ends, "claimed_root": b.post_root,
        "computed_root": b.computed_root, "mismatch": json.loads(b.mismatch_json) if b.mismatch_json else None,
        "rejected_index": b.rejected_index, "rejected_error": b.rejected_error, "verify_seconds": b.verify_seconds,
        "games": games or [],
    }


def batches(s: Session, limit: int = 50, verdict: str | None = None) -> list[dict[str, Any]]:
    q = select(BatchRow)
    if verdict is not None:
        q = q.where(BatchRow.verdict.is_(None) if verdict == "unverified" else BatchRow.verdict == verdict)
    rows = list(s.scalars(q.order_by(BatchRow.batch_id.desc()).limit(limit)))
    by_batch: dict[int, list[int]] = {}
    for g in s.scalars(select(GameRow).where(GameRow.batch_id.in_([r.batch_id for r in rows]))):
        by_batch.setdefault(g.batch_id, []).append(g.game_id)
    return [batch_view(r, by_batch.get(r.batch_id)) for r in reversed(rows)]


def game_summary(g: GameRow) -> dict[str, Any]:
    game = game_from_json(json.loads(g.game_json))
    return {
        "game_id": g.game_id, "batch_id": g.batch_id, "challenger": g.challenger, "mine": g.mine,
        "status": g.status, "phase": dispute.get_phase(game).name.lower(), "lo": game.lo, "hi": game.hi,
        "tx_count": game.tx_count, "rounds": dispute.compute_depth(game.tx_count), "moves": game.moves,
        "turn": game.turn.name.lower(), "clocks": {"sequencer": game.clocks[Seat.SEQUENCER],
                                                   "challenger": game.clocks[Seat.CHALLENGER]},
        "payout": json.loads(g.payout_json) if g.payout_json else None,
    }


def games(s: Session, mine_only: bool = False, status: str | None = None) -> list[dict[str, Any]]:
    q = select(GameRow)
    if mine_only:
        q = q.where(GameRow.mine.is_(True))
    if status is not None:
        q = q.where(GameRow.status == status)
    return [game_summary(g) for g in s.scalars(q.order_by(GameRow.game_id))]


def game_detail(s: Session, game_id: int, client: L1Client | None) -> dict[str, Any] | None:
    """One game: its interval, every move, both clocks now, the outcome. Live from the base layer
    when it answers (`client`), else as last followed."""
    row = s.get(GameRow, game_id)
    live = client.game(game_id) if client is not None else None
    if row is None and live is None:
        return None
    game = live.game if live is not None else game_from_json(json.loads(row.game_json))  # type: ignore[union-attr]
    now = client.now() if client is not None else None
    out = {
        "game_id": game_id, "batch_id": game.batch, "challenger": "0x" + game.challenger.hex(),
        "mine": bool(row.mine) if row is not None else False,
        "status": live.status if live is not None else row.status,  # type: ignore[union-attr]
        "phase": dispute.get_phase(game).name.lower(), "tx_count": game.tx_count,
        "rounds": dispute.compute_depth(game.tx_count),
        "interval": {"lo": game.lo, "hi": game.hi, "lo_root": "0x" + game.lo_root.hex(),
                     "hi_root": "0x" + game.hi_root.hex(),
                     "mid_root": "0x" + game.mid_root.hex() if game.mid_root else None},
        "turn": game.turn.name.lower(), "turn_started": game.turn_started,
        "deadline": dispute.get_deadline(game) if game.status == dispute.Status.OPEN else None,
        "clocks": {seat.name.lower(): (dispute.get_remaining(game, seat, now) if now is not None
                                       else game.clocks[seat]) for seat in Seat},
        "now": now,
        "bonds": {"challenger": game.challenger_bond, "sequencer": game.sequencer_bond},
        "payout": (live.payout if live is not None
                   else json.loads(row.payout_json) if row is not None and row.payout_json else None),
        "moves": [{"event_id": m.event_id, "block": m.block, "seat": m.seat, "kind": m.kind,
                   **json.loads(m.data_json)}
                  for m in s.scalars(select(MoveRow).where(MoveRow.game_id == game_id).order_by(MoveRow.event_id))],
    }
    return out


WEI_PER_ETH = 10**18


def eth(wei: int | str) -> str:
    """A base-layer amount for people, exact: 1900000000000000000 -> "1.9 ETH" (--json keeps wei)."""
    wei = int(wei)
    whole, frac = divmod(abs(wei), WEI_PER_ETH)
    digits = f"{frac:018d}".rstrip("0")
    return f"{'-' if wei < 0 else ''}{whole:,}{'.' + digits if digits else ''} ETH"


def bonds(client: L1Client, address: str) -> dict[str, Any]:
    b = client.bonds(address)
    return {"balance": int(client.account(address)["native"]), "locked": b["locked"],
            "locked_total": b["locked_total"], "claimable": b["claimable"]}


def show_record(record: Any) -> Any:
    """A state record as JSON: bytes as hex, a market without its (long, fixed) parameters."""
    if record is None:
        return None
    if isinstance(record, Market):
        d = {f.name: getattr(record, f.name) for f in dataclasses.fields(record) if f.name != "params"}
        d["symbol"] = record.params.symbol
        return _plain(d)
    if isinstance(record, MarketParams):
        return record.symbol
    if dataclasses.is_dataclass(record):
        return _plain({f.name: getattr(record, f.name) for f in dataclasses.fields(record)})
    return _plain(record)


def _plain(value: Any) -> Any:
    if isinstance(value, bytes):
        return "0x" + value.hex()
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return show_record(value)
    if hasattr(value, "name") and hasattr(value, "value"):  # enums
        return value.name.lower()
    return value
