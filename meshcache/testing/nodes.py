"""Start real meshcache nodes for tests and tools: in a separate OS process, with a deadline.

``NodeProcess`` runs ``python -m meshcache start`` with ports chosen by the kernel (port 0) and
learns the bound ports from the ready file (:data:`~meshcache.node.node.READY_FILE`) the node
writes into its data directory once it is ready; :func:`wait_for_ready_file` does that for any
node process. Nothing here sleeps for a fixed time: it polls for the condition until a deadline.
A node gets SIGKILL when the thread that started it ends (``PR_SET_PDEATHSIG``), so a test or a
tool killed in the middle of a run leaves no node behind; start nodes from the thread that
outlives them.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Any

from meshcache.errors import MeshcacheError
from meshcache.node.node import READY_FILE
from meshcache.reaper import die_with_parent
from meshcache.wire.address import Address, parse_address


class NodeStartError(MeshcacheError):
    """A node process did not become ready in time or exited early."""


class NodeProcess:
    """One node in its own process. Use as a context manager; it is killed on exit."""

    def __init__(
        self,
        data_dir: Path,
        *extra_args: str,
        port: int = 0,
        admin_port: int = 0,
        env: dict[str, str] | None = None,
        log_file: Path | None = None,
    ) -> None:
        self.data_dir = Path(data_dir)
        self.args = [
            sys.executable,
            "-m",
            "meshcache",
            "start",
            "--port",
            str(port),
            "--admin-port",
            str(admin_port),
            "--data-dir",
            str(self.data_dir),
            "--log-format",
            "json",
            *extra_args,
        ]
        self.env = {**os.environ, **(env or {})}
        self.log_file = log_file or self.data_dir / "node.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.node_id = ""
        self.data_address = Address("", 0)
        self.admin_address = Address("", 0)
        #: The RESP port's address; None unless the node was started with ``--resp-port``.
        self.resp_address: Address | None = None

    @property
    def data(self) -> str:
        """``host:port`` of the data port (``[v6]:port`` for IPv6)."""
        return str(self.data_address)

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def start(self, timeout: float = 20.0) -> NodeProcess:
        """Spawn the node and wait until it has written its ready file.

        Raises:
            NodeStartError: it exited first or was not ready in ``timeout`` s (it is killed).
        """
        self.data_dir.mkdir(parents=True, exist_ok=True)
        (self.data_dir / READY_FILE).unlink(missing_ok=True)
        with open(self.log_file, "ab") as log:
            self.proc = subprocess.Popen(
                self.args,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=self.env,
                preexec_fn=die_with_parent(signal.SIGKILL),
            )
        try:
            info = wait_for_ready_file(self.data_dir, self.proc, timeout, log=self.log_tail)
        except NodeStartError:
            self.kill()
            raise
        self.node_id = info["node_id"]
        self.data_address = parse_address(info["data"], default_port=None)
        self.admin_address = parse_address(info["admin"], default_port=None)
        resp = info.get("resp")
        self.resp_address = None if resp is None else parse_address(resp, default_port=None)
        return self

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def signal(self, signum: int) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signum)

    def kill(self) -> None:
        """``kill -9`` and reap."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def stop(self, timeout: float = 10.0) -> int:
        """SIGTERM, wait for a graceful exit (SIGKILL after ``timeout``); the exit code."""
        assert self.proc is not None
        self.signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            return self.proc.wait()

    def __enter__(self) -> NodeProcess:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.kill()


def read_ready_file(data_dir: Path, pid: int) -> dict[str, Any] | None:
    """What the node with process id ``pid`` wrote into its ready file in ``data_dir``.

    ``None`` while there is none, or only one left by an earlier process in the same directory
    (it names another pid). The node writes the file atomically once every port is bound; it
    holds ``node_id``, ``pid`` and the ``data`` and ``admin`` addresses as ``host:port``.
    """
    try:
        info = json.loads((data_dir / READY_FILE).read_text())
    except (OSError, ValueError):
        return None
    return info if isinstance(info, dict) and info.get("pid") == pid else None


def wait_for_ready_file(
    data_dir: Path,
    process: subprocess.Popen[bytes],
    timeout: float,
    *,
    log: Callable[[], str] = lambda: "(no log)",
) -> dict[str, Any]:
    """Poll until ``process`` has written its ready file in ``data_dir``; return its contents.

    The process is left running whatever happens; ``log`` gives the text that a failure shows.

    Raises:
        NodeStartError: the process exited first, or no ready file within ``timeout`` s.
    """
    deadline = time.monotonic() + timeout
    while True:
        if process.poll() is not None:
            raise NodeStartError(f"node exited with {process.returncode}; log:\n{log()}")
        info = read_ready_file(data_dir, process.pid)
        if info is not None:
            return info
        if time.monotonic() >= deadline:
            raise NodeStartError(f"node not ready after {timeout}s; log:\n{log()}")
        time.sleep(0.02)  # polling a file the child writes; the deadline bounds it
