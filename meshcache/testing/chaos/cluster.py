"""A cluster of real node processes, each in its own network namespace, and the faults to hit it.

:class:`ChaosCluster` (a context manager) sweeps what crashed runs left behind, takes the run's
lock, starts the run's reaper, builds the network (:mod:`.netns`: a hub namespace with a bridge,
one namespace per node at ``10.77.0.11+``, one per client endpoint at ``10.77.0.101+``), starts
``python -m meshcache start`` in every node namespace (the first ``voters`` nodes are the Raft
voters, every node joins through ``n0``, gossip profile ``local``), waits until every node holds
the same ring with every node active, and creates the chaos namespaces (one per consistency
level: eviction ``none``, a large ``max_bytes``, no default TTL; and ``chaos-hot``, the same at
``all`` with hot keys on). With ``loader=True`` it first starts the run's PostgreSQL in a
namespace of its own on the bridge (:mod:`.pgsource`), gives every node a ``[sources.pg]``
pointing at it, and creates the read-through namespace ``chaos-load``. On exit — normal,
exception or KeyboardInterrupt — it stops workers and nodes and removes every namespace, veth,
bridge, nftables table, temporary file and lock; if the process is killed, its reaper does the same.

Faults, each recorded in the history (``p = "nemesis"``): :meth:`set_faults` (partitions, loss:
:mod:`.faults`), :meth:`kill` (SIGKILL), :meth:`restart` (optionally under a skewed clock:
libfaketime's ``FAKETIME``, monotonic time untouched), :meth:`pause` / :meth:`resume`
(SIGSTOP / SIGCONT), :meth:`throttle` (tc ``tbf``). The harness observes from the hub, which no
fault touches: :meth:`call` sends any op to one node directly (``RECORDS`` reads a node's own
copy of keys).

Nothing here sleeps to wait for a condition: :func:`wait_until` polls it until a deadline.
"""

from __future__ import annotations

import contextlib
import ctypes
import glob
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

from meshcache.errors import MeshcacheError
from meshcache.ring import Ring, RingMember, RingState
from meshcache.testing.chaos import netns
from meshcache.testing.chaos.faults import NetFaults, healthy, nft_script
from meshcache.testing.chaos.history import HistoryWriter
from meshcache.testing.chaos.netns import ChaosError, Endpoint, Network
from meshcache.testing.chaos.pgsource import (
    DB_ENDPOINT,
    DB_HOST,
    DB_PORT_INDEX,
    LOADER_NAMESPACE,
    SOURCE,
    ChaosDatabase,
    loader_policy,
)
from meshcache.testing.chaos.workload import (
    HOT_NAMESPACE,
    HOT_POLICY,
    NAMESPACES,
    ClientSpec,
    WorkerSpec,
)
from meshcache.wire.frame import FrameReader, decode_response, encode_request

DATA_PORT = 7400
RAFT_PORT = 7401
ADMIN_PORT = 9400
NODE_HOST_BASE = 11
CLIENT_HOST_BASE = 101
#: The policy of every chaos namespace (plus ``replicas`` and ``consistency``): nothing is
#: evicted or expires, so a missing key is a lost key.
CHAOS_POLICY: dict[str, Any] = {"eviction": "none", "max_bytes": 1 << 30}
READY_FILE = "node.json"
_PR_SET_PDEATHSIG = 1
_LIBFAKETIME = (
    "/usr/lib/*/faketime/libfaketime.so.1",
    "/usr/lib/faketime/libfaketime.so.1",
    "/usr/local/lib/faketime/libfaketime.so.1",
)


