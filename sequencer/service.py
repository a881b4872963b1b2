"""The trading service the routes call: intake checks, limits, the core, and the read models
rendered for the wire. Routes stay thin; every state-changing call ends in `Core.execute` and
is answered only once its journal record is durable.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable
from typing import Any

from contracts_spec import eip712, merkle
from contracts_spec.codec import encode_withdrawal_leaf
from contracts_spec.crypto import keccak
from contracts_spec.errors import BadSignature
from contracts_spec.types import Address, Cancel, Genesis, Hash32, SignedOrder, WithdrawalLeaf
from sequencer import governance_view, intake
from sequencer.core import (
    LIFE_NAMES,
    Core,
    FillInfo,
    Kind,
    OrderInfo,
    RollbackInfo,
    WithdrawalInfo,
    encode_place,
    encode_replace,
)
from sequencer.engine import Fill, Reject, Stp
from sequencer.errors import ApiError, malformed, not_found, rate_limited, rejected, too_large
from sequencer.intake import (
    CHECKED_LEN,
    SIGNER_REFUSED_LEN,
    Verifier,
    check_signer,
    error_entry,
    error_of,
    signed_order_of,
)
from sequencer.journal import JournalFailed
from sequencer.settings import Settings


class Bucket:
    """A token bucket: `rate` per second up to `burst`."""

    __slots__ = ("rate", "burst", "tokens", "stamp")

    def __init__(self, rate: float, burst: int) -> None:
        self.rate, self.burst, self.tokens, self.stamp = rate, burst, float(burst), time.monotonic()

    def take(self, n: int = 1) -> bool:
        now = time.monotonic()
        self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens < n:
            return False
        self.tokens -= n
        return True


class Limits:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.accounts: dict[Address, Bucket] = {}
        self.connections: dict[Any, Bucket] = {}

    def connection(self, key: Any, n: int = 1) -> None:
        bucket = self.connections.get(key)
        if bucket is None:
            if len(self.connections) > 100_000:
                self.connections.clear()
            bucket = self.connections[key] = Bucket(self.settings.connection_rate, self.settings.connection_burst)
        if not bucket.take(n):
            raise rate_limited("too many requests on this connection")

    def account(self, account: Address, n: int = 1) -> None:
        bucket = self.accounts.get(account)
        if bucket is None:
            bucket = self.accounts[account] = Bucket(self.settings.account_rate, self.settings.account_burst)
        if not bucket.take(n):
            raise rate_limited("too many requests for this account")


def hex0x(b: bytes) -> str:
    return "0x" + b.hex()


# orders of a batch request executed between two turns of the event loop
_YIELD_EVERY = 128


class Service:
    def __init__(self, core: Core, settings: Settings, verifier: Verifier | None = None) -> None:
        self.core = core
        self.settings = settings
        self.genesis: Genesis = core.genesis
        self.preset = core.preset
        self.verifier = verifier or Verifier(settings.verify_workers)
        self.limits = Limits(settings)
        self.metrics: Any = None  # set by the app (metrics.Metrics)
        self.ready = True

    # --- orders ----------------------------------------------------------------------------------

    def _precheck(self, signed: SignedOrder) -> None:
        order = signed.order
        core = self.core
        # Verify the order is not already expired and the account has room for another
        if order.expiry and order.expiry < core.now:
            raise rejected(Reject.EXPIRED, f"order expired at {order.expiry}, now {core.now}")
        acct = core.engine.risk.accounts.get(order.account)
        if acct is not None and len(acct.orders) >= self.settings.max_open_orders:
            raise rejected("too_many_open_orders", f"at most {self.settings.max_open_orders} resting orders")

    def _execute_place(self, signed: SignedOrder, order_id: Hash32, stp: int
                       ) -> tuple[int, dict[str, Any], ApiError | None]:
        outcome = self.core.execute(Kind.PLACE, encode_place(signed, order_id, stp, False),
                                    (signed, order_id, stp, False))
        if outcome.reject is not None:
            self._count_reject(str(outcome.reject).lower())
            err = rejected(outcome.reject)
            return outcome.seq, {**error_entry(err), "orderId": hex0x(order_id)}, err
        return outcome.seq, self._placed(outcome.extra, outcome.outputs), None

    def _placed(self, info: OrderInfo, outputs: Iterable[Any]) -> dict[str, Any]:
        fills = [{"price": o.price, "lots": o.lots, "maker": hex0x(o.maker)}
                 for o in outputs if type(o) is Fill and o.taker == info.id]
        return {"status": "ok", "orderId": hex0x(info.id), "state": self.core.order_status(info),
                "filled": info.filled, "remaining": self.core.remaining(info), "fills": fills}

    def _count_reject(self, code: str) -> None:
        if self.metrics is not None:
            self.metrics.rejects.labels(code).inc()

    async def _settle(self, seq: int) -> None:
        try:
            await self.core.durable(seq)
        except JournalFailed as exc:
            raise ApiError("unavailable", f"journal failed: {exc}", 503) from exc

    async def place(self, raw: Any, stp: int, conn: Any) -> dict[str, Any]:
        self.limits.connection(conn)
        core = self.core
        try:
            signed = intake.parse_order(raw, core.symbols, core.markets)
        except ApiError as exc:
            self._count_reject(exc.code)
            raise
        self.limits.account(signed.order.account)
        order_id = intake.order_digest(self.preset, signed)
        recovered = await self.verifier.recover(order_id, signed.signature)
        try:
            check_signer(recovered, signed.order.account, "order")
            self._precheck(signed)
        except ApiError as exc:
            self._count_reject(exc.code)
            raise
        seq, result, err = self._execute_place(signed, order_id, stp)
        if err is not None:
            raise err
        await self._settle(seq)
        return result

    async def place_many(self, raws: Any, stp: int, conn: Any) -> list[dict[str, Any]]:
        """Each order answered on its own; the response waits for the last record to be durable."""
        if raws.__class__ is not list:
            raise malformed("orders must be a list")
        if len(raws) > self.settings.max_batch_orders:
            raise too_large(f"at most {self.settings.max_batch_orders} orders per request")
        self.limits.connection(conn)
        core = self.core
        # parse, digest and signer of every order, on the worker process when there is one
        parts = self.verifier.check_orders(self.preset, core.symbols, core.markets, raws)
        results: list[dict[str, Any]] = []
        last = 0
        i = 0
        for part in parts:
            for item in await part:
                i += 1
                if i % _YIELD_EVERY == 0:
                    await asyncio.sleep(0)  # let other requests in: a big batch never holds the loop for long
                if len(item) != CHECKED_LEN:
                    exc = error_of(item)
                    self._count_reject(exc.code)
                    results.append(error_entry(exc) if len(item) != SIGNER_REFUSED_LEN
                                   else {**error_entry(exc), "orderId": hex0x(item[3])})
                    continue
                signed, order_id = signed_order_of(item), item[-1]
                try:
                    self.limits.account(signed.order.account)
                    self._precheck(signed)
                except ApiError as exc:
                    self._count_reject(exc.code)
                    results.append({**error_entry(exc), "orderId": hex0x(order_id)})
                    continue
                seq, result, _ = self._execute_place(signed, order_id, stp)
                last = seq
                results.append(result)
        if last:
            await self._settle(last)
        return results

    async def cancel(self, raw: Any, conn: Any) -> dict[str, Any]:
        self.limits.connection(conn)
        tx = intake.parse_cancel(raw)
        self.limits.account(tx.account)
        self._verify(tx.account, lambda: eip712.recover_cancel_signer(self.preset, tx), "cancel")
        seq, result = self._execute_cancel(tx)
        await self._settle(seq)
        if isinstance(result, ApiError):
            raise result
        return result

    async def cancel_many(self, raws: Any, conn: Any) -> list[dict[str, Any]]:
        """Each cancel answered on its own, as `cancel` answers it or as an error entry; the
        signatures recovered on the workers, as the batch endpoint's; the response waits once, for
        the last record to be durable (a market maker pulling its quotes does not wait for a
        journal commit per order)."""
        if raws.__class__ is not list:
            raise malformed("cancels must be a list")
        if len(raws) > self.settings.max_batch_orders:
            raise too_large(f"at most {self.settings.max_batch_orders} cancels per request")
        self.limits.connection(conn)
        parsed: list[Cancel | ApiError] = []
        for raw in raws:
            try:
                parsed.append(intake.parse_cancel(raw))
            except ApiError as exc:
                parsed.append(exc)
        txs = [tx for tx in parsed if isinstance(tx, Cancel)]
        signers = iter(await self.verifier.recover_many(
            [(eip712.cancel_digest(self.preset, tx.account, tx.order_id), tx.signature) for tx in txs]))
        results: list[dict[str, Any]] = []
        last = 0
        for i, tx in enumerate(parsed, 1):
            if i % _YIELD_EVERY == 0:
                await asyncio.sleep(0)  # let other requests in
            if isinstance(tx, ApiError):
                results.append(error_entry(tx))
                continue
            signer = next(signers)
            try:
                self.limits.account(tx.account)
                check_signer(signer, tx.account, "cancel")
            except ApiError as exc:
                results.append(error_entry(exc))
                continue
            last, result = self._execute_cancel(tx)
            results.append(error_entry(result) if isinstance(result, ApiError) else result)
        if last:
            await self._settle(last)
        return results

    def _execute_cancel(self, tx: Cancel) -> tuple[int, dict[str, Any] | ApiError]:
        """(the journal record to wait for, the answer or the refusal)."""
        outcome = self.core.execute(Kind.CANCEL, _tx_body(tx), (tx,))
        if outcome.reject is not None:
            self._count_reject(str(outcome.reject).lower())
            return outcome.seq, rejected(outcome.reject, "no resting order with this id for this account")
        return outcome.seq, {"status": "ok", "orderId": hex0x(tx.order_id)}

    async def cancel_all(self, raw: Any, conn: Any) -> dict[str, Any]:
        self.limits.connection(conn)
        tx = intake.parse_cancel_all(raw)
        self.limits.account(tx.account)
        self._verify(tx.account, lambda: eip712.recover_cancel_all_signer(self.preset, tx), "cancelAll")
        outcome = self.core.execute(Kind.CANCEL_ALL, _tx_body(tx), (tx,))
        await self._settle(outcome.seq)
        if outcome.reject is not None:
            self._count_reject(str(outcome.reject).lower())
            raise rejected(outcome.reject, "the nonce floor must rise above the account's current one")
        return {"status": "ok", "cancelled": outcome.extra, "nonceFloor": tx.nonce_floor}

    async def replace(self, raw: Any, stp: int, conn: Any) -> dict[str, Any]:
        self.limits.connection(conn)
        if raw.__class__ is not dict or set(raw) - {"cancel", "order"}:
            raise malformed("replace takes {cancel: signed Cancel, order: signed order}")
        tx = intake.parse_cancel(raw.get("cancel"))
        signed = intake.parse_order(raw.get("order"), self.core.symbols, self.core.markets)
        if signed.order.account != tx.account:
            raise ApiError("wrong_account", "the cancel and the new order must be of one account", 403)
        self.limits.account(tx.account)
        self._verify(tx.account, lambda: eip712.recover_cancel_signer(self.preset, tx), "cancel")
        order_id = intake.order_digest(self.preset, signed)
        check_signer(intake.recover_or_none(order_id, signed.signature), tx.account, "order")
        self._precheck(signed)
        outcome = self.core.execute(Kind.REPLACE, encode_replace(tx, signed, order_id, stp),
                                    (tx, signed, order_id, stp))
        await self._settle(outcome.seq)
        if outcome.reject is not None:
            self._count_reject(str(outcome.reject).lower())
            raise rejected(outcome.reject)
        return {**self._placed(outcome.extra, outcome.outputs), "replaced": hex0x(tx.order_id)}

    async def withdraw(self, raw: Any, conn: Any) -> dict[str, Any]:
        self.limits.connection(conn)
        tx = intake.parse_withdraw(raw)
        self.limits.account(tx.account)
        self._verify(tx.account, lambda: eip712.recover_withdraw_signer(self.preset, tx), "withdraw")
        outcome = self.core.execute(Kind.WITHDRAW, _tx_body(tx), (tx,))
        await self._settle(outcome.seq)
        if outcome.reject is not None:
            self._count_reject(str(outcome.reject).lower())
            raise rejected(outcome.reject)
        return {"status": "ok", "account": hex0x(tx.account), "amount": tx.amount, "nonce": tx.nonce,
                "withdrawal": outcome.first_out}

    def _verify(self, account: Address, recover: Any, what: str) -> None:
        try:
            signer = recover()
        except BadSignature:
            signer = None
        check_signer(signer, account, what)

    # --- private reads ------------------------------------------------------------------------------

    def authenticate(self, account: Address, timestamp: Any, signature: Any) -> None:
        """A private read carries the spec's Subscribe signature over a recent timestamp."""
        if timestamp is None or signature is None:
            raise ApiError("unauthenticated", "private data needs X-Rampart-Timestamp and X-Rampart-Signature "
                           "(an EIP-712 Subscribe signature by the account)", 401)
        ts = intake.parse_uint(timestamp, "timestamp")
        sig = intake.parse_signature(signature)
        # Verify the timestamp is recent, by the sequencer's clock (GET /v1/time)
        if abs(ts - self.core.now) > self.settings.auth_window:
            raise ApiError("stale_auth", f"timestamp {ts} is more than {self.settings.auth_window}s "
                           f"from the sequencer's clock {self.core.now}", 401)
        try:
            signer = eip712.recover_subscribe_signer(self.preset, account, ts, sig)
        except BadSignature:
            signer = None
        check_signer(signer, account, "subscription")

    def order_view(self, info: OrderInfo) -> dict[str, Any]:
        o = info.signed.order
        return {"orderId": hex0x(info.id), "account": hex0x(o.account), "market": o.market,
                "symbol": self.core.markets[o.market].symbol, "side": "buy" if o.is_buy else "sell",
                "price": o.price, "lots": o.lots, "filled": info.filled, "remaining": self.core.remaining(info),
                "tif": intake.TimeInForce(o.tif).name, "reduceOnly": o.reduce_only, "expiry": o.expiry,
                "nonce": o.nonce, "clientId": o.client_id, "status": self.core.order_status(info),
                "busted": info.busted, "time": info.time}

    def orders(self, account: Address, status: str | None, limit: int) -> list[dict[str, Any]]:
        ids = self.core.account_orders.get(account, [])
        out = []
        for oid in reversed(ids):
            view = self.order_view(self.core.orders[oid])
            if status is None or view["status"] == status:
                out.append(view)
                if len(out) >= limit:
                    break
        return out

    def order(self, account: Address, order_id: Hash32) -> dict[str, Any]:
        info = self.core.orders.get(order_id)
        if info is None or info.signed.order.account != account:
            raise not_found("no such order for this account")
        return self.order_view(info)

    def fill_view(self, f: FillInfo, account: Address | None = None) -> dict[str, Any]:
        view: dict[str, Any] = {
            "id": f.out, "market": f.market, "symbol": self.core.markets[f.market].symbol, "price": f.price,
            "lots": f.lots, "takerSide": "buy" if f.taker_buys else "sell", "time": f.time,
            "life": LIFE_NAMES[self.core.life(f.out)], "batch": self._batch_index(f.out),
        }
        if account is not None:
            maker = account == f.maker_account
            view.update({"orderId": hex0x(f.maker if maker else f.taker), "liquidity": "maker" if maker else "taker",
                         "side": ("sell" if f.taker_buys else "buy") if maker else ("buy" if f.taker_buys else "sell"),
                         "fee": f.maker_fee if maker else f.taker_fee})
        return view

    def _batch_index(self, out: int) -> int | None:
        b = self.core.batch_of(out)
        return None if b is None else b.index

    def fills(self, account: Address, limit: int) -> list[dict[str, Any]]:
        positions = self.core.account_fills.get(account, [])
        return [self.fill_view(self.core.fills[i], account) for i in reversed(positions[-limit:])]

    def positions(self, account: Address) -> list[dict[str, Any]]:
        summary = self.core.margin(account)
        out = []
        for mid, (lots, funding_index, loss_index) in summary["positions"].items():
            m = self.core.engine.market_record(mid)
            out.append({"market": mid, "symbol": m.params.symbol, "lots": lots, "side": "long" if lots > 0 else "short",
                        "oraclePrice": m.oracle_price,
                        "notional": lots * m.oracle_price * m.params.atoms_per_lot_tick,
                        "unsettledFunding": summary["owed"][mid], "fundingIndex": funding_index,
                        "lossIndex": loss_index})
        return out

    def margin(self, account: Address) -> dict[str, Any]:
        s = self.core.margin(account)
        return {"account": hex0x(account), "collateral": s["collateral"], "value": s["value"],
                "initialRequirement": s["initial"], "maintenanceRequirement": s["maintenance"],
                "free": s["value"] - s["initial"], "openOrders": s["orders"], "nonceFloor": s["nonce_floor"],
                "withdrawNonce": self.core.withdraw_nonce.get(account, 0),
                "liquidatable": s["value"] < s["maintenance"] and bool(s["positions"])}

    def funding_payments(self, account: Address, limit: int) -> list[dict[str, Any]]:
        rows = self.core.account_funding.get(account, [])[-limit:]
        return [{"time": t, "market": m, "symbol": self.core.markets[m].symbol, "lots": lots, "payment": amount}
                for t, m, lots, amount in reversed(rows)]

    def deposits(self, account: Address) -> list[dict[str, Any]]:
        return [{"queueIndex": i, "amount": amount, "time": t} for i, a, amount, t in self.core.deposits if a == account]

    def withdrawals(self, account: Address) -> list[dict[str, Any]]:
        return [self.withdrawal_view(self.core.withdrawals[n]) for n in self.core.account_withdrawals.get(account, [])]

    def withdrawal_view(self, w: WithdrawalInfo) -> dict[str, Any]:
        life = self.core.life(w.out)
        view: dict[str, Any] = {
            "id": w.out, "account": hex0x(w.account), "amount": w.amount, "nonce": w.nonce,
            "forcedIndex": w.queue_index, "accepted": w.paid, "time": w.time, "life": LIFE_NAMES[life],
            "batch": w.batch, "leafIndex": w.leaf_index, "claim": None,
        }
        if w.paid and w.leaf_index is not None and w.batch is not None and LIFE_NAMES[life] == "final":
            view["claim"] = self.claim(w)
        return view

    def claim(self, w: WithdrawalInfo) -> dict[str, Any] | None:
        """What the base layer's `withdraw` needs: the batch, the leaf and its Merkle proof."""
        batch = self.core.batches[w.batch] if w.batch is not None and w.batch < len(self.core.batches) else None
        leaves = self.withdrawal_leaves
        if batch is None or batch.l1_batch_id is None or w.leaf_index is None:
            return None
        count = batch.withdrawal_count
        proof = merkle.withdrawal_proof(leaves[:count], w.leaf_index)
        return {"batchId": batch.l1_batch_id, "leafIndex": w.leaf_index, "account": hex0x(w.account),
                "amount": w.amount, "proof": [hex0x(h) for h in proof], "withdrawalRoot": hex0x(batch.header.withdrawal_root),
                "withdrawalCount": count}

    @property
    def withdrawal_leaves(self) -> list[bytes]:
        leaves = getattr(self, "_leaves", None)
        if leaves is None or getattr(self, "_leaves_rollbacks", 0) != len(self.core.rollbacks):
            leaves = []  # a rollback may have busted a withdrawal: leaf indices moved
            self._leaves: list[bytes] = leaves
            self._leaves_rollbacks = len(self.core.rollbacks)
        core = self.core
        known = sorted((w.leaf_index, w) for w in core.withdrawals.values() if w.leaf_index is not None)
        while len(leaves) < len(known):
            idx, w = known[len(leaves)]
            leaves.append(keccak(encode_withdrawal_leaf(WithdrawalLeaf(idx, w.account, w.amount))))  # type: ignore[arg-type]
        return leaves

    # --- public reads ------------------------------------------------------------------------------------

    def market_id(self, key: str) -> int:
        return intake.parse_market(key, self.core.symbols, self.core.markets)

    def market_view(self, mid: int) -> dict[str, Any]:
        core = self.core
        m = core.engine.market_record(mid)
        p = m.params
        history = core.funding[mid]
        d = p.price_band_ppm * m.oracle_price // 1_000_000
        return {
            "market": mid, "symbol": p.symbol, "lotSize": p.lot_size, "tickSize": p.tick_size,
            "atomsPerLotTick": p.atoms_per_lot_tick, "oraclePrice": m.oracle_price, "oracleTime": m.oracle_time,
            "band": [m.oracle_price - d, m.oracle_price + d] if m.oracle_price else None,
            "fundingIndex": m.funding_index, "lossIndex": m.loss_index,
            "fundingRatePpm": core.funding_rate(mid) if m.oracle_price else 0,
            "lastFundingRatePpm": history[-1][1] if history else 0,
            "nextFundingTime": m.last_funding_time + p.funding_interval, "openInterest": m.open_interest,
            "initialMarginPpm": p.initial_margin_ppm, "maintenanceMarginPpm": p.maintenance_margin_ppm,
            "takerFeePpm": p.taker_fee_ppm, "makerFeePpm": p.maker_fee_ppm, "priceBandPpm": p.price_band_ppm,
            "maxPositionLots": p.max_position_lots, "oracleStaleness": p.oracle_staleness,
            "fundingInterval": p.funding_interval, "maxOpenInterestLots": p.max_open_interest_lots,
            "liquidationPenaltyPpm": p.liquidation_penalty_ppm, "fundingRateCapPpm": p.funding_rate_cap_ppm,
            "maxOracleMovePpm": p.max_oracle_move_ppm,
        }

    def markets(self) -> list[dict[str, Any]]:
        return [self.market_view(mid) for mid in sorted(self.core.markets)]

    def book(self, mid: int, depth: int, feed_seq: int) -> dict[str, Any]:
        bids, asks = self.core.levels(mid, depth)
        return {"market": mid, "symbol": self.core.markets[mid].symbol, "seq": feed_seq,
                "bids": [[p, q] for p, q in bids], "asks": [[p, q] for p, q in asks], "time": self.core.now}

    def trades(self, mid: int, limit: int) -> list[dict[str, Any]]:
        trades = list(self.core.trades[mid])[-limit:]
        return [self.fill_view(f) for f in reversed(trades)]

    def funding_history(self, mid: int, limit: int) -> list[dict[str, Any]]:
        return [{"time": t, "ratePpm": r, "fundingIndex": i} for t, r, i in reversed(self.core.funding[mid][-limit:])]

    def batch_view(self, b: Any) -> dict[str, Any]:
        h = b.header
        return {"index": b.index, "status": b.status, "l1BatchId": b.l1_batch_id, "txCount": h.tx_count,
                "prevRoot": hex0x(h.prev_root), "postRoot": hex0x(h.post_root), "txRoot": hex0x(h.tx_root),
                "ordersRoot": hex0x(h.orders_root), "withdrawalRoot": hex0x(h.withdrawal_root),
                "dataHash": hex0x(h.data_hash), "depositsConsumed": h.deposits_consumed,
                "forcedConsumed": h.forced_consumed, "time": h.time, "postedTime": b.posted_time,
                "outputs": [b.first_out, b.end_out], "dropped": sorted(b.dropped)}

    def rollback_view(self, r: RollbackInfo) -> dict[str, Any]:
        c = r.corrections
        fills = [f for f in (self.core.fill_at(n) for n in c.busted) if f is not None]
        lost = [b for b in self.core.lost_batches if b.l1_batch_id in c.lost]
        return {"seq": r.seq, "time": r.time, "fromIndex": c.index, "validRoot": hex0x(c.valid_root),
                "lost": [self.batch_view(b) for b in lost], "busted": list(c.busted),
                "bustedFills": [self.fill_view(f) for f in fills],
                "bustedWithdrawals": [n for n in c.busted if n in self.core.withdrawals],
                "engineCorrections": c.engine_records,
                "bridgeCorrections": len(c.deposits) + len(c.forced)}

    def rollbacks(self) -> list[dict[str, Any]]:
        return [self.rollback_view(r) for r in reversed(self.core.rollbacks)]

    def batches(self, after: int, limit: int) -> list[dict[str, Any]]:
        return [self.batch_view(b) for b in self.core.batches[max(0, after):][:limit]]

    def batch(self, index: int) -> dict[str, Any]:
        if not 0 <= index < len(self.core.batches):
            raise not_found(f"no batch {index}")
        return self.batch_view(self.core.batches[index])

    def governance(self) -> dict[str, Any]:
        """The governance queue, each change's application, and the config and markets in force."""
        return governance_view.compute_governance(self.core)


def _tx_body(tx: Any) -> bytes:
    from contracts_spec.codec import encode_tx

    return encode_tx(tx)


def parse_stp(value: Any) -> int:
    if value is None:
        return int(Stp.EXPIRE_MAKER)
    if value.__class__ is str and value in intake.STP_NAMES:
        return intake.STP_NAMES[value]
    raise malformed("stp must be expire_maker, expire_taker or expire_both")
