"""CLI start-up: wall time of one-shot ``meshcache`` commands, against the interpreter's own start.

Run: ``.venv/bin/python -m tools.cli_startup [--runs 10] [--tree NAME=DIR ...]``

Each ``--tree`` is a source tree of meshcache (a ``git archive`` of some commit, say) imported
through ``PYTHONPATH`` ahead of the installed one; without any, the installed package is timed.
One node (``meshcache start`` in its own process, temp data dir) serves every ``get``. For each
tree and each bytecode mode the tool times, in fresh processes:

* ``python -c pass`` — the anchor: the interpreter and ``site`` alone;
* ``meshcache --version``;
* ``meshcache get KEY`` against the node (the key holds 100 bytes).

Bytecode modes: ``cached`` (``.pyc`` files written to a temp ``PYTHONPYCACHEPREFIX`` by a
warm-up run, as on any installed system) and ``no-cache`` (``PYTHONDONTWRITEBYTECODE=1``, no
``.pyc`` to read: every module is compiled at every start, as in this repo's CI environment).
Runs are interleaved round-robin over every (tree, mode, command), so a change of machine load
hits them alike. Output: a markdown table of median and worst wall milliseconds, the median as a
ratio to the same mode's anchor, the median CPU milliseconds (user + system of the process, less
disturbed by other load than wall time) and the modules a ``get`` loads; the load average
before and after is printed beneath it. Every process runs in a temp directory, so that the
current directory does not shadow the tree timed.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import meshcache
from meshcache.testing.nodes import NodeProcess

KEY = "startup:key"
MODES = ("cached", "no-cache")


@dataclass
class Case:
    tree: str
    mode: str
    command: str
    argv: list[str]
    env: dict[str, str]
    times: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)


def tree_env(source: Path | None, mode: str, pycache: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MESHCACHE_")}
    env.pop("PYTHONPATH", None)
    env.pop("PYTHONPYCACHEPREFIX", None)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    if source is not None:
        env["PYTHONPATH"] = str(source)
    if mode == "cached":
        env["PYTHONPYCACHEPREFIX"] = str(pycache)
    else:
        env["PYTHONDONTWRITEBYTECODE"] = "1"
    return env


def timed(argv: list[str], env: dict[str, str], cwd: Path) -> tuple[float, float]:
    """Wall seconds and CPU seconds (user + system) of one run of ``argv``."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run(argv, env=env, cwd=cwd, check=True, capture_output=True, timeout=60)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime


def modules_of_get(env: dict[str, str], port: int, cwd: Path) -> int:
    probe = (
        "import sys\nfrom meshcache.cli import main\n"
        f"main(['get', '{KEY}', '--port', '{port}'])\nprint(len(sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], env=env, cwd=cwd, check=True, capture_output=True, text=True
    )
    return int(out.stdout.split()[-1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=10, help="timed runs per case")
    parser.add_argument(
        "--tree", action="append", default=[], metavar="NAME=DIR", help="a source tree to time"
    )
    args = parser.parse_args(argv)
    trees: list[tuple[str, Path | None]] = [
        (name, Path(path).resolve()) for name, path in (t.split("=", 1) for t in args.tree)
    ] or [("installed", None)]
    script = str(Path(sys.executable).with_name("meshcache"))
    work = Path(tempfile.mkdtemp(prefix="cli-startup-"))
    try:
        with NodeProcess(work / "node", "--log-level", "warning") as node:
            with meshcache.Client(node.data, smart=False) as client:
                client.set(KEY, b"x" * 100)
            port = str(node.data_address.port)
            cases: list[Case] = []
            modules: dict[tuple[str, str], int] = {}
            for name, source in trees:
                for mode in MODES:
                    env = tree_env(source, mode, work / f"pycache-{name}")
                    commands = {
                        "python -c pass (anchor)": [sys.executable, "-c", "pass"],
                        "meshcache --version": [script, "--version"],
                        "meshcache get": [script, "get", KEY, "--port", port],
                    }
                    for command, cmd in commands.items():
                        timed(cmd, env, work)  # warm-up: page cache, .pyc files when cached
                        cases.append(Case(name, mode, command, cmd, env))
                    modules[name, mode] = modules_of_get(env, int(port), work)
            load_before = os.getloadavg()
            for _ in range(args.runs):
                for case in cases:
                    wall, cpu = timed(case.argv, case.env, work)
                    case.times.append(wall)
                    case.cpu.append(cpu)
            load_after = os.getloadavg()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    anchors = {
        (c.tree, c.mode): statistics.median(c.times)
        for c in cases
        if c.command.endswith("(anchor)")
    }
    print(
        "| tree | bytecode | command | median ms | worst ms | median / anchor | CPU ms (median)"
        " | modules (get) |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for c in cases:
        median, worst = statistics.median(c.times), max(c.times)
        print(
            f"| {c.tree} | {c.mode} | `{c.command}` | {median * 1000:.1f} | {worst * 1000:.1f}"
            f" | {median / anchors[c.tree, c.mode]:.2f} | {statistics.median(c.cpu) * 1000:.1f}"
            f" | {modules[c.tree, c.mode]} |"
        )
    print()
    print(
        f"{args.runs} runs per case, interleaved; load average before"
        f" {' '.join(f'{x:.2f}' for x in load_before)}, after"
        f" {' '.join(f'{x:.2f}' for x in load_after)} ({os.cpu_count()} CPUs)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
