"""Balances: the native coin (bonds, stake) and the USDC token (the bridge); a dev faucet."""

from __future__ import annotations

from typing import Any, Literal

from l1_mock.chain import Ctx, credit, debit, method
from l1_mock.contracts.args import AddressHex, Args, Uint

FAUCET_CAP = 10**30  # per call: dev money, but bounded so a typo cannot overflow a display


class FaucetArgs(Args):
    to: AddressHex | None = None
    native: Uint = 0
    usdc: Uint = 0


class TransferArgs(Args):
    token: Literal["native", "usdc"]
    to: AddressHex
    amount: Uint


@method("faucet", FaucetArgs, dev_only=True)
def faucet(ctx: Ctx, args: FaucetArgs) -> dict[str, Any]:
    from l1_mock.errors import Malformed

    # Verify the amounts are bounded
    if args.native > FAUCET_CAP or args.usdc > FAUCET_CAP:
        raise Malformed(f"faucet gives at most {FAUCET_CAP} a call")
    to = args.to or ctx.sender
    row = ctx.account(to)
    credit(row, "native", args.native)
    credit(row, "usdc", args.usdc)
    ctx.emit("Faucet", to=to, native=args.native, usdc=args.usdc)
    return {"to": to, "native": row.native, "usdc": row.usdc}


@method("transfer", TransferArgs)
def transfer(ctx: Ctx, args: TransferArgs) -> dict[str, Any]:
    debit(ctx.account(ctx.sender), args.token, args.amount)
    credit(ctx.account(args.to), args.token, args.amount)
    ctx.emit("Transfer", token=args.token, sender=ctx.sender, to=args.to, amount=args.amount)
    return {}
