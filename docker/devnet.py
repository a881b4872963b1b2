#!/usr/bin/env python3
"""`rampart-devnet`: the dev network's keys, genesis and coin, for local use only.

`init` writes, where missing, one key file per role (the verifier's key-file format: JSON
{"address", "private_key"}, mode 0600), a dev genesis naming their addresses and a public
addresses file; it refuses to go on if an existing genesis names other keys. `fund` gives each
verifier native coin for challenge bonds from the dev faucet. A real network creates each key
on its operator's machine and agrees on a genesis: nothing here is for that.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

BOND_MULTIPLE = 10  # coin for this many challenger bonds per verifier


def load_or_create_key(path: Path) -> bytes:
    """The key in `path`, created (mode 0600) when the file does not exist yet."""
    from verifier import keys

    if not path.exists():
        keys.write_key(path, keys.create_key())
    return keys.load_key(path)


def compute_addresses(a: argparse.Namespace) -> dict[str, Any]:
    from contracts_spec.crypto import address_of_private_key

    def addr(path: Path) -> str:
        return "0x" + address_of_private_key(load_or_create_key(path)).hex()

    return {
        "sequencer": addr(a.sequencer_key),
        "governance": addr(a.governance_key),
        "oracle_signers": [addr(p) for p in a.oracle_key],
        "verifiers": [addr(p) for p in a.verifier_key],
    }


def init(a: argparse.Namespace) -> None:
    from contracts_spec.params import PRESETS, genesis_from_json, genesis_to_json, make_genesis

    bound = [a.sequencer_key, *a.oracle_key]
    # Verify no key the genesis names is missing: a new one would not be the one the genesis trusts
    if a.genesis.exists() and not all(p.exists() for p in bound):
        raise SystemExit(f"rampart-devnet: {a.genesis} names other sequencer or oracle keys than the key "
                         "files (some are missing); restore the key volumes or remove the genesis and every database")
    addresses = compute_addresses(a)
    signers = tuple(bytes.fromhex(s[2:]) for s in addresses["oracle_signers"])
    quorum = a.oracle_quorum or len(signers) // 2 + 1
    if a.genesis.exists():
        genesis = genesis_from_json(a.genesis.read_text())
        # Verify the stored genesis names these keys: a recreated key volume would else be a silent fork
        if ("0x" + genesis.sequencer.hex() != addresses["sequencer"] or genesis.oracle_signers != signers):
            raise SystemExit(f"rampart-devnet: {a.genesis} names other sequencer or oracle keys than the key "
                             "files; restore the key volumes or remove the genesis and every database")
    else:
        genesis = make_genesis(PRESETS[a.preset], signers, quorum, bytes.fromhex(addresses["sequencer"][2:]),
                               governance=bytes.fromhex(addresses["governance"][2:]))
        a.genesis.parent.mkdir(parents=True, exist_ok=True)
        a.genesis.write_text(genesis_to_json(genesis) + "\n")
    addresses["preset"] = genesis.preset.name
    a.addresses.write_text(json.dumps(addresses, indent=2) + "\n")
    print(json.dumps(addresses), flush=True)


def fund(a: argparse.Namespace) -> None:
    from contracts_spec.crypto import private_key_from_seed
    from l1_mock.client import L1Client, L1Error

    verifiers = list(a.address)
    if a.addresses is not None:
        verifiers += json.loads(a.addresses.read_text())["verifiers"]
    if not verifiers:
        raise SystemExit("rampart-devnet: give --addresses or --address")
    # The faucet needs a signed transaction, not a funded sender: a throwaway dev key signs it
    with L1Client(a.l1, private_key_from_seed(b"rampart-devnet-faucet")) as client:
        deadline = time.monotonic() + a.wait
        while True:
            try:
                client.info()
                break
            except L1Error:
                if time.monotonic() > deadline:
                    raise SystemExit(f"rampart-devnet: the base layer at {a.l1} does not answer") from None
                time.sleep(0.5)
        amount = a.native if a.native is not None else BOND_MULTIPLE * int(client.genesis().preset.challenger_bond)
        for verifier in verifiers:
            balance = int(client.account(verifier)["native"])
            if balance < amount:
                client.faucet(native=amount - balance, to=verifier)
            print(json.dumps({"verifier": verifier, "native": max(balance, amount)}), flush=True)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="rampart-devnet", description=__doc__.splitlines()[0].split(": ", 1)[1])
    sub = p.add_subparsers(dest="command", required=True)
    i = sub.add_parser("init", help="create missing keys, the dev genesis and the addresses file")
    i.add_argument("--preset", default="dev", choices=("dev",), help="dev only: its faucet funds the bonds")
    i.add_argument("--genesis", type=Path, required=True, help="genesis file to write (kept if present)")
    i.add_argument("--addresses", type=Path, required=True, help="public addresses file to write")
    i.add_argument("--sequencer-key", type=Path, required=True)
    i.add_argument("--governance-key", type=Path, required=True)
    i.add_argument("--oracle-key", type=Path, action="append", required=True, help="one per oracle signer")
    i.add_argument("--oracle-quorum", type=int, help="default: a majority of the signers")
    i.add_argument("--verifier-key", type=Path, action="append", default=[], help="one per verifier")
    f = sub.add_parser("fund", help="give verifiers coin for challenge bonds from the dev faucet")
    f.add_argument("--l1", required=True, help="base-layer URL")
    f.add_argument("--addresses", type=Path, help="the addresses file `init` wrote: fund its verifiers")
    f.add_argument("--address", action="append", default=[], help="fund this address too (0x...)")
    f.add_argument("--native", type=int, help=f"coin per address (default {BOND_MULTIPLE} challenger bonds)")
    f.add_argument("--wait", type=float, default=60.0, help="seconds to wait for the base layer")
    return p


def main(argv: list[str] | None = None) -> None:
    a = parser().parse_args(argv)
    {"init": init, "fund": fund}[a.command](a)


if __name__ == "__main__":
    sys.exit(main())
