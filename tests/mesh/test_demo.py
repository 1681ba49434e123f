"""``meshcache demo`` as a user runs it: a subprocess that starts a mesh of node processes,
serves until SIGTERM, reports a node that dies, and fails with one line when a node cannot
start. Kernel-chosen ports (``--base-port 0``), so runs never clash."""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import pytest

from meshcache import Client, MeshcacheError
from meshcache.node.node import READY_FILE
from meshcache.testing.procs import running
from meshcache.wire.address import parse_address
from tests.mesh.helpers import wait_for

READY_DEADLINE = 60.0
NODE_LINE = re.compile(r"^node (\d+)  data (\S+)  admin http://(\S+)  (voter|member)  pid (\d+)")


def clean_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MESHCACHE_")}
    repo = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [repo, env.get("PYTHONPATH")]))
    return env


class DemoRun:
    """``python -m meshcache demo ...`` with its output collected line by line as it comes."""

    def __init__(self, *args: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "meshcache", "demo", "--base-port", "0", *args],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=clean_env(),
        )
        self.out: list[str] = []
        self.err: list[str] = []
        assert self.proc.stdout is not None and self.proc.stderr is not None
        self.readers = [
            threading.Thread(target=self._collect, args=(self.proc.stdout, self.out), daemon=True),
            threading.Thread(target=self._collect, args=(self.proc.stderr, self.err), daemon=True),
        ]
        for reader in self.readers:
            reader.start()

    @staticmethod
    def _collect(stream: IO[str], lines: list[str]) -> None:
        with stream:
            for line in stream:
                lines.append(line.rstrip("\n"))

    def wait_ready(self) -> None:
        def ready() -> bool:
            if self.proc.poll() is not None:
                pytest.fail(f"demo exited with {self.proc.returncode}: {self.err} {self.out}")
            return any(line.startswith("ready: ") for line in self.out)

        wait_for(ready, READY_DEADLINE, "the demo to print 'ready'")

    @property
    def nodes(self) -> dict[int, tuple[str, int]]:
        """Node index → (data address, pid), from the lines printed before 'ready'."""
        found: dict[int, tuple[str, int]] = {}
        for line in self.out:
            if m := NODE_LINE.match(line):
                found[int(m.group(1))] = (m.group(2), int(m.group(5)))
        return found

    def finish(self, signum: int = signal.SIGTERM) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signum)
        code = self.proc.wait(timeout=30)
        for reader in self.readers:
            reader.join(timeout=10)
        return code

    def cleanup(self) -> None:
        """Whatever happened in the test, no demo and no node is left running."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        for _, pid in self.nodes.values():
            if running(pid):
                os.kill(pid, signal.SIGKILL)
        for reader in self.readers:
            reader.join(timeout=10)


@pytest.fixture
def demos() -> Iterator[list[DemoRun]]:
    started: list[DemoRun] = []
    yield started
    for demo in started:
        demo.cleanup()


def start_demo(demos: list[DemoRun], *args: str) -> DemoRun:
    demo = DemoRun(*args)
    demos.append(demo)
    demo.wait_ready()
    return demo


def ring_members(address: str) -> set[str]:
    with Client(address, timeout=5) as c:
        return {str(m["node_id"]) for m in c.ring()["members"]}


def test_demo_serves_survives_a_killed_node_and_stops_on_sigterm(
    demos: list[DemoRun], tmp_path: Path
) -> None:
    demo = start_demo(demos, "--nodes", "3", "--data-dir", str(tmp_path))
    nodes = demo.nodes
    assert sorted(nodes) == [0, 1, 2]
    roles = [m.group(4) for line in demo.out if (m := NODE_LINE.match(line))]
    assert roles == ["voter"] * 3
    addresses = {address for address, _ in nodes.values()}
    assert ring_members(nodes[2][0]) == addresses  # every node, as seen from the last one too
    # Two clients that know the mesh through different nodes: both route by the ring.
    with Client(nodes[0][0], timeout=5) as first, Client(nodes[2][0], timeout=5) as last:
        for i in range(10):
            assert first.set(f"demo:{i}", f"value {i}")
        assert last.mget([f"demo:{i}" for i in range(10)]) == [
            f"value {i}".encode() for i in range(10)
        ]
    assert any(line.strip().startswith("meshcache set hello world --port") for line in demo.out)
    assert (tmp_path / "raft.password").stat().st_mode & 0o777 == 0o600

    os.kill(nodes[1][1], signal.SIGKILL)

    def reported() -> bool:
        return any(x.startswith("node 1 (") and "killed by SIGKILL" in x for x in demo.out)

    wait_for(reported, 10, "the demo to report node 1")
    assert demo.proc.poll() is None
    for i in (0, 2):
        with Client(nodes[i][0], timeout=5, smart=False) as c:
            assert c.ping()

    def suspected() -> bool:
        return any(
            re.fullmatch(r"membership: node 1 \(\S+\) (suspected|declared dead) by node [02]", x)
            for x in demo.out
        )

    wait_for(suspected, 20, "the demo to report node 1 suspected (not a flap: it was killed)")

    assert demo.finish(signal.SIGTERM) == 0
    assert [pid for _, pid in nodes.values() if running(pid)] == []
    assert demo.err == []
    assert demo.out[-1].startswith("membership: ")  # the flap count, last
    # Nodes 0 and 2 stopped cleanly (that removes the ready file); the files stay in --data-dir.
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "node0",
        "node1",
        "node2",
        "raft.password",
    ]
    assert list(tmp_path.glob(f"node*/{READY_FILE}")) == [tmp_path / "node1" / READY_FILE]


def test_a_node_that_cannot_start_fails_the_demo_with_one_line(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        result = subprocess.run(
            [sys.executable, "-m", "meshcache", "demo", "--nodes", "2", "--base-port", str(port)],
            capture_output=True,
            text=True,
            env=clean_env(),
            timeout=60,
            check=False,
        )
    line = result.stderr
    assert result.returncode == 1
    assert line.count("\n") == 1 and "Traceback" not in line
    assert line.startswith("meshcache demo: node 0 ")
    # What failed, which port and which setting, and where the log is: the log is kept.
    assert "exited with code 1 before the mesh was ready: cannot bind the data port" in line
    assert f"127.0.0.1:{port} (TCP, setting port): Address already in use" in line
    found = re.search(r"its log: (\S+) \(the demo's files stay in (\S+)\)$", line.rstrip())
    assert found is not None, line
    log, root = Path(found.group(1)), Path(found.group(2))
    try:
        assert log.parents[1] == root and "node_failed" in log.read_text()
    finally:
        shutil.rmtree(root, ignore_errors=True)


def test_a_flap_is_reported_and_killing_the_demo_stops_its_nodes(demos: list[DemoRun]) -> None:
    demo = start_demo(demos, "--nodes", "2")
    nodes = demo.nodes
    root = Path(next(x for x in demo.out if x.startswith("ready: ")).rpartition(" files in ")[2])
    try:
        # A stopped process is alive but silent: the others suspect it, which is a flap.
        os.kill(nodes[1][1], signal.SIGSTOP)
        try:

            def flap() -> bool:
                return any(
                    x.startswith("membership: node 1 (") and x.endswith("(a flap)")
                    for x in demo.out
                )

            wait_for(flap, 30, "the demo to report node 1's flap")
        finally:
            os.kill(nodes[1][1], signal.SIGCONT)
        assert "suspected by node 0 while its process runs (a flap)" in "\n".join(demo.out)

        os.kill(demo.proc.pid, signal.SIGKILL)
        demo.proc.wait(timeout=10)

        def all_gone() -> bool:
            return [pid for _, pid in nodes.values() if running(pid)] == []

        wait_for(all_gone, 20, "every node of the killed demo to stop")
        wait_for(lambda: not root.exists(), 20, "the killed demo's files to be removed")
    finally:
        shutil.rmtree(root, ignore_errors=True)


def test_two_nodes_share_keys_then_one_leaves_the_ring(demos: list[DemoRun]) -> None:
    demo = start_demo(demos, "--nodes", "2")
    nodes = demo.nodes
    # smart=False: each request goes to the node named, which must forward or replicate.
    with Client(nodes[0][0], timeout=5, smart=False) as c:
        assert c.set("demo:shared", b"both")
    with Client(nodes[1][0], timeout=5, smart=False) as other:

        def visible() -> bool:
            return other.get("demo:shared") == b"both"

        wait_for(visible, 5, "the key through node 1")

    node_1 = parse_address(nodes[1][0], default_port=None)
    result = subprocess.run(
        [sys.executable, "-m", "meshcache", "leave", "--port", str(node_1.port)],
        capture_output=True,
        text=True,
        env=clean_env(),
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert re.fullmatch(
        rf"{nodes[1][0]} left the ring: \d+ keys? handed over, ring version \d+\n", result.stdout
    )

    def one_member() -> bool:
        try:
            return ring_members(nodes[0][0]) == {nodes[0][0]}
        except MeshcacheError:
            return False

    wait_for(one_member, 20, "the ring to list only node 0")
    with Client(nodes[0][0], timeout=5, smart=False) as c:
        assert c.get("demo:shared") == b"both"  # still there after node 1 handed its keys over

    root = Path(next(x for x in demo.out if x.startswith("ready: ")).rpartition(" files in ")[2])
    assert root.is_dir()
    assert demo.finish(signal.SIGINT) == 0  # Ctrl-C
    assert [pid for _, pid in nodes.values() if running(pid)] == []
    assert not root.exists()  # no --data-dir: the temporary directory goes with the demo
