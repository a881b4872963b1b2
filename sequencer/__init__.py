"""Rampart sequencer."""
