"""A ROLLBACK record that corrects a market's oracle price must leave the liquidation index true:
an account whose safe box no longer holds the corrected price, though the corrections never named
it, is found and liquidated by the record itself (rollback.apply_corrections resyncs the engine),
not left standing until some later oracle update of that market happens to cross its box edge.
"""

from __future__ import annotations

from dataclasses import replace

from contracts_spec import eip712
from contracts_spec.types import Liquidate, OraclePrice, Order, Seconds, TimeInForce
from sequencer.core import Core, Kind, encode_oracle, encode_place, encode_queue
from sequencer.engine import Stp, liquidation
from sequencer.rollback import Corrections, decode_corrections, encode_corrections
from sequencer.scenario import ORACLE_NAMES, Keys, dev_genesis

T0 = 1_700_000_000
USDC = 1_000_000
BTC = 0
PRICE = 500_000


def oracle(core: Core, keys: Keys, price: int, t: int) -> None:
    reports = tuple(eip712.sign_oracle_report(core.preset, keys[n], BTC, price, t) for n in ORACLE_NAMES[:2])
    tx = OraclePrice(BTC, Seconds(t), reports)
    assert core.execute(Kind.ORACLE, encode_oracle(tx, price), (tx, price), now=t).reject is None


def place(core: Core, keys: Keys, name: str, is_buy: bool, lots: int, tif: TimeInForce, t: int) -> None:
    order = Order(keys.addr(name), BTC, is_buy, PRICE, lots, tif, False, 0, 1, 0)  # type: ignore[arg-type]
    signed = eip712.sign_order(core.preset, order, keys[name])
    order_id = eip712.order_digest(core.preset, order)
    args = (signed, order_id, int(Stp.EXPIRE_MAKER), False)
    assert core.execute(Kind.PLACE, encode_place(*args), args, now=t).reject is None


def leveraged_long() -> tuple[Core, Keys]:
    """alice holds 100 lots long on 30 USDC (about 17x at the price), bob the short."""
    keys = Keys("resync-")
    core = Core(dev_genesis(keys, genesis_time=T0))
    for i, (name, amount) in enumerate((("alice", 30 * USDC), ("bob", 1_000 * USDC))):
        args = (i, keys.addr(name), amount)
        assert core.execute(Kind.DEPOSIT, encode_queue(*args), args, now=T0 + 1).reject is None
    oracle(core, keys, PRICE, T0 + 2)
    place(core, keys, "bob", False, 100, TimeInForce.GTC, T0 + 3)
    place(core, keys, "alice", True, 100, TimeInForce.IOC, T0 + 3)
    assert core.margin(keys.addr("alice"))["positions"] == {BTC: (100, 0, 0)}
    return core, keys


def test_a_corrected_price_liquidates_an_account_the_corrections_never_named() -> None:
    core, keys = leveraged_long()
    alice = core.engine.risk.accounts[keys.addr("alice")]
    assert liquidation.brute_force(core.engine.risk) == []
    # The spec's record of the market holds a price 5% lower (say the engine's last oracle output
    # was busted on re-application): alice is below maintenance there, and only the market differs
    spec_market = replace(core.engine.market_record(BTC), oracle_price=PRICE * 95 // 100, oracle_time=T0 + 4)
    c = Corrections(0, bytes(32), (), (), markets=((BTC, spec_market),))
    outcome = core.execute(Kind.ROLLBACK, encode_corrections(c), (decode_corrections(encode_corrections(c)),),
                           now=T0 + 5)
    # Verify the record itself liquidated her (the insurance fund took the position)
    liquidated = [o for o in outcome.outputs if type(o) is Liquidate]
    assert [(o.account, o.market, o.lots) for o in liquidated] == [(alice.address, BTC, 100)]
    assert core.margin(alice.address)["positions"] == {}
    # and the index agrees with a scan of every account afterwards
    core.execute(Kind.TICK, b"", (), now=T0 + 6)
    assert liquidation.brute_force(core.engine.risk) == []


def test_replaying_the_rollback_record_liquidates_the_same() -> None:
    """The liquidation is a deterministic effect of the record: a journal replay gives it again."""
    runs = []
    for _ in range(2):
        core, _ = leveraged_long()
        spec_market = replace(core.engine.market_record(BTC), oracle_price=PRICE * 95 // 100, oracle_time=T0 + 4)
        body = encode_corrections(Corrections(0, bytes(32), (), (), markets=((BTC, spec_market),)))
        runs.append(core.replay_record(Kind.ROLLBACK, T0 + 5, body).outputs)
    assert runs[0] == runs[1] and any(type(o) is Liquidate for o in runs[0])
