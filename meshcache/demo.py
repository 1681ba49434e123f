"""``meshcache demo``: a local mesh of separate node processes, in the foreground.

Node ``i`` (from 0) runs ``python -m meshcache start`` with data port ``base + 2*i`` (its gossip
UDP port has the same number, its Raft port is the next one), RESP (Redis protocol) port
``base + 1000 + i`` and admin port ``base + 2000 + i``; with ``base`` 0 the kernel picks every
port and the demo reads each node's ``node.json``. The first ``min(3, n)`` nodes are the Raft
voters of the config group and share a password file the demo writes (mode 600); every other
node joins through node 0. The nodes use the ``local`` gossip profile (fast failure detection on
one host).

:func:`run` returns once the demo is over: 0 after SIGINT or SIGTERM stopped every node, 1 when
the mesh did not form (a node exited early, or the ring did not list every node in time; the
nodes' files are then kept, even in a temporary directory, and the message says where). A node
that dies while the demo runs is reported and the others keep running. Each node's log is
followed: a member suspected or declared dead is reported as it happens, and when the process
of that member is running (a *flap*: the failure detector was wrong) it is counted; the count
is printed when the demo stops.

On Linux every node gets ``PR_SET_PDEATHSIG`` (SIGTERM) before it execs, so the nodes stop when
the demo dies, even by SIGKILL. The kernel sends that signal when the *thread* that forked the
node ends, so nodes are forked on the thread that runs the demo (trio's main thread), never on
a worker thread (``trio.lowlevel.open_process`` forks on one, which idles out after seconds).
A temporary directory is removed by a reaper process (``meshcache/reaper.py``) waiting on a pipe
from the demo, so it goes too when the demo is killed.
"""

from __future__ import annotations

import bisect
import json
import math
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Callable, Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

import trio

from meshcache.errors import ConfigError, MeshcacheError
from meshcache.node.node import READY_FILE
from meshcache.reaper import KEEP, die_with_parent
from meshcache.reaper import start as start_reaper
from meshcache.ring import RingState
from meshcache.security.tls import CA_CERT
from meshcache.testing import ports
from meshcache.wire.address import parse_address

if TYPE_CHECKING:
    from meshcache.testing.postgres import PostgresServer

#: The file a node writes into its data dir once it serves (see ``meshcache/node/node.py``).
#: Admin port of node ``i`` is ``base + ADMIN_OFFSET + i`` (9400 for the default base 7400).
ADMIN_OFFSET = 2000
#: RESP port of node ``i`` is ``base + RESP_OFFSET + i`` (8400 for the default base 7400).
RESP_OFFSET = 1000
#: At most this many nodes: their data ports must stay below the admin ports.
MAX_NODES = 100
#: The size of the Raft group when there are enough nodes.
VOTERS = 3
HOST = "127.0.0.1"

_POLL = 0.05  # seconds between looks at a ready file or at the ring; a deadline bounds both
_LOG_POLL = 0.2  # seconds between looks at a node's log for membership events
#: Membership events of the node logs (``member_<kind>``) the demo reports.
REPORTED_EVENTS = {"member_suspect": "suspected", "member_dead": "declared dead"}
#: ``--with-postgres``: the sample table, the read-through namespace over it and its channel.
DEMO_NAMESPACE = "items"
DEMO_CHANNEL = "items_changes"
DEMO_TABLE_SQL = (
    "CREATE TABLE items (id text PRIMARY KEY, v text NOT NULL);"
    " INSERT INTO items SELECT i::text, 'item ' || i FROM generate_series(1, 1000) AS i;"
)
DEMO_LOADER = {
    "source": "pg",
    "query": "SELECT v FROM items WHERE id = $1",
    "batch_query": "SELECT id, v FROM items WHERE id = ANY($1)",
    "ttl": 300.0,
    "negative_ttl": 30.0,
    "channel": DEMO_CHANNEL,
}
#: Events that end a member's episode of suspicion or death.
BACK_EVENTS = frozenset({"member_alive", "member_joined"})


