"""The challenge-game harness: a local Rampart network as real processes (base layer, sequencer,
verifiers, oracle), fault injection through sequencer/faults.py, the fault matrix, the demo
behind ./start and the soak's building blocks.
"""
