"""Membership across real OS processes on loopback: crash, pause, leave, keys, garbage."""

from __future__ import annotations

import base64
import os
import signal
import socket
import time
import urllib.request
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest

from meshcache import Client
from meshcache.testing.nodes import NodeProcess
from tests.mesh.helpers import wait_for

pytestmark = pytest.mark.slow


def states(node: NodeProcess) -> dict[str, str]:
    with Client(node.data, timeout=5) as c:
        return {m["name"]: m["state"] for m in c.members()}


def info(node: NodeProcess) -> dict[str, Any]:
    with Client(node.data, timeout=5) as c:
        return c.info()


def start_mesh(
    stack: ExitStack, tmp_path: Path, n: int, *extra: str, prefix: str = "n"
) -> list[NodeProcess]:
    first = stack.enter_context(NodeProcess(tmp_path / f"{prefix}0", *extra))
    nodes = [first]
    for i in range(1, n):
        nodes.append(
            stack.enter_context(
                NodeProcess(tmp_path / f"{prefix}{i}", "--join", first.data, *extra)
            )
        )
    names = {node.node_id for node in nodes}
    wait_for(
        lambda: all(
            {k for k, v in states(node).items() if v == "alive"} == names for node in nodes
        ),
        20,
        "every node to see every other alive",
    )
    return nodes


@pytest.fixture
def stack() -> Iterator[ExitStack]:
    with ExitStack() as s:
        yield s


def test_kill_9_is_seen_as_dead_by_everyone(tmp_path: Path, stack: ExitStack) -> None:
    nodes = start_mesh(stack, tmp_path, 4, "--profile", "local")
    victim, others = nodes[1], [nodes[0], *nodes[2:]]
    victim.kill()
    wait_for(
        lambda: all(states(o)[victim.node_id] == "dead" for o in others),
        15,
        "the killed node to be dead everywhere",
    )
    # The survivors still serve and still agree on each other.
    for o in others:
        assert states(o)[o.node_id] == "alive"


def test_a_pause_shorter_than_the_suspicion_timeout_is_no_failure(
    tmp_path: Path, stack: ExitStack
) -> None:
    # lan profile, 4 members: suspicion lasts at least 4 * log10(4) * 1 s = 2.4 s.
    nodes = start_mesh(stack, tmp_path, 4, "--profile", "lan")
    paused = nodes[2]
    os.kill(paused.pid, signal.SIGSTOP)
    try:
        time.sleep(1.5)  # the scenario itself: a process starved of CPU for 1.5 s
    finally:
        os.kill(paused.pid, signal.SIGCONT)
    names = {n.node_id for n in nodes}
    wait_for(
        lambda: all({k for k, v in states(n).items() if v == "alive"} == names for n in nodes),
        15,
        "everyone alive again",
    )
    for n in nodes:
        assert info(n)["gossip"]["events"].get("dead", 0) == 0, n.node_id


def test_sigterm_leaves_gracefully(tmp_path: Path, stack: ExitStack) -> None:
    nodes = start_mesh(stack, tmp_path, 3, "--profile", "local")
    assert nodes[1].stop() == 0
    wait_for(
        lambda: all(states(n)[nodes[1].node_id] == "left" for n in (nodes[0], nodes[2])),
        10,
        "the stopped node to be 'left' everywhere",
    )


def test_cluster_keys_keep_strangers_and_garbage_out(tmp_path: Path, stack: ExitStack) -> None:
    key_file = tmp_path / "cluster.key"
    key_file.write_text(base64.b64encode(os.urandom(32)).decode() + "\n")
    other_key = tmp_path / "other.key"
    other_key.write_text(base64.b64encode(os.urandom(32)).decode() + "\n")
    nodes = start_mesh(
        stack, tmp_path, 2, "--profile", "local", "--cluster-key-file", str(key_file)
    )
    stranger = stack.enter_context(
        NodeProcess(
            tmp_path / "stranger",
            "--profile",
            "local",
            "--cluster-key-file",
            str(other_key),
            "--join",
            nodes[0].data,
        )
    )
    # Garbage datagrams at the gossip port of a member: dropped and counted.
    host, port = nodes[0].data_address
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        for payload in (b"", b"\x00" * 10, os.urandom(200), b"\x93\x01\x02\x03" * 50):
            s.sendto(payload, (host, port))
    refused = ("truncated", "oversized", "bad_version", "malformed", "unsigned", "bad_mac")

    def counted(*kinds: str) -> int:
        stats = info(nodes[0])["gossip"]["stats"]
        return sum(stats.get(k, 0) for k in kinds)

    wait_for(lambda: counted(*refused) >= 4, 10, "the garbage to be counted as refused")

    # The stranger's join attempts carry the wrong key: its push/pull is refused at AUTH (its
    # token is made from another key), any packet it seals does not open; both are counted.
    def auth_failed() -> float:
        host, port = nodes[0].admin_address
        with urllib.request.urlopen(f"http://{host}:{port}/metrics", timeout=5) as answer:
            for line in answer.read().decode().splitlines():
                if line.startswith('meshcache_auth_total{outcome="failed"}'):
                    return float(line.rsplit(" ", 1)[1])
        return 0.0

    wait_for(
        lambda: counted("bad_mac") >= 1 or auth_failed() >= 1,
        10,
        "the stranger's join to be refused",
    )
    for n in nodes:
        assert stranger.node_id not in states(n)
        assert set(states(n).values()) == {"alive"}
    assert set(states(stranger)) == {stranger.node_id}
