"""Rampart verifier."""
