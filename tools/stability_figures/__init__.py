"""Stability under load: false suspicions and deaths, loop lag and convergence, N runs each.

``python -m tools.stability_figures all --runs 5 --profile both`` runs every scenario five
times on real node processes over loopback and prints a markdown table per scenario and
profile: one row per run, then the median and the max of every column. Results and their
reading are in docs/benchmarks.md, "Stability under load".
"""