@dataclass(frozen=True, slots=True)
class DemoOptions:
    """What ``meshcache demo`` was asked for (already parsed; :func:`plan` checks ranges)."""

    nodes: int = 3
    base_port: int = 7400
    data_dir: Path | None = None
    start_timeout: float = 60.0
    stop_timeout: float = 10.0
    with_postgres: bool = False
    tls: bool = False  # a CA and certificates in the demo's directory; every port speaks TLS


@dataclass(frozen=True, slots=True)
class NodePlan:
    """How one demo node is started. Ports of 0 are chosen by the kernel."""

    index: int
    data_port: int
    admin_port: int
    raft_port: int | None  # set for voters only
    resp_port: int = 0

    @property
    def voter(self) -> bool:
        return self.raft_port is not None


def check(options: DemoOptions) -> None:
    """Raise :class:`ConfigError` when the options cannot work."""
    n, base = options.nodes, options.base_port
    if not 1 <= n <= MAX_NODES:
        raise ConfigError(f"--nodes: must be between 1 and {MAX_NODES}, got {n}")
    if base and base + ADMIN_OFFSET + n - 1 > 65535:
        raise ConfigError(
            f"--base-port: {base} leaves no room for {n} admin ports at {base + ADMIN_OFFSET}+"
            f" (use at most {65535 - ADMIN_OFFSET - n + 1}, or 0 for kernel-chosen ports)"
        )
    if not math.isfinite(options.start_timeout) or options.start_timeout <= 0:
        raise ConfigError("--timeout: must be more than 0")


def plan(options: DemoOptions, free_port: Callable[[], int] | None = None) -> list[NodePlan]:
    """The nodes to start, or :class:`ConfigError` when the options cannot work.

    With ``base_port`` 0, data and admin ports are left to the kernel, but a voter's Raft
    address must be known before any voter starts (every voter lists all of them), so voters
    get a Raft port from ``free_port`` (default: one the kernel hands out and the demo releases).
    """
    check(options)
    n, base = options.nodes, options.base_port
    voters = min(VOTERS, n)
    if base:
        return [
            NodePlan(
                i,
                base + 2 * i,
                base + ADMIN_OFFSET + i,
                base + 2 * i + 1 if i < voters else None,
                base + RESP_OFFSET + i,
            )
            for i in range(n)
        ]
    pick = free_port or (lambda: ports.free_port(HOST))
    raft_ports: list[int] = []
    while len(raft_ports) < voters:
        port = pick()
        if port not in raft_ports:
            raft_ports.append(port)
    return [NodePlan(i, 0, 0, raft_ports[i] if i < voters else None) for i in range(n)]


def node_args(
    node: NodePlan,
    data_dir: Path,
    peers: Sequence[NodePlan],
    password: Path,
    seed: str | None,
    tls: Path | None = None,
) -> list[str]:
    """The ``python -m meshcache start`` command line of ``node`` (with TLS under the CA and
    node certificate in ``tls``, when given)."""
    args = [
        sys.executable,
        "-m",
        "meshcache",
        "start",
        "--host",
        HOST,
        "--port",
        str(node.data_port),
        "--admin-port",
        str(node.admin_port),
        "--resp-port",
        str(node.resp_port),
        "--data-dir",
        str(data_dir),
        "--profile",
        "local",
        "--log-format",
        "json",
    ]
    if node.raft_port is not None:
        raft_peers = ",".join(f"{HOST}:{p.raft_port}" for p in peers if p.raft_port is not None)
        args += ["--raft-port", str(node.raft_port), "--raft-peers", raft_peers]
        args += ["--raft-password-file", str(password)]
    if seed is not None:
        args += ["--join", seed]
    if tls is not None:
        args += ["--tls-cert-file", str(tls / f"{TLS_NODE}.pem")]
        args += ["--tls-key-file", str(tls / f"{TLS_NODE}.key")]
        args += ["--tls-ca-file", str(tls / CA_CERT)]
    return args


TLS_DIR = "tls"
TLS_NODE = "node"
TLS_CLIENT = "client"


