"""Nodes a test or a tool starts (``meshcache.testing.nodes``) stop when it is killed."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from meshcache.testing.procs import running

REPO_ROOT = Path(__file__).resolve().parents[1]


def test_a_killed_owner_leaves_no_node_running(tmp_path: Path) -> None:
    script = textwrap.dedent(
        f"""
        import sys, time
        from pathlib import Path
        from meshcache.testing.nodes import NodeProcess
        node = NodeProcess(Path({str(tmp_path / "n0")!r}), "--bootstrap").start()
        print(node.proc.pid, flush=True)
        time.sleep(600)
        """
    )
    owner = subprocess.Popen(
        [sys.executable, "-c", script], cwd=REPO_ROOT, stdout=subprocess.PIPE, text=True
    )
    node = 0
    try:
        assert owner.stdout is not None
        line = owner.stdout.readline()
        assert line.strip().isdigit(), f"the owner did not start a node: {line!r}"
        node = int(line)
        assert running(node)
        os.kill(owner.pid, signal.SIGKILL)
        owner.wait(10)
        deadline = time.monotonic() + 10
        while running(node):
            assert time.monotonic() < deadline, "the node outlived its killed owner"
            time.sleep(0.05)
    finally:
        if node and running(node):
            os.kill(node, signal.SIGKILL)
        if owner.poll() is None:
            owner.kill()
            owner.wait()
        if owner.stdout is not None:
            owner.stdout.close()
