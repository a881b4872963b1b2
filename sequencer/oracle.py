"""Oracle intake: signed reports from the registered oracle signers, gathered per (market, time)
until a quorum signed; then the spec's OraclePrice (the lower median of those reports) goes to
the engine through the journal like any other input.
"""

from __future__ import annotations

from typing import Any

from contracts_spec import eip712
from contracts_spec.errors import BadSignature
from contracts_spec.stf import median_price
from contracts_spec.types import Address, OraclePrice, OracleReport
from sequencer.core import Kind, encode_oracle
from sequencer.errors import ApiError, malformed, too_large
from sequencer.intake import parse_report


class OracleIntake:
    def __init__(self, service: Any) -> None:
        self.service = service
        self.core = service.core
        self.pending: dict[tuple[int, int], dict[Address, OracleReport]] = {}

    @property
    def signers(self) -> frozenset[Address]:
        return self.core.oracle_signers  # the genesis config, or as the last ApplyGovernance left it

    @property
    def quorum(self) -> int:
        return int(self.core.oracle_quorum)

    def _check(self, report: OracleReport) -> Address:
        try:
            signer = eip712.recover_oracle_report_signer(self.core.preset, report)
        except BadSignature as exc:
            raise ApiError("bad_signature", f"oracle report: {exc}", 401) from exc
        # Verify a registered signer, a time not in the future and newer than the market's price
        if signer not in self.signers:
            raise ApiError("unknown_signer", "not a registered oracle signer", 403)
        if report.time > self.core.now:
            raise ApiError("future_report", f"report time {report.time} is after the clock {self.core.now}", 422)
        if report.time <= self.core.engine.market_record(report.market).oracle_time:
            raise ApiError("stale_report", "the market already has a price at or after this time", 409)
        return signer

    async def submit(self, raw: Any) -> list[dict[str, Any]]:
        if raw.__class__ is not list:
            raise malformed("reports must be a list")
        if len(raw) > 256:
            raise too_large("at most 256 reports per request")
        results: list[dict[str, Any]] = []
        last = 0
        for item in raw:
            try:
                report = parse_report(item, self.core.markets)
                signer = self._check(report)
            except ApiError as exc:
                results.append({"status": "error", "code": exc.code, "message": exc.message})
                continue
            seq = self._gather(report, signer)
            results.append({"status": "ok", "applied": bool(seq)})
            last = max(last, seq)
        if last:
            await self.service._settle(last)
        return results

    def _gather(self, report: OracleReport, signer: Address) -> int:
        key = (report.market, report.time)
        got = self.pending.setdefault(key, {})
        got[signer] = report
        for gone in [s for s in got if s not in self.signers]:  # signers governance removed
            del got[gone]
        if len(got) < self.quorum:
            return 0
        reports = tuple(got[s] for s in sorted(got))
        tx = OraclePrice(report.market, report.time, reports)
        price = median_price([r.price for r in reports])
        outcome = self.core.execute(Kind.ORACLE, encode_oracle(tx, price), (tx, price))
        for k in [k for k in self.pending if k[0] == report.market and k[1] <= report.time]:
            del self.pending[k]
        if outcome.reject is not None:
            self.service._count_reject("oracle_" + str(outcome.reject).lower())
        return outcome.seq
