"""Rampart l1_mock."""