def cli_command(
    argv0: str | None = None,
    which: Callable[[str], str | None] = shutil.which,
) -> str:
    """How another terminal runs this installation's CLI, for the commands the demo prints:
    ``meshcache`` when that is what ``PATH`` finds (an activated venv, ``python -m``), else
    the script as the demo was started (``.venv/bin/meshcache`` when run as the README
    says)."""
    script = sys.argv[0] if argv0 is None else argv0
    if os.path.basename(script) != "meshcache" or os.sep not in script:
        return "meshcache"
    found = which("meshcache")
    if found is not None and os.path.realpath(found) == os.path.realpath(script):
        return "meshcache"
    return script


def make_certificates(directory: Path) -> Path:
    """A development CA, one node certificate for 127.0.0.1 (every demo node presents it) and
    a client certificate in ``directory``; existing ones (a reused ``--data-dir``) are kept."""
    from meshcache.security.tls import make_ca, make_client_cert, make_node_cert

    if not (directory / CA_CERT).exists():
        make_ca(directory, name="meshcache demo CA")
    if not (directory / f"{TLS_NODE}.pem").exists():
        make_node_cert(directory, TLS_NODE, hosts=[HOST], force=True)
    if not (directory / f"{TLS_CLIENT}.pem").exists():
        make_client_cert(directory, TLS_CLIENT, force=True)
    return directory


def write_password(path: Path) -> Path:
    """Create the shared Raft password file (mode 600) unless it exists; keep an existing one.

    An existing one is kept because the voters' Raft journals in a reused ``--data-dir`` were
    written under it.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        path.chmod(0o600)
        return path
    with os.fdopen(fd, "w") as f:
        f.write(secrets.token_urlsafe(32) + "\n")
    return path


class MeshFailed(MeshcacheError):
    """The mesh did not form: a node exited early or the ring did not fill in time."""


class NodeProcess:
    """A node's process, forked on the calling thread, awaited through a pidfd on Linux."""

    def __init__(self, popen: subprocess.Popen[bytes]) -> None:
        self.popen = popen
        self.pid = popen.pid
        try:
            self._pidfd: int | None = os.pidfd_open(popen.pid)
        except (AttributeError, OSError):
            self._pidfd = None  # not Linux 5.3+: wait() polls
        self._watcher: trio.Event | None = None

    @classmethod
    def start(cls, args: Sequence[str], log: Any) -> NodeProcess:
        """Fork and exec ``args`` with output to ``log``, in a process group of its own (so
        Ctrl-C in the terminal reaches only the demo, which stops the nodes itself and can tell
        a node that died from one it stopped)."""
        popen = subprocess.Popen(
            list(args),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            process_group=0,
            preexec_fn=die_with_parent(),
        )
        return cls(popen)

    @property
    def returncode(self) -> int | None:
        """The exit code (negative: the signal that killed it), or None while it runs."""
        return self.popen.poll()

    async def wait(self) -> int:
        """Wait until the process exits; its return code. Any number of tasks may wait."""
        while (code := self.popen.poll()) is None:
            if self._watcher is not None:
                await self._watcher.wait()  # another task watches; look again when it stops
                continue
            self._watcher = trio.Event()
            try:
                if self._pidfd is None:
                    await trio.sleep(_POLL)
                else:
                    await trio.lowlevel.wait_readable(self._pidfd)
            finally:
                watcher, self._watcher = self._watcher, None
                watcher.set()
        return code

    def send_signal(self, signum: int) -> None:
        if self.popen.poll() is None:
            self.popen.send_signal(signum)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)

    def close(self) -> None:
        """Release the pidfd (once nothing waits on it)."""
        if self._pidfd is not None:
            trio.lowlevel.notify_closing(self._pidfd)
            os.close(self._pidfd)
            self._pidfd = None


