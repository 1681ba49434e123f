"""``meshcache top`` as an operator runs it: in a terminal (tmux), read with ``capture-pane``.

Every tmux session runs on its own server socket (``tmux -L``), killed when the test ends.
"""

from __future__ import annotations

import itertools
import os
import shlex
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from meshcache.testing.mesh import Mesh
from tests.tui.helpers import live_mesh, row

TMUX = shutil.which("tmux")
ROOT = Path(__file__).parents[2]

pytestmark = [
    pytest.mark.slow,
    pytest.mark.timeout(600),
    pytest.mark.skipif(TMUX is None, reason="tmux is not installed"),
]

_sessions = itertools.count()


class Terminal:
    """One tmux window running one command; its screen as text, keys sent to it."""

    def __init__(self, socket_name: str, name: str) -> None:
        self.socket_name = socket_name
        self.name = name

    def tmux(self, *args: str) -> str:
        assert TMUX is not None
        done = subprocess.run(
            [TMUX, "-L", self.socket_name, *args],
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        )
        return done.stdout

    def screen(self) -> str:
        return self.tmux("capture-pane", "-p", "-t", self.name)

    def keys(self, *keys: str) -> None:
        for key in keys:
            self.tmux("send-keys", "-t", self.name, key)

    def resize(self, width: int, height: int) -> None:
        self.tmux("resize-window", "-t", self.name, "-x", str(width), "-y", str(height))

    def wait(self, condition: Callable[[str], bool], timeout: float, what: str) -> str:
        deadline = time.monotonic() + timeout
        while True:
            screen = self.screen()
            if condition(screen):
                return screen
            if time.monotonic() > deadline:
                pytest.fail(f"timed out after {timeout}s waiting for {what}; screen:\n{screen}")
            time.sleep(0.2)


@contextmanager
def terminal(command: list[str], width: int = 120, height: int = 32) -> Iterator[Terminal]:
    """Run ``command`` in a new tmux server; the server and everything in it end on exit.

    When the command ends, the shell prints ``exit=<code>`` and keeps the window open, so
    the last screen can still be read.
    """
    name = f"top{next(_sessions)}"
    socket_name = f"meshcache-top-test-{os.getpid()}-{name}"
    # COLUMNS and LINES would override the window's size (pytest may set them).
    run = shlex.join(["env", "-u", "COLUMNS", "-u", "LINES", *command])
    shell = f"cd {shlex.quote(str(ROOT))} && {run}; echo exit=$?; sleep 600"
    term = Terminal(socket_name, name)
    socket_path = ""
    try:
        term.tmux(
            "new-session", "-d", "-s", name, "-x", str(width), "-y", str(height), "sh", "-c", shell
        )
        socket_path = term.tmux("display", "-p", "#{socket_path}").strip()
        yield term
    finally:
        subprocess.run(
            [TMUX or "tmux", "-L", socket_name, "kill-server"], capture_output=True, timeout=30
        )
        if socket_path:
            Path(socket_path).unlink(missing_ok=True)  # tmux leaves its socket file behind


def top(*args: str) -> list[str]:
    return [sys.executable, "-m", "meshcache", "top", *args]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


@pytest.fixture(scope="module")
def mesh() -> Iterator[Mesh]:
    with live_mesh(3) as mesh:
        yield mesh


def test_an_operator_session_in_tmux(mesh: Mesh) -> None:
    node = mesh.nodes[0]
    ids = [x.node_id for x in mesh.nodes]
    with terminal(top("--host", "127.0.0.1", "--port", str(node.data_address.port))) as term:
        screen = term.wait(
            lambda s: (
                "3 members (3 answer)" in s
                and all((line := row(s, i)) is not None and " alive " in line for i in ids)
            ),
            60,
            "the three members alive",
        )
        assert "Traceback" not in screen
        term.keys("2")
        term.wait(lambda s: "ring v" in s and "3 active" in s, 20, "the Ring view")
        term.keys("?")
        screen = term.wait(lambda s: "meshcache top — help" in s, 20, "the help")
        for key in ("drain the selected node", "sort by the next column", "quit"):
            assert key in screen
        term.keys("Escape")
        term.wait(lambda s: "meshcache top — help" not in s, 20, "the help closed")
        term.keys("1", "/")
        term.wait(lambda s: "filter rows:" in s, 20, "the filter field")
        port = str(mesh.nodes[1].data_address.port)
        term.keys(*port, "Enter")
        term.wait(
            lambda s: (
                row(s, ids[1]) is not None and row(s, ids[0]) is None and f"filter: {port}" in s
            ),
            20,
            "the filtered Cluster view",
        )
        term.keys("Escape")
        term.wait(lambda s: all(row(s, i) is not None for i in ids), 20, "the filter cleared")
        term.keys("s", "r")
        term.wait(lambda s: "sorted by gossip (descending)" in s, 20, "the sort message")
        # A node disappearing mid-session: it stops answering, then gossip calls it dead.
        victim = mesh.nodes[2]
        victim.kill()
        term.wait(
            lambda s: (line := row(s, victim.node_id)) is not None and " dead " in line,
            90,
            "the killed node dead",
        )
        term.keys("q")
        screen = term.wait(lambda s: "exit=" in s, 30, "meshcache top to quit")
        assert "exit=0" in screen
        assert "Traceback" not in screen


def test_a_terminal_too_small_then_resized(mesh: Mesh) -> None:
    node = mesh.live[0]
    with terminal(top("--port", str(node.data_address.port)), width=70, height=20) as term:
        term.wait(lambda s: "needs a terminal of at least 80x24" in s, 60, "the too-small message")
        term.resize(100, 30)
        term.wait(lambda s: row(s, node.node_id) is not None, 60, "the Cluster view")
        term.keys("q")
        screen = term.wait(lambda s: "exit=" in s, 30, "meshcache top to quit")
        assert "exit=0" in screen and "Traceback" not in screen


def test_wrong_addresses_end_with_one_clear_line(mesh: Mesh) -> None:
    nobody = free_port()
    with terminal(top("--port", str(nobody))) as term:
        screen = term.wait(lambda s: "exit=" in s, 60, "meshcache top to give up")
        assert f"meshcache top: cannot reach 127.0.0.1:{nobody}" in screen
        assert "exit=3" in screen and "Traceback" not in screen
    admin = mesh.live[0].admin_address.port  # an HTTP server, not the data port
    with terminal(top("--port", str(admin))) as term:
        screen = term.wait(lambda s: "exit=" in s, 60, "meshcache top to give up")
        assert "does not speak the meshcache protocol" in screen
        assert "exit=3" in screen and "Traceback" not in screen
    with terminal(top("--refresh", "soon")) as term:
        screen = term.wait(lambda s: "exit=" in s, 60, "meshcache top to refuse the flag")
        assert "--refresh: 'soon' is not a duration" in screen
        assert "exit=2" in screen
