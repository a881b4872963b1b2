"""Rampart's executable specification: every rule of the protocol, pure and deterministic.

The sequencer executes it, verifiers re-execute it, the base layer runs it in one-step proofs.
"""