def _failure_of(log: Path, start: int) -> str | None:
    """What a node that exited early said last about its failure in ``log`` (from ``start``)."""
    try:
        with log.open("rb") as f:
            f.seek(start)
            lines = f.read().decode("utf-8", "replace").splitlines()
    except OSError:
        return None
    for line in reversed(lines):
        try:
            event = json.loads(line)
        except ValueError:
            if line.strip():
                return line.strip()[:300]  # not a log event: a traceback's last line
            continue
        if isinstance(event, dict) and event.get("level") in ("error", "critical"):
            return str(event.get("error") or event.get("event"))[:300]
    return None


@dataclass(slots=True)
class DemoNode:
    """A started node process and, once it is ready, its addresses."""

    plan: NodePlan
    data_dir: Path
    process: NodeProcess
    log_start: int = 0  # where this run's lines start in the (appended) log
    node_id: str = ""
    data: str = ""
    admin: str = ""
    resp: str = ""
    stopping: bool = field(default=False)

    @property
    def log(self) -> Path:
        return self.data_dir / "node.log"

    def describe(self) -> str:
        where = self.data or f"pid {self.process.pid}"
        return f"node {self.plan.index} ({where})"

    def read_ready(self) -> bool:
        """True once the node wrote its ready file (for this pid); fills in its addresses."""
        try:
            info = json.loads((self.data_dir / READY_FILE).read_text())
        except (OSError, ValueError):
            return False
        if not isinstance(info, dict) or info.get("pid") != self.process.pid:
            return False  # a file left by an earlier run in the same --data-dir
        self.node_id, self.data, self.admin = str(info["node_id"]), info["data"], info["admin"]
        self.resp = str(info.get("resp", ""))
        return True


def _exit_status(returncode: int | None) -> str:
    if returncode is not None and returncode < 0:
        try:
            return f"was killed by {signal.Signals(-returncode).name}"
        except ValueError:
            return f"was killed by signal {-returncode}"
    return f"exited with code {returncode}"


