"""Rebuilding the rollup's state from the base layer alone: genesis, then every valid batch's
data (kept forever for data availability) through the spec's STF, with the bridge queues read
from the chain. What an escaping user needs when the sequencer is gone.
"""

from __future__ import annotations

from contracts_spec import codec
from contracts_spec.state import State
from contracts_spec.stf import Env, apply_batch
from contracts_spec.types import Address, BatchData, BatchHeader, Genesis, Seconds
from contracts_spec.witness import prove_account
from l1_mock.client import ClientBridge, L1Client, L1Error
from l1_mock.envelope import hex0x, unhex


def decode_body(client: L1Client, header: BatchHeader, genesis: Genesis) -> BatchData:
    """A batch's transactions and orders, fetched by its data hash (checked) and decoded."""
    return codec.decode_batch_data(client.batch_data(header.data_hash), max_txs=genesis.preset.max_batch_txs)


def rebuild_state(client: L1Client, upto_index: int) -> State:
    """The state after the valid batch at rollup index `upto_index` (-1: genesis), checked root by root."""
    genesis = client.genesis()
    state = State.from_genesis(genesis)
    bridge = ClientBridge(client)
    for index in range(upto_index + 1):
        view = client.canonical(index)
        header = codec.decode_header(unhex(view["header"]))
        body = decode_body(client, header, genesis)
        apply_batch(state, body, Env(genesis.preset, Seconds(header.time), bridge))
        state.checkpoint()
        # Verify our re-execution reaches the root the chain holds (a final batch is never wrong)
        if state.root() != header.post_root:
            raise L1Error("replay_mismatch", f"batch {index}: re-execution gives 0x{state.root().hex()}, "
                                             f"the chain holds {hex0x(header.post_root)}")
    return state


def escape_proof(client: L1Client, account: Address) -> bytes:
    """The proof of `account` (and its positions and markets) against the frozen rollup's escape root."""
    status = client.escape_status()
    if not status["frozen"]:
        raise L1Error("not_frozen", "the rollup is not frozen: there is no escape root yet")
    freeze = status["freeze"]
    state = rebuild_state(client, int(freeze["index"]))
    if hex0x(state.root()) != freeze["root"]:  # pragma: no cover - rebuild_state checks every root
        raise L1Error("replay_mismatch", "rebuilt state does not reach the escape root")
    return prove_account(state, account)