def wait_until(
    condition: Callable[[], bool], timeout: float, what: str, every: float = 0.1
) -> float:
    """Poll ``condition`` until it is true; the seconds it took. ChaosError after ``timeout``."""
    start = time.monotonic()
    while not condition():
        if time.monotonic() - start > timeout:
            raise ChaosError(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(every)  # the poll interval; the deadline bounds the wait
    return time.monotonic() - start


def _in(ns: str) -> list[str]:
    return ["ip", "netns", "exec", ns]


def libfaketime() -> str | None:
    """The path of libfaketime (Debian package faketime), or None."""
    for pattern in _LIBFAKETIME:
        found = sorted(glob.glob(pattern))
        if found:
            return found[0]
    return None


def _die_with_parent() -> Callable[[], None]:
    """A ``preexec_fn``: the child gets SIGKILL when the thread that forked it ends."""
    prctl = ctypes.CDLL(None, use_errno=True).prctl
    parent = os.getpid()

    def in_child() -> None:
        prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        if os.getppid() != parent:
            os._exit(1)

    return in_child


class Control:
    """A blocking connection from the hub to one node's data port: no routing, no retries."""

    def __init__(self, hub: str, address: tuple[str, int], timeout: float) -> None:
        with netns.entered(hub):
            self.sock = socket.create_connection(address, timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.reader = FrameReader()
        self.rid = 0

    def call(self, op: str, args: list[Any], namespace: str, timeout: float) -> Any:
        """The op's result; the node's error as CommandError; OSError when the link fails."""
        self.rid += 1
        self.sock.settimeout(timeout)
        self.sock.sendall(encode_request(self.rid, op, namespace, args))
        while (body := self.reader.next_body()) is None:
            data = self.sock.recv(1 << 20)
            if not data:
                raise ConnectionError("node closed the connection")
            self.reader.feed(data)
        return decode_response(body).result()

    def close(self) -> None:
        self.sock.close()


class ChaosNode:
    """One node of a chaos cluster: its namespace and address, its process, its files."""

    def __init__(self, index: int, endpoint: Endpoint, data_dir: Path, voter: bool) -> None:
        self.index = index
        self.name = endpoint.name
        self.endpoint = endpoint
        self.data_dir = data_dir
        self.voter = voter
        self.proc: subprocess.Popen[bytes] | None = None
        self.skew: float = 0.0
        self.paused = False
        self.node_id = f"{endpoint.address}:{DATA_PORT}"
        self.starts = 0

    @property
    def address(self) -> str:
        return self.endpoint.address

    @property
    def data(self) -> str:
        return f"{self.address}:{DATA_PORT}"

    @property
    def raft(self) -> str:
        return f"{self.address}:{RAFT_PORT}"

    @property
    def log_file(self) -> Path:
        return self.data_dir / "node.log"

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.running and self.proc is not None else None

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def __repr__(self) -> str:
        return f"<ChaosNode {self.name} {self.data} pid={self.pid}>"


class Worker:
    """A workload process in one endpoint's namespace (see :mod:`.workload`)."""

    def __init__(self, proc: subprocess.Popen[bytes], spec: WorkerSpec, log: Path) -> None:
        self.proc = proc
        self.spec = spec
        self.log = log

    @property
    def names(self) -> list[str]:
        return [c.name for c in self.spec.clients]

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no output)"

    def stop(self, timeout: float = 30.0) -> int:
        """Close its stdin (each client finishes its op), wait; SIGKILL after ``timeout``."""
        if self.proc.stdin is not None and not self.proc.stdin.closed:
            with contextlib.suppress(OSError):
                self.proc.stdin.close()
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait()


class ChaosCluster:
    """``nodes`` node processes in network namespaces, client endpoints, faults, a history.

    Args:
        nodes: how many nodes (``n0`` ... ``n{nodes-1}``).
        clients: how many client endpoints (``c0`` ...): namespaces a workload can run in and
            a fault can put on a side. Workers can also run in the hub (no fault reaches it).
        replicas: owners per key in the chaos namespaces.
        voters: Raft voters (the first ones); default every node up to 5.
        out_dir: where the history (``history.jsonl``) goes, and the nodes' logs when
            :attr:`keep_logs` is set at exit; default: the run's temporary directory (removed).
        node_args: extra ``meshcache start`` flags for every node.
        anti_entropy_interval: seconds between anti-entropy rounds (short: repair is checked).
        start_timeout: seconds the mesh may take to form.
        loader: run a PostgreSQL (endpoint ``db``, :attr:`database`) and the read-through
            namespace ``chaos-load`` loading from it.

    Raises:
        ChaosUnavailable: (on enter) the machine lacks root, ``ip`` or ``nft``.
    """

    def __init__(
        self,
        nodes: int = 3,
        clients: int = 2,
        *,
        replicas: int = 3,
        voters: int | None = None,
        out_dir: Path | None = None,
        node_args: Sequence[str] = (),
        anti_entropy_interval: float = 2.0,
        start_timeout: float = 120.0,
        loader: bool = False,
    ) -> None:
        if not 1 <= nodes <= 40 or not 0 <= clients <= 40:
            raise ValueError("1-40 nodes and 0-40 client endpoints")
        self.n = nodes
        self.n_clients = clients
        self.replicas = min(replicas, nodes)
        self.n_voters = voters if voters is not None else min(nodes, 5)
        self.node_args = tuple(node_args)
        self.anti_entropy_interval = anti_entropy_interval
        self.start_timeout = start_timeout
        self.loader = loader
        self.database: ChaosDatabase | None = None
        self._out_dir_given = None if out_dir is None else Path(out_dir)
        self._name_run(netns.new_run_id())  # a placeholder: start() claims a free id
        self.nodes: list[ChaosNode] = []
        self.clients: list[Endpoint] = []
        self.workers: list[Worker] = []
        self.faults: NetFaults = healthy()
        self.throttled: set[str] = set()
        self.keep_logs = False
        self.history: HistoryWriter | None = None
        self._lock: netns.RunLock | None = None
        self._reaper: subprocess.Popen[bytes] | None = None
        self._controls: dict[str, Control] = {}
        self.swept: list[str] = []

    def _name_run(self, rid: str) -> None:
        """Name everything of the run after ``rid``."""
        self.rid = rid
        self.root = netns.temp_root(rid)
        self.out_dir = self._out_dir_given if self._out_dir_given is not None else self.root
        self.history_path = self.out_dir / "history.jsonl"
        self.network = Network(rid)

    # --- life cycle ----------------------------------------------------------------------------

    def __enter__(self) -> ChaosCluster:
        try:
            self.start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is not None:
            self.keep_logs = True
        self.close()

    def start(self) -> None:
        """Sweep stale runs, build the network, start the nodes, wait for the ring, create the
        chaos namespaces. Call :meth:`close` afterwards, also when this raises."""
        netns.require_privileges()
        self.swept = netns.sweep_stale()
        rid, self._lock = netns.claim_run()
        self._name_run(rid)
        self._reaper = netns.spawn_reaper(self.rid)
        self.root.mkdir(parents=True, exist_ok=True)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self.history = HistoryWriter(self.history_path)
        self.history.write({"type": "meta", "p": "harness", "f": "start", "rid": self.rid})
        self.network.create()
        for i in range(self.n):
            ep = self.network.add_endpoint(f"n{i}", NODE_HOST_BASE + i, i)
            node = ChaosNode(i, ep, self.root / f"n{i}", voter=i < self.n_voters)
            self.nodes.append(node)
        for i in range(self.n_clients):
            self.clients.append(self.network.add_endpoint(f"c{i}", CLIENT_HOST_BASE + i, 50 + i))
        if self.loader:
            ep = self.network.add_endpoint(DB_ENDPOINT, DB_HOST, DB_PORT_INDEX)
            self.database = ChaosDatabase(ep, self.root / "pg")
            self.database.start()
            source = f'[sources.{SOURCE}]\ndsn = "{self.database.dsn}"\n'
            (self.root / "node.toml").write_text(source)
        self.set_faults(healthy(), record=False)
        password = self.root / "raft.password"
        password.write_text(secrets.token_urlsafe(24) + "\n")
        password.chmod(0o600)
        self._spawn(self.nodes[0])
        self._wait_ready(self.nodes[0])
        for node in self.nodes[1:]:
            self._spawn(node)
        for node in self.nodes[1:]:
            self._wait_ready(node)
        wait_until(self.ring_agreed, self.start_timeout, f"{self.n} active members everywhere")
        for level, name in NAMESPACES.items():
            policy = {**CHAOS_POLICY, "replicas": self.replicas, "consistency": level}
            self.ns_set(self.nodes[0], name, policy)
        self.ns_set(
            self.nodes[0], HOT_NAMESPACE, {**CHAOS_POLICY, "replicas": self.replicas, **HOT_POLICY}
        )
        wanted = {*NAMESPACES.values(), HOT_NAMESPACE}
        if self.loader:
            policy = {**CHAOS_POLICY, "replicas": self.replicas, "consistency": "quorum"}
            self.ns_set(self.nodes[0], LOADER_NAMESPACE, {**policy, "loader": loader_policy()})
            wanted.add(LOADER_NAMESPACE)
        wait_until(
            lambda: all(wanted <= set(self.try_call(x, "NS_LIST", []) or {}) for x in self.nodes),
            self.start_timeout,
            "the chaos namespaces on every node",
        )

    def close(self) -> None:
        """Stop every worker and node; remove every namespace, link, table, file and lock
        of the run (the nodes' logs are first copied to ``out_dir`` when :attr:`keep_logs`)."""
        for worker in self.workers:
            with contextlib.suppress(Exception):
                worker.stop(timeout=15.0)
        for control in self._controls.values():
            control.close()
        self._controls.clear()
        for node in self.nodes:
            if node.proc is not None and node.proc.poll() is None:
                with contextlib.suppress(OSError):
                    node.proc.send_signal(signal.SIGCONT)
                    node.proc.kill()
                node.proc.wait()
        if self.keep_logs and self.out_dir != self.root:
            self.copy_logs(self.out_dir / "logs")
        if self.database is not None:
            self.database.stop()
        if self.history is not None:
            self.history.close()
        if self._lock is None:  # the run never claimed its id: nothing of it exists
            return
        try:
            netns.cleanup_run(self.rid)
        finally:
            self._lock.release()
            netns.reap(self.rid)  # anything the first pass raced, under the lock again
            if self._reaper is not None:
                if self._reaper.stdin is not None:
                    self._reaper.stdin.close()
                try:
                    self._reaper.wait(30)
                except subprocess.TimeoutExpired:
                    self._reaper.kill()
                    self._reaper.wait()

    def copy_logs(self, into: Path) -> None:
        """Copy every node's log and every worker's output into ``into``."""
        into.mkdir(parents=True, exist_ok=True)
        for node in self.nodes:
            if node.log_file.exists():
                (into / f"{node.name}.log").write_bytes(node.log_file.read_bytes())
        for worker in self.workers:
            if worker.log.exists():
                (into / worker.log.name).write_bytes(worker.log.read_bytes())
        db_log = self.root / "pg" / "server.log"
        if db_log.exists():
            (into / "postgres.log").write_bytes(db_log.read_bytes())

    # --- nodes ---------------------------------------------------------------------------------

    def node(self, name: str) -> ChaosNode:
        return next(n for n in self.nodes if n.name == name)

    @property
    def node_names(self) -> list[str]:
        return [n.name for n in self.nodes]

    @property
    def voter_names(self) -> list[str]:
        return [n.name for n in self.nodes if n.voter]

    @property
    def client_names(self) -> list[str]:
        return [c.name for c in self.clients]

    def _command(self, node: ChaosNode) -> list[str]:
        flags = {
            "--host": node.address,
            "--port": str(DATA_PORT),
            "--admin-host": node.address,
            "--admin-port": str(ADMIN_PORT),
            "--data-dir": str(node.data_dir),
            "--log-format": "json",
            "--profile": "local",
            "--anti-entropy-interval": f"{self.anti_entropy_interval:g}",
        }
        args = [sys.executable, "-m", "meshcache", "start"]
        for flag, value in flags.items():
            args += [flag, value]
        # The nodes bind addresses of their network namespaces, with no users: protected mode
        # would refuse them.
        args.append("--insecure")
        if node.voter:
            peers = ",".join(n.raft for n in self.nodes if n.voter)
            args += ["--raft-port", str(RAFT_PORT), "--raft-peers", peers]
            args += ["--raft-password-file", str(self.root / "raft.password")]
        if node.index != 0:
            args += ["--join", self.nodes[0].data]
        if self.loader:
            args += ["--config", str(self.root / "node.toml")]
        return ["ip", "netns", "exec", node.endpoint.netns, *args, *self.node_args]

    def _spawn(self, node: ChaosNode) -> None:
        node.data_dir.mkdir(parents=True, exist_ok=True)
        (node.data_dir / READY_FILE).unlink(missing_ok=True)
        env = dict(os.environ)
        for name in ("LD_PRELOAD", "FAKETIME", "FAKETIME_DONT_FAKE_MONOTONIC"):
            env.pop(name, None)
        if node.skew:
            lib = libfaketime()
            if lib is None:
                raise netns.ChaosUnavailable(
                    "clock skew needs libfaketime (Debian package faketime)"
                )
            env.update(
                LD_PRELOAD=lib, FAKETIME=f"{node.skew:+g}s", FAKETIME_DONT_FAKE_MONOTONIC="1"
            )
        with open(node.log_file, "ab") as log:
            node.proc = subprocess.Popen(
                self._command(node),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                process_group=0,
                preexec_fn=_die_with_parent(),
            )
        node.starts += 1
        node.paused = False

    def _wait_ready(self, node: ChaosNode) -> None:
        ready = node.data_dir / READY_FILE

        def is_ready() -> bool:
            assert node.proc is not None
            if node.proc.poll() is not None:
                raise ChaosError(
                    f"{node.name} exited with {node.proc.returncode}; log:\n{node.log_tail()}"
                )
            try:
                info = json.loads(ready.read_text())
            except (OSError, ValueError):
                return False
            if info.get("pid") != node.proc.pid:
                return False
            node.node_id = str(info["node_id"])
            return True

        wait_until(is_ready, self.start_timeout, f"{node.name} to start", every=0.05)

    def kill(self, name: str) -> None:
        """``kill -9`` node ``name`` and reap it."""
        node = self.node(name)
        if node.proc is not None and node.proc.poll() is None:
            node.proc.kill()
            node.proc.send_signal(signal.SIGCONT)
            node.proc.wait()
        node.paused = False
        self._drop_control(name)
        self._event("kill", name)

    def restart(self, name: str, *, skew: float | None = None, wait: bool = True) -> None:
        """Start node ``name`` again (same address, data dir and Raft journal; empty store),
        under a wall clock ``skew`` seconds off when given (0 ends a skew). Kills it first if
        it runs."""
        node = self.node(name)
        if node.running:
            self.kill(name)
        if skew is not None:
            node.skew = skew
        self._spawn(node)
        if wait:
            self._wait_ready(node)
        self._event("restart", name, skew=node.skew)

    def pause(self, name: str) -> None:
        """SIGSTOP node ``name``: it holds its sockets and answers nothing."""
        node = self.node(name)
        if node.proc is not None:
            node.proc.send_signal(signal.SIGSTOP)
            node.paused = True
        self._event("pause", name)

    def resume(self, name: str) -> None:
        node = self.node(name)
        if node.proc is not None:
            node.proc.send_signal(signal.SIGCONT)
        node.paused = False
        self._event("resume", name)

    def throttle(self, name: str, rate: str | None) -> None:
        """Limit endpoint ``name``'s link to ``rate`` both ways (tc tbf, e.g. ``"1mbit"``);
        None lifts it. It slows all of that link's traffic, the harness's own included."""
        self.network.set_rate(name, rate)
        if rate is None:
            self.throttled.discard(name)
        else:
            self.throttled.add(name)
        self._event("throttle", name, rate=rate)

    # --- network faults ------------------------------------------------------------------------

    def set_faults(self, faults: NetFaults, *, record: bool = True) -> None:
        """Replace the network's faults with ``faults`` (one nftables transaction)."""
        addresses = {ep.name: ep.address for ep in self.network.endpoints.values()}
        self.network.set_rules(nft_script(faults, addresses))
        self.faults = faults
        if record:
            self._event("faults" if faults.drops else "heal", faults.describe())

    def heal(self) -> None:
        """Lift every network fault."""
        self.set_faults(healthy())

    def heal_all(self) -> None:
        """Lift network faults and throttles, resume paused nodes and restart stopped ones
        (same skew)."""
        if not self.faults.healthy:
            self.heal()
        for name in sorted(self.throttled):
            self.throttle(name, None)
        for node in self.nodes:
            if node.paused:
                self.resume(node.name)
        for node in self.nodes:
            if not node.running:
                self.restart(node.name)

    def _event(self, f: str, value: Any, **extra: Any) -> None:
        if self.history is not None:
            self.history.event(f, value, **extra)

    # --- observing -----------------------------------------------------------------------------

    def _drop_control(self, name: str) -> None:
        control = self._controls.pop(name, None)
        if control is not None:
            control.close()

    def call(
        self,
        node: ChaosNode | str,
        op: str,
        args: list[Any],
        namespace: str = "default",
        timeout: float = 5.0,
    ) -> Any:
        """Send ``op`` to exactly one node, from the hub; its result.

        Raises:
            CommandError: the node refused it.
            OSError: the node could not be reached or did not answer within ``timeout``.
        """
        target = self.node(node) if isinstance(node, str) else node
        control = self._controls.get(target.name)
        try:
            if control is None:
                control = Control(self.network.hub, (target.address, DATA_PORT), timeout)
                self._controls[target.name] = control
            return control.call(op, args, namespace, timeout)
        except OSError:
            self._drop_control(target.name)
            raise

    def try_call(
        self,
        node: ChaosNode | str,
        op: str,
        args: list[Any],
        namespace: str = "default",
        timeout: float = 2.0,
    ) -> Any:
        """:meth:`call`, with None for any failure (for polls)."""
        try:
            return self.call(node, op, args, namespace, timeout)
        except (OSError, MeshcacheError):
            return None

    def ns_set(
        self, node: ChaosNode | str, name: str, policy: dict[str, Any], timeout: float = 15.0
    ) -> Any:
        return self.call(node, "NS_SET", [name, policy], timeout=timeout)

    def running_nodes(self) -> list[ChaosNode]:
        return [n for n in self.nodes if n.running and not n.paused]

    def ring_agreed(self, among: Iterable[ChaosNode] | None = None) -> bool:
        """Every node (of ``among``) answers the same ring version, listing every node of the
        cluster as active."""
        wanted = {n.node_id for n in self.nodes}
        versions = set()
        for node in among if among is not None else self.nodes:
            ring = self.try_call(node, "RING", [])
            if not isinstance(ring, dict):
                return False
            members = ring.get("members", [])
            active = {m["node_id"] for m in members if m.get("state") == RingState.ACTIVE}
            if active != wanted or len(members) != len(wanted):
                return False
            versions.add(ring.get("version"))
        return len(versions) == 1

    def membership_agreed(self) -> bool:
        """Every node's gossip view holds every node alive (and nothing else alive)."""
        wanted = {n.node_id for n in self.nodes}
        for node in self.nodes:
            members = self.try_call(node, "MEMBERS", [])
            if not isinstance(members, list):
                return False
            alive = {m["name"] for m in members if m.get("state") == "alive"}
            if alive != wanted:
                return False
        return True

    def current_ring(self, node: ChaosNode | str | None = None) -> Ring:
        ring = self.call(node or self.nodes[0], "RING", [])
        members = [
            RingMember.from_mapping({k: v for k, v in m.items() if k != "share"})
            for m in ring["members"]
        ]
        return Ring(members, ring["version"])

    def owners(self, ring: Ring, key: str) -> list[str]:
        """Names of the nodes owning ``key`` by ``ring`` (chaos namespaces' replicas)."""
        by_id = {n.node_id: n.name for n in self.nodes}
        return [by_id[m.node_id] for m in ring.owners(key.encode(), self.replicas)]

    def records(
        self, node: ChaosNode | str, namespace: str, keys: Sequence[str], timeout: float = 10.0
    ) -> list[Any]:
        """Node ``node``'s own record of each key (``RECORDS``): ``[type, value, expires_at,
        version]``, ``["tombstone", None, None, version]``, or None."""
        result: list[Any] = []
        for start in range(0, len(keys), 2000):
            chunk = [k.encode() for k in keys[start : start + 2000]]
            result += self.call(node, "RECORDS", [chunk], namespace, timeout)
        return result

    def info(self, node: ChaosNode | str) -> dict[str, Any]:
        info: dict[str, Any] = self.call(node, "INFO", [])
        return info

    def fd_count(self, node: ChaosNode | str) -> int | None:
        """Open file descriptors of the node's process (from /proc), None when it is down."""
        target = self.node(node) if isinstance(node, str) else node
        if target.pid is None:
            return None
        try:
            return len(os.listdir(f"/proc/{target.pid}/fd"))
        except OSError:
            return None

    # --- workload ------------------------------------------------------------------------------

    def start_worker(self, where: str, clients: Sequence[ClientSpec]) -> Worker:
        """Start a workload process in endpoint ``where`` (a client endpoint name, or
        ``"hub"``), running ``clients``; it appends to the run's history."""
        spec = WorkerSpec(history=str(self.history_path), clients=tuple(clients))
        index = len(self.workers)
        spec_file = self.root / f"worker{index}.json"
        spec_file.write_text(spec.to_json())
        log = self.root / f"worker{index}-{where}.log"
        ns = self.network.hub if where == "hub" else self.network.endpoints[where].netns
        with open(log, "ab") as out:
            proc = subprocess.Popen(
                [
                    *_in(ns),
                    sys.executable,
                    "-m",
                    "meshcache.testing.chaos",
                    "worker",
                    str(spec_file),
                ],
                stdin=subprocess.PIPE,
                stdout=out,
                stderr=subprocess.STDOUT,
                process_group=0,
                preexec_fn=_die_with_parent(),
            )
        worker = Worker(proc, spec, log)
        self.workers.append(worker)
        return worker

    def stop_workers(self) -> None:
        """Stop every running worker (each client finishes its op)."""
        for worker in self.workers:
            worker.stop()

    @property
    def seeds(self) -> tuple[str, ...]:
        return tuple(n.data for n in self.nodes)


__all__ = [
    "ADMIN_PORT",
    "CHAOS_POLICY",
    "DATA_PORT",
    "ChaosCluster",
    "ChaosNode",
    "Control",
    "Worker",
    "libfaketime",
    "wait_until",
]