class Demo:
    """The running demo: its nodes, where their files are, and where it reports."""

    def __init__(
        self, options: DemoOptions, root: Path, out: TextIO, *, temporary: bool = False
    ) -> None:
        self.options = options
        self.root = root
        self.out = out
        self.temporary = temporary  # root is the demo's own: removed unless keep_files
        self.keep_files = False
        self.nodes: list[DemoNode] = []
        self.stopping = False
        self.nursery: trio.Nursery | None = None  # where each node's log follower runs
        self.flaps: dict[str, int] = {kind: 0 for kind in REPORTED_EVENTS.values()}
        self._reported: set[tuple[str, str, str]] = set()  # member, kind, episode start
        self._alive_at: dict[str, list[str]] = {}  # member → timestamps it was seen alive
        self.database: PostgresServer | None = None  # --with-postgres
        self.tls: Path | None = None  # --tls: the CA and certificates

    def say(self, line: str) -> None:
        self.out.write(line + "\n")
        self.out.flush()

    async def spawn(self, node: NodePlan, plans: Sequence[NodePlan], seed: str | None) -> DemoNode:
        data_dir = self.root / f"node{node.index}"
        data_dir.mkdir(parents=True, exist_ok=True)
        (data_dir / READY_FILE).unlink(missing_ok=True)
        args = node_args(node, data_dir, plans, self.root / "raft.password", seed, self.tls)
        with open(data_dir / "node.log", "ab") as log:
            start = log.tell()
            # Forked here, on the demo's own thread: see the module doc (PR_SET_PDEATHSIG).
            process = NodeProcess.start(args, log)
        started = DemoNode(node, data_dir, process, start)
        self.nodes.append(started)
        if self.nursery is not None:
            self.nursery.start_soon(self.follow_log, started)
        return started

    def check_running(self) -> None:
        for node in self.nodes:
            code = node.process.returncode
            if code is not None:
                self.keep_files = True
                why = _failure_of(node.log, node.log_start)
                raise MeshFailed(
                    f"{node.describe()} {_exit_status(code)} before the mesh was ready"
                    f"{f': {why}' if why else ''}; its log: {node.log}"
                )

    def node_named(self, node_id: str) -> DemoNode | None:
        return next((n for n in self.nodes if n.node_id and n.node_id == node_id), None)

    async def follow_log(self, node: DemoNode) -> None:
        """Report the membership events of ``node``'s log (see :meth:`membership_event`)."""
        offset, partial = node.log_start, b""
        while True:
            try:
                with node.log.open("rb") as f:
                    f.seek(offset)
                    chunk = f.read()
            except OSError:
                chunk = b""
            offset += len(chunk)
            *lines, partial = (partial + chunk).split(b"\n")
            for line in lines:
                try:
                    event = json.loads(line)
                except ValueError:
                    continue
                if isinstance(event, dict):
                    self.membership_event(node, event)
            if node.process.returncode is not None:
                return
            await trio.sleep(_LOG_POLL)

    def membership_event(self, observer: DemoNode, event: dict[str, Any]) -> None:
        """Say that a member was suspected or declared dead; count it as a flap when that
        member's process runs.

        Every node logs the news, so each kind is said once per *episode* of a member: the
        time from one ``alive``/``joined`` event about it (by any node, by log timestamp) to
        the next.
        """
        name, when = str(event.get("member")), str(event.get("timestamp", ""))
        if event.get("event") in BACK_EVENTS:
            bisect.insort(self._alive_at.setdefault(name, []), when)
            return
        kind = REPORTED_EVENTS.get(str(event.get("event")))
        if kind is None or self.stopping:
            return
        alive_at = self._alive_at.get(name, [])
        back = bisect.bisect_left(alive_at, when)
        episode = alive_at[back - 1] if back else ""
        if (name, kind, episode) in self._reported:
            return
        self._reported.add((name, kind, episode))
        target = self.node_named(name)
        who = target.describe() if target is not None else name
        line = f"membership: {who} {kind} by node {observer.plan.index}"
        if target is not None and target.process.returncode is None:
            self.flaps[kind] += 1
            line += " while its process runs (a flap)"
        self.say(line)

    def flap_summary(self) -> str:
        total = sum(self.flaps.values())
        if not total:
            return "membership: no flaps (no running node was suspected or declared dead)"
        counts = ", ".join(
            f"{kind} {n} {'time' if n == 1 else 'times'}" for kind, n in self.flaps.items()
        )
        return (
            f"membership: {total} {'flap' if total == 1 else 'flaps'} of running nodes ({counts})"
        )

    async def wait_ready(self, node: DemoNode) -> None:
        while not node.read_ready():
            self.check_running()
            await trio.sleep(_POLL)

    async def wait_ring(self) -> int:
        """Poll RING on every node until each holds the same ring version listing every node
        as ``active``; that version.

        Listing every node on one node is not enough: joiners are still ``joining`` and other
        nodes may route by an older ring, so a write through one node could be read through
        another before it has reached the owner that node reads from.
        """
        from meshcache.client.trio_client import TrioClient

        wanted = {node.node_id for node in self.nodes}
        async with AsyncExitStack() as stack:
            clients = [
                await stack.enter_async_context(
                    TrioClient(
                        node.data,
                        timeout=2.0,
                        connect_timeout=2.0,
                        smart=False,
                        ca_file=None if self.tls is None else self.tls / CA_CERT,
                    )
                )
                for node in self.nodes
            ]
            while True:
                self.check_running()
                versions: set[int] = set()
                for client in clients:
                    try:
                        ring: dict[str, Any] = await client.ring()
                    except MeshcacheError:
                        ring = {}
                    members = ring.get("members", [])
                    active = {
                        str(m.get("node_id")) for m in members if m.get("state") == RingState.ACTIVE
                    }
                    if active != wanted or len(members) != len(wanted):
                        break
                    versions.add(int(ring.get("version", 0)))
                else:
                    if len(versions) == 1:
                        return versions.pop()
                await trio.sleep(_POLL)

    async def start(self) -> int:
        """Start every node and wait until the ring lists them all; the ring version."""
        plans = plan(self.options)
        write_password(self.root / "raft.password")
        if self.options.tls:
            self.tls = make_certificates(self.root / TLS_DIR)
        if self.options.with_postgres:
            self.start_database()
        first = await self.spawn(plans[0], plans, None)
        await self.wait_ready(first)
        for node in plans[1:]:
            await self.spawn(node, plans, first.data)
        for started in self.nodes[1:]:
            await self.wait_ready(started)
        version = await self.wait_ring()
        if self.database is not None:
            await self.set_up_loader()
        return version

    def start_database(self) -> None:
        """A throwaway PostgreSQL whose DSN every node gets as its source ``pg``.

        Started on this thread, as the nodes are: it dies with the thread that started it."""
        from meshcache.testing.postgres import PostgresError, PostgresServer

        try:
            self.database = PostgresServer().start()
        except PostgresError as exc:
            raise MeshFailed(f"--with-postgres: {exc}") from None
        os.environ["MESHCACHE_SOURCE_PG_DSN"] = self.database.dsn

    async def set_up_loader(self) -> None:
        """The sample table with its NOTIFY trigger, and the namespace that reads it."""
        from meshcache.node.loader.sql import trigger_sql
        from meshcache.node.net.oneshot import call_once

        db = self.database
        assert db is not None
        sql = DEMO_TABLE_SQL + trigger_sql(DEMO_CHANNEL, "items", "id")
        await trio.to_thread.run_sync(db.psql, sql)
        address = parse_address(self.nodes[0].data, default_port=None)
        context = None
        if self.tls is not None:
            from meshcache.client.tlsconf import client_context

            context = client_context(self.tls / CA_CERT)
        await call_once(
            address,
            "NS_SET",
            [DEMO_NAMESPACE, {"loader": DEMO_LOADER}],
            timeout=30,
            tls=context,
        )

    def print_ready(self, version: int) -> None:
        for node in self.nodes:
            role = "voter" if node.plan.voter else "member"
            self.say(
                f"node {node.plan.index}  data {node.data}  admin http://{node.admin}  {role}"
                f"  pid {node.process.pid}  resp {node.resp}  log {node.log}"
            )
        self.say(f"ready: {len(self.nodes)} nodes, ring version {version}, files in {self.root}")
        first, last = self.nodes[0], self.nodes[-1]
        port0 = parse_address(first.data, default_port=None).port
        port_n = parse_address(last.data, default_port=None).port
        resp_n = parse_address(last.resp, default_port=None).port
        self.say("try, from another terminal:")
        cli = cli_command()
        tls = redis_tls = ""
        if self.tls is not None:
            ca = self.tls / CA_CERT
            tls = f" --tls --cacert {ca}"
            redis_tls = f" --tls --cacert {ca}"
            self.say(
                f"TLS: every data, RESP and peer connection; CA {ca}, client certificate "
                f"{self.tls / TLS_CLIENT}.pem and key {self.tls / TLS_CLIENT}.key"
            )
        for example in (
            f"{cli} set hello world --port {port0}{tls}",
            f"{cli} get hello --port {port_n}{tls}",
            f"{cli} members --port {port0}{tls}",
            f"{cli} ring --port {port0}{tls}",
            f"{cli} leave --port {port_n}{tls}",
            f"redis-cli -p {resp_n}{redis_tls} get hello    # any Redis client, on a RESP port",
            f"curl -s http://{first.admin}/metrics | grep meshcache_requests",
        ):
            self.say(f"  {example}")
        if self.tls is not None:
            ca = self.tls / CA_CERT
            self.say(f"  python: meshcache.Client('{HOST}:{port0}', ca_file='{ca}')")
            self.say(f"  redis-py: redis.from_url('rediss://{HOST}:{resp_n}', ssl_ca_certs='{ca}')")
        if self.database is not None:
            dsn = self.database.dsn
            node_1 = self.nodes[min(1, len(self.nodes) - 1)]
            port_1 = parse_address(node_1.data, default_port=None).port
            self.say(f"PostgreSQL: {dsn} (table items, namespace {DEMO_NAMESPACE} reads it):")
            get_7 = f"{cli} get 7 -n {DEMO_NAMESPACE}"
            for example in (
                f"{get_7} --port {port0}{tls}    # loaded from PostgreSQL",
                f"psql '{dsn}' -c \"UPDATE items SET v = 'changed' WHERE id = '7'\"",
                f"{get_7} --port {port_1}{tls}    # every node: changed",
                f"{cli} info --port {port0}{tls} | grep loader",
            ):
                self.say(f"  {example}")
        self.say("Ctrl-C stops every node.")

    async def watch(self, node: DemoNode) -> None:
        """Report ``node`` if it exits while the demo runs; the others keep running."""
        await node.process.wait()
        if not self.stopping:
            alive = sum(n.process.returncode is None for n in self.nodes)
            self.say(
                f"{node.describe()} {_exit_status(node.process.returncode)};"
                f" {alive} of {len(self.nodes)} nodes keep running; its log: {node.log}"
            )

    async def stop(self) -> None:
        """SIGTERM every node, wait ``stop_timeout``, then SIGKILL what is left; reap all."""
        self.stopping = True
        with trio.CancelScope(shield=True):
            for node in self.nodes:
                if node.process.returncode is None:
                    node.process.send_signal(signal.SIGTERM)
            with trio.move_on_after(self.options.stop_timeout):
                for node in self.nodes:
                    await node.process.wait()
            for node in self.nodes:
                if node.process.returncode is None:
                    self.say(f"{node.describe()} did not stop in time; killing it")
                    node.process.kill()
                    await node.process.wait()
                node.process.close()
            if self.database is not None:
                self.database.stop()


