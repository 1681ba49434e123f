"""The mesh figures, measured on real node processes over loopback.

``python -m tools.mesh_figures all`` (``--quick`` for small sizes) prints markdown tables:
consistency window, writes lost to a kill -9, hit rate during a join, ring convergence with
data (join and leave), throughput against one node, the cost of one forwarding hop, and
one connection pipelining through a non-owner against smart routing.
Results and their reading are in docs/benchmarks.md, "Mesh".
"""
