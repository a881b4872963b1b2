"""The node in games over HTTP against the real base layer: it challenges every wrong batch and
wins with its bond paid out, never challenges an honest one, survives a restart mid-game, wins
beside another verifier, follows the rollback, and watches games it is not in."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import select

from contracts_spec.params import DEV
from tests.verifier import node_fixtures as nf
from tests.verifier.node_fixtures import (
    KINDS,
    REJECTIONS,
    World,
    defend,
    lying_batch,
    play_out,
    rejected_batch,
)
from verifier.db import AlertRow, BatchRow, GameRow, NodeRow
from verifier.node import Node as Verifier

keys, genesis, l1, vdb, world = nf.keys, nf.genesis, nf.l1, nf.vdb, nf.world

BOND = DEV.challenger_bond
BURN = -(-BOND * DEV.bond_burn_ppm // 1_000_000)
WINNINGS = 2 * BOND - BURN


def _native(w: World, name: str) -> int:
    return int(w.seq_client.account(w.keys.addr(name))["native"])


def _games(v: Verifier) -> list[GameRow]:
    with v.sessions() as s:
        return list(s.scalars(select(GameRow).order_by(GameRow.game_id)))


def _alerts(v: Verifier) -> list[str]:
    with v.sessions() as s:
        return [a.kind for a in s.scalars(select(AlertRow).order_by(AlertRow.id))]


def _verdicts(v: Verifier) -> dict[int, str | None]:
    with v.sessions() as s:
        return {b.batch_id: b.verdict for b in s.scalars(select(BatchRow))}


def _won_and_paid(w: World, v: Verifier, name: str, bad_id: int, before: int) -> None:
    mine = [g for g in _games(v) if g.mine]
    assert len(mine) == 1 and mine[0].batch_id == bad_id and mine[0].status == "challenger_won"
    assert w.seq_client.batch(bad_id)["status"] == "lost"
    assert _native(w, name) == before - BOND + WINNINGS  # bond back, the sequencer's won, claimed
    assert w.seq_client.bonds(w.keys.addr(name))["claimable"] == 0


@pytest.mark.parametrize("kind", KINDS)
def test_a_lie_after_each_kind_is_challenged_and_won(world: World, kind: str) -> None:
    v = world.verifier()
    world.post(world.setup_batch())
    v.sync()
    before = _native(world, "vera")
    bad = lying_batch(world, kind)
    bad_id = world.post(bad)
    play_out(world, bad, [v])
    _won_and_paid(world, v, "vera", bad_id, before)


@pytest.mark.parametrize("kind", REJECTIONS)
def test_a_rejected_transaction_claimed_valid_is_challenged_and_won(world: World, kind: str) -> None:
    v = world.verifier()
    world.post(world.setup_batch())
    before = _native(world, "vera")
    bad = rejected_batch(world, kind)
    bad_id = world.post(bad)
    play_out(world, bad, [v])
    _won_and_paid(world, v, "vera", bad_id, before)
    stepped = [e for e in world.seq_client.follow(names=["Stepped"])]
    assert stepped[-1].data["rejected"] is True and stepped[-1].data["index"] == 1


def test_honest_batches_over_a_long_run_are_never_challenged(world: World) -> None:
    v = world.verifier(checkpoint_every=5)
    before = _native(world, "vera")
    world.post(world.setup_batch())
    for i in range(40):
        world.post(world.honest_batch(i, funding=i % 10 == 0 and i > 0))
        if i % 7 == 0:
            v.sync()
        if i % 10 == 9:
            world.advance(DEV.challenge_window)  # windows close, batches become final
    v.sync()
    assert set(_verdicts(v).values()) == {"valid"} and len(_verdicts(v)) == 41
    assert _games(v) == [] and world.seq_client.games() == [] and _native(world, "vera") == before
    with v.sessions() as s:
        node = s.get(NodeRow, 1)
        assert node is not None and node.head_root == world.seq_client.rollup()["head_root"]


def test_restart_in_the_middle_of_a_game_still_wins(world: World) -> None:
    v = world.verifier(checkpoint_every=1)
    world.post_honest(3)
    before = _native(world, "vera")
    bad = lying_batch(world, "trade")
    bad_id = world.post(bad)
    v.sync()  # verifies, opens the game
    (game,) = world.seq_client.games(status="open")
    defend(world, game.game_id, bad)
    v.sync()  # answers
    defend(world, game.game_id, bad)
    assert world.seq_client.game(game.game_id).game.moves >= 3
    settings = v.settings
    v.close()  # the node stops mid-game, its state only in its database
    world.verifiers.remove(v)
    world.advance(DEV.game_clock // 2)  # it was away for a while (its clock runs)
    again = world.verifier()
    assert again.settings.db == settings.db
    play_out(world, bad, [again])
    _won_and_paid(world, again, "vera", bad_id, before)


def test_two_verifiers_on_one_bad_batch_both_win(world: World) -> None:
    vera, victor = world.verifier("vera"), world.verifier("victor")
    world.post(world.setup_batch())
    before = {n: _native(world, n) for n in ("vera", "victor")}
    bad = lying_batch(world, "liquidate")
    bad_id = world.post(bad)
    play_out(world, bad, [vera, victor])
    for name, v in (("vera", vera), ("victor", victor)):
        _won_and_paid(world, v, name, bad_id, before[name])


def test_after_a_lost_batch_the_reposted_ones_are_verified(world: World) -> None:
    v = world.verifier()
    world.post(world.setup_batch())
    bad = lying_batch(world, "withdraw")
    bad_id = world.post(bad)
    child = world.post(world.honest_batch(0))  # built on the lie: falls with it
    play_out(world, bad, [v])
    assert world.seq_client.batch(child)["status"] == "invalid"
    # the sequencer rolls back to the batch's parent and posts again
    world.repost_from(bad)
    again = [world.post(world.honest_batch(i)) for i in (1, 2)]
    v.sync()
    verdicts = _verdicts(v)
    assert verdicts[bad_id] == "invalid" and verdicts[child] == "skipped"
    assert [verdicts[b] for b in again] == ["valid", "valid"]
    with v.sessions() as s:
        node = s.get(NodeRow, 1)
        assert node is not None and node.head_batch_id == again[-1]
        assert s.get(BatchRow, bad_id).l1_status == "lost"  # type: ignore[union-attr]
        assert s.get(BatchRow, child).l1_status == "invalid"  # type: ignore[union-attr]


def test_an_honest_batch_lost_by_a_slow_defender_rolls_the_node_back(world: World) -> None:
    """A lying challenger attacks an honest batch and the sequencer never answers: the batch is
    lost on the clock. The node warns while it can, then drops the batch and what it verified on
    it, falls back to a checkpoint below, and verifies the re-posted batches."""
    v = world.verifier(checkpoint_every=1)
    world.post(world.setup_batch())
    honest = world.honest_batch(0)
    target = world.post(honest)
    above = world.post(world.honest_batch(1))
    v.sync()
    assert _verdicts(v)[target] == "valid" and _verdicts(v)[above] == "valid"
    world.c("mallory").faucet(native=10 * nf.NATIVE)
    gid = world.c("mallory").open_game(target).game_id
    v.sync()
    world.advance(DEV.game_clock // 2 + 1)  # the defender is slow
    v.sync()
    assert "defender_slow" in _alerts(v)
    assert not any(g.mine for g in _games(v))  # it never joins against an honest batch
    world.advance(DEV.game_clock)
    assert world.c("mallory").resolve(gid).status == "challenger_won"
    world.repost_from(honest)
    reposted = world.post(world.honest_batch(2))
    v.sync()
    with v.sessions() as s:
        node = s.get(NodeRow, 1)
        assert node is not None and node.head_batch_id == reposted
    assert _verdicts(v)[reposted] == "valid"


def test_a_watcher_joins_when_another_challenger_stalls(world: World) -> None:
    """Victor challenges a wrong batch, then goes silent; vera (not challenging by herself) sees the
    game heading the wrong way, joins with her own game and wins it."""
    vera = world.verifier("vera", challenge=False)
    victor = world.verifier("victor")
    world.post(world.setup_batch())
    before = _native(world, "vera")
    bad = lying_batch(world, "oracle")
    bad_id = world.post(bad)
    victor.sync()  # opens its game
    vera.sync()
    assert not any(g.mine for g in _games(vera)) and "invalid_batch" in _alerts(vera)
    (game,) = world.seq_client.games(status="open")
    defend(world, game.game_id, bad)  # the sequencer reveals; victor never answers again
    world.advance(DEV.game_clock // 2 + 1)
    vera.sync()
    assert "challenger_slow" in _alerts(vera)
    assert any(g.mine for g in _games(vera))
    world.verifiers.remove(victor)
    victor.close()
    play_out(world, bad, [vera])
    _won_and_paid(world, vera, "vera", bad_id, before)
    # victor's game, still open on the chain, is won with the batch once anyone resolves it
    assert world.c("bob").resolve(game.game_id).status == "challenger_won"
    vera.sync()
    victors = next(g for g in _games(vera) if not g.mine)
    assert victors.status == "challenger_won" and json.loads(victors.payout_json or "{}")["challenger"] == WINNINGS