async def _run(demo: Demo) -> int:
    status = 0
    ready = False
    try:
        with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            async with trio.open_nursery() as nursery:
                demo.nursery = nursery

                async def until_signal() -> None:
                    async for _ in signals:
                        demo.stopping = True
                        nursery.cancel_scope.cancel()
                        return

                nursery.start_soon(until_signal)
                try:
                    with trio.fail_after(demo.options.start_timeout):
                        version = await demo.start()
                except trio.TooSlowError:
                    demo.keep_files = True
                    timeout = demo.options.start_timeout
                    raise MeshFailed(
                        f"the ring did not list all {demo.options.nodes} nodes as active within"
                        f" {timeout:g} s; logs in {demo.root}/node*/node.log"
                    ) from None
                demo.print_ready(version)
                ready = True
                for node in demo.nodes:
                    nursery.start_soon(demo.watch, node)
    except* MeshFailed as group:
        kept = f" (the demo's files stay in {demo.root})" if demo.temporary else ""
        for exc in group.exceptions:
            sys.stderr.write(f"meshcache demo: {exc}{kept}\n")
        status = 1
    finally:
        await demo.stop()
    if ready:
        demo.say(demo.flap_summary())
    return status


def run(options: DemoOptions, out: TextIO | None = None) -> int:
    """Run the demo until SIGINT or SIGTERM; the exit code (see the module doc).

    Raises:
        ConfigError: the options cannot work (before anything is started).
    """
    check(options)
    if options.data_dir is not None:
        try:
            options.data_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigError(
                f"--data-dir: cannot create {options.data_dir}: {exc.strerror}"
            ) from None
        return trio.run(_run, Demo(options, options.data_dir.resolve(), out or sys.stdout))
    root = Path(tempfile.mkdtemp(prefix="meshcache-demo-"))
    demo = Demo(options, root, out or sys.stdout, temporary=True)
    reaper = start_reaper(root)  # removes the files even when the demo is killed
    assert reaper.stdin is not None
    try:
        return trio.run(_run, demo)
    finally:
        with reaper.stdin:
            if demo.keep_files:  # a failed start keeps the logs its message points to
                reaper.stdin.write(KEEP)
            else:
                shutil.rmtree(root, ignore_errors=True)
        reaper.wait()


__all__ = [
    "ADMIN_OFFSET",
    "RESP_OFFSET",
    "DemoOptions",
    "MeshFailed",
    "NodePlan",
    "NodeProcess",
    "check",
    "cli_command",
    "node_args",
    "plan",
    "run",
    "write_password",
]
