"""What ``meshcache top`` costs: CPU time of its process over 60 s against a 5-node mesh.

Run from the repository root::

    .venv/bin/python -m tests.tui.measure_cpu [--nodes 5] [--seconds 60] [--refresh 1s]

It starts the nodes, runs ``meshcache top`` in a tmux window (160x48) as an operator would,
waits until every member answers, then reads the process's user + system CPU time from
``/proc/<pid>/stat`` at the start and the end of the window, and prints the share of one core.
A small client load keeps the figures changing, so the screen redraws at every poll. Every
process, the tmux server and the temporary directory are gone when it returns.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import threading
import time

from meshcache import Client
from tests.tui.helpers import live_mesh
from tests.tui.test_tmux import terminal, top


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds used so far by process ``pid``."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks  # utime, stime


def top_pid(pane_pid: int) -> int:
    """The python process under the tmux pane's shell (``env`` execs it)."""
    for _ in range(100):
        found = subprocess.run(["pgrep", "-P", str(pane_pid)], capture_output=True, text=True)
        for pid in found.stdout.split():
            with open(f"/proc/{pid}/cmdline", "rb") as cmdline:
                if b"meshcache\x00top" in cmdline.read():
                    return int(pid)
        time.sleep(0.1)
    raise RuntimeError("meshcache top's process not found")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--nodes", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--refresh", default="1s")
    args = parser.parse_args(argv)
    with live_mesh(args.nodes) as mesh:
        stop = threading.Event()

        def load() -> None:
            with Client(mesh.addresses) as client:
                i = 0
                while not stop.is_set():
                    client.set(f"k{i % 5000}".encode(), b"x" * 100)
                    client.get(f"k{(i * 7) % 5000}".encode())
                    i += 1
                    stop.wait(0.01)  # ~100 sets and gets a second: figures move, CPU stays low

        loader = threading.Thread(target=load, daemon=True)
        loader.start()
        port = str(mesh.nodes[0].data_address.port)
        try:
            with terminal(top("--port", port, "--refresh", args.refresh), 160, 48) as term:
                term.wait(
                    lambda s: f"{args.nodes} members ({args.nodes} answer)" in s,
                    120,
                    "every member answering",
                )
                pane = int(term.tmux("display", "-p", "-t", term.name, "#{pane_pid}").strip())
                pid = top_pid(pane)
                start_cpu, start = cpu_seconds(pid), time.monotonic()
                time.sleep(args.seconds)  # the measurement window itself
                used, elapsed = cpu_seconds(pid) - start_cpu, time.monotonic() - start
                screen = term.screen()
        finally:
            stop.set()
            loader.join(10)
    print(screen)
    print(
        f"meshcache top, {args.nodes} nodes, refresh {args.refresh}: {used:.2f} s CPU in "
        f"{elapsed:.1f} s = {100 * used / elapsed:.2f}% of one core"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
