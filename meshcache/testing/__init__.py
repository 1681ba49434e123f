"""Test harnesses importable by users: the deterministic network simulator (``simnet``), the
data-plane simulation (``simdata``) and the fault model they share (``faults``), real node
processes (``nodes``) and free ports for them (``ports``)."""
