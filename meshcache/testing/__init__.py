"""Test harnesses importable by users: the deterministic network simulator (``simnet``) and
real node processes (``nodes``)."""
