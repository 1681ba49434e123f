"""Free ports and the node ready file, as tests and tools use them."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from meshcache.node.node import READY_FILE
from meshcache.testing.nodes import NodeStartError, read_ready_file, wait_for_ready_file
from meshcache.testing.ports import free_port, free_port_pairs


def test_a_free_port_can_be_bound() -> None:
    port = free_port()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", port))


def test_free_port_pairs_do_not_overlap_and_can_be_bound() -> None:
    ports = free_port_pairs(3)
    taken = [p + i for p in ports for i in (0, 1)]
    assert len(set(taken)) == 6
    sockets = [socket.socket() for _ in taken]
    try:
        for sock, port in zip(sockets, taken, strict=True):
            sock.bind(("127.0.0.1", port))
    finally:
        for sock in sockets:
            sock.close()


def test_read_ready_file_only_believes_the_process_it_asks_about(tmp_path: Path) -> None:
    assert read_ready_file(tmp_path, 123) is None
    (tmp_path / READY_FILE).write_text("{not json")
    assert read_ready_file(tmp_path, 123) is None
    info = {"node_id": "n", "pid": 123, "data": "127.0.0.1:1", "admin": "127.0.0.1:2"}
    (tmp_path / READY_FILE).write_text(json.dumps(info))
    assert read_ready_file(tmp_path, 123) == info
    assert read_ready_file(tmp_path, 456) is None  # left by an earlier process


WRITER = """
import json, os, sys, time
path = os.path.join(sys.argv[1], {name!r})
with open(path + ".tmp", "w") as f:
    json.dump({{"node_id": "n", "pid": os.getpid(), "data": "h:1", "admin": "h:2"}}, f)
os.replace(path + ".tmp", path)
time.sleep(30)
"""


def test_wait_for_ready_file_returns_what_the_process_wrote(tmp_path: Path) -> None:
    code = WRITER.format(name=READY_FILE)
    with subprocess.Popen([sys.executable, "-c", code, str(tmp_path)]) as proc:
        try:
            info = wait_for_ready_file(tmp_path, proc, timeout=20)
            assert info["pid"] == proc.pid and info["data"] == "h:1"
        finally:
            proc.kill()


def test_wait_for_ready_file_fails_when_the_process_exits_first(tmp_path: Path) -> None:
    with (
        subprocess.Popen([sys.executable, "-c", "raise SystemExit(3)"]) as proc,
        pytest.raises(NodeStartError, match="exited with 3; log:\nlast words"),
    ):
        wait_for_ready_file(tmp_path, proc, timeout=20, log=lambda: "last words")


def test_wait_for_ready_file_fails_at_its_deadline(tmp_path: Path) -> None:
    with subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"]) as proc:
        try:
            with pytest.raises(NodeStartError, match=r"not ready after 0\.3s"):
                wait_for_ready_file(tmp_path, proc, timeout=0.3)
        finally:
            proc.kill()
