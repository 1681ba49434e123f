"""Linux network namespaces for the chaos harness: a private network per run, and its cleanup.

Layout of one run (``rid``: six hex digits, fresh per run)::

    mcchaos-<rid>-hub    bridge br0 at 10.77.0.1/24: the harness's own door (observer, checkers)
    mcchaos-<rid>-n0     eth0 10.77.0.11/24, a node      (veth mc<rid>h0 on br0)
    mcchaos-<rid>-n1     eth0 10.77.0.12/24, a node      (veth mc<rid>h1 on br0)
    mcchaos-<rid>-c0     eth0 10.77.0.101/24, a client   (veth mc<rid>h50 on br0)

Every veth pair is created directly between the hub and the endpoint's namespace, so nothing
ever appears in the host's own namespace, and a pair vanishes with either of its namespaces.
Faults are nftables rules in the hub (``bridge`` family, ``forward`` hook): they see traffic
between endpoints, never the hub's own, so the harness always reaches every node.

Names: every name of a run carries its ``rid``, and :func:`claim_run` draws one that nothing on
the machine uses and takes its lock before anything is created, so runs started at the same
time (a soak and tests, two engineers' tests) never share a namespace, link, directory or
nftables table (the table lives in the run's own hub namespace). Addresses repeat from run to
run, but only inside each run's own namespaces.

Cleanup: :func:`cleanup_run` kills every process inside a run's namespaces, deletes its
namespaces (and with them its veths, bridge and nftables table), any stray link named for it,
its temporary directory and its lock file; it is idempotent. A live run holds an exclusive
``flock`` on ``/run/meshcache-chaos/<rid>.lock``; :func:`sweep_stale` cleans up every run whose
lock nobody holds (its owner died), so a crashed run is removed by the next one; it holds the
dead run's lock while it does (:func:`reap`), so the id cannot be claimed meanwhile. A reaper
process (:func:`spawn_reaper`, in its own session) waits for its parent to close a pipe, or to
die, and then reaps the run: a run killed with SIGKILL leaves nothing behind either.

Only the standard library (and ``meshcache.errors``) is imported here: the reaper imports this
module and nothing else.
"""

from __future__ import annotations

import ctypes
import fcntl
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from meshcache.errors import MeshcacheError

#: Names of a run's namespaces start with this, then ``-<rid>-``.
PREFIX = "mcchaos"
#: Names of a run's links (veths) start with this, then the rid (15 bytes is the kernel's limit).
LINK_PREFIX = "mc"
LOCK_DIR = Path("/run/meshcache-chaos")
SUBNET = "10.77.0"
HUB_ADDRESS = f"{SUBNET}.1"
BRIDGE = "br0"
#: The nftables table (family ``bridge``) of a run's faults, in its hub namespace.
NFT_TABLE = "mcchaos"

_RID = re.compile(r"^[0-9a-f]{6}$")
_NETNS = re.compile(rf"^{PREFIX}-([0-9a-f]{{6}})-[a-z0-9]+$")
_LINK = re.compile(rf"^{LINK_PREFIX}([0-9a-f]{{6}})[hn][0-9]+$")
_TMP = re.compile(rf"^{PREFIX}-([0-9a-f]{{6}})$")
_CLONE_NEWNET = 0x40000000
_CAP_NET_ADMIN = 12
_CAP_SYS_ADMIN = 21


class ChaosError(MeshcacheError):
    """A command of the harness failed; the message holds the command and its stderr."""


class ChaosUnavailable(ChaosError):
    """This machine cannot run the chaos harness; the message says what is missing."""


def missing_privileges(*, faketime: bool = False) -> str | None:
    """What keeps the harness from running here, as one sentence, or None when nothing does.

    Needs root (or CAP_SYS_ADMIN and CAP_NET_ADMIN), ``ip`` (iproute2) and ``nft`` (nftables);
    with ``faketime``, also Debian's ``faketime`` (clock skew).
    """
    if not sys.platform.startswith("linux"):
        return "the chaos harness needs Linux network namespaces"
    caps = _effective_caps()
    needed = (1 << _CAP_SYS_ADMIN) | (1 << _CAP_NET_ADMIN)
    if caps & needed != needed:
        return (
            "the chaos harness needs root (CAP_SYS_ADMIN and CAP_NET_ADMIN) to create network "
            f"namespaces, veths and nftables rules; running as uid {os.geteuid()}"
        )
    tools = [("ip", "iproute2"), ("nft", "nftables")]
    if faketime:
        tools.append(("faketime", "faketime"))
    for tool, package in tools:
        if shutil.which(tool) is None:
            return f"the chaos harness needs {tool!r} (Debian package {package}) on PATH"
    return None


def require_privileges(*, faketime: bool = False) -> None:
    """Raise :class:`ChaosUnavailable` unless :func:`missing_privileges` finds nothing."""
    problem = missing_privileges(faketime=faketime)
    if problem is not None:
        raise ChaosUnavailable(problem)


def _effective_caps() -> int:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("CapEff:"):
                return int(line.split()[1], 16)
    except (OSError, ValueError):
        pass
    return 0


def run(
    cmd: Sequence[str], *, input: str | None = None, check: bool = True, timeout: float = 30.0
) -> subprocess.CompletedProcess[str]:
    """Run one command to completion; :class:`ChaosError` with its stderr when it fails."""
    try:
        done = subprocess.run(
            list(cmd), input=input, capture_output=True, text=True, timeout=timeout, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ChaosError(f"{' '.join(cmd)}: {exc}") from None
    if check and done.returncode != 0:
        raise ChaosError(f"{' '.join(cmd)}: exit {done.returncode}: {done.stderr.strip()}")
    return done


_libc: ctypes.CDLL | None = None


def _setns(fd: int) -> None:
    global _libc
    if _libc is None:
        _libc = ctypes.CDLL(None, use_errno=True)
    if _libc.setns(fd, _CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


@contextmanager
def entered(netns: str) -> Iterator[None]:
    """Run the body with the calling *thread* in network namespace ``netns``.

    Sockets created inside stay in that namespace for their whole life, so a connection opened
    here can be used anywhere afterwards. Other threads are not affected. The thread returns to
    its own namespace on exit, also when the body raises.
    """
    own = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    try:
        target = os.open(f"/run/netns/{netns}", os.O_RDONLY)
        try:
            _setns(target)
        finally:
            os.close(target)
        try:
            yield
        finally:
            _setns(own)
    finally:
        os.close(own)


def join(netns: str) -> None:
    """Move the calling process into network namespace ``netns`` for good: for a child between
    fork and exec (a ``preexec_fn``), so that what it runs lives in that namespace."""
    target = os.open(f"/run/netns/{netns}", os.O_RDONLY)
    try:
        _setns(target)
    finally:
        os.close(target)


def new_run_id() -> str:
    """A fresh run id: six hex digits (links are named ``mc<rid>h<i>``, within 15 bytes)."""
    return secrets.token_hex(3)


def netns_name(rid: str, endpoint: str) -> str:
    return f"{PREFIX}-{rid}-{endpoint}"


def temp_root(rid: str) -> Path:
    """The run's temporary directory (node data dirs, worker files); removed by cleanup."""
    return Path(tempfile.gettempdir()) / f"{PREFIX}-{rid}"


class RunLock:
    """The exclusive ``flock`` that marks run ``rid`` as alive (released when the process dies).

    Raises:
        ChaosError: another process holds it (a live run, or a sweeper cleaning that id up), or
            a sweeper removed the file between its creation and the lock.
    """

    def __init__(self, rid: str) -> None:
        self.rid = rid
        self.path = LOCK_DIR / f"{rid}.lock"
        LOCK_DIR.mkdir(parents=True, exist_ok=True)
        fd = _lock_file(self.path)
        if fd is None:
            raise ChaosError(f"run {rid} is already locked")
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd: int | None = fd

    def release(self) -> None:
        """Remove the lock file and drop the lock (idempotent)."""
        if self._fd is not None:
            self.path.unlink(missing_ok=True)
            os.close(self._fd)
            self._fd = None


def _lock_file(path: Path, *, create: bool = True) -> int | None:
    """Create (or open) ``path`` and take its exclusive ``flock``; the descriptor, or None when
    another process holds it (or, without ``create``, when there is no such file). A lock
    taken on a file that another process unlinked meanwhile (a sweeper removes a dead run's
    lock file while it holds it) is not a lock on ``path``: then None too."""
    try:
        fd = os.open(path, os.O_RDWR | os.O_CLOEXEC | (os.O_CREAT if create else 0), 0o600)
    except FileNotFoundError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        held, named = os.fstat(fd), os.stat(path)
    except OSError:  # held elsewhere, or the file is gone
        os.close(fd)
        return None
    if (held.st_dev, held.st_ino) != (named.st_dev, named.st_ino):
        os.close(fd)
        return None
    return fd


def claim_run(tries: int = 32) -> tuple[str, RunLock]:
    """A fresh run id that nothing on this machine uses (no namespace, link, directory or lock
    file of that id, live or left over), with its lock held: two runs started at once, or a
    run and a sweeper, never share one.

    Raises:
        ChaosError: no free id was found in ``tries`` draws.
    """
    LOCK_DIR.mkdir(parents=True, exist_ok=True)
    for _ in range(tries):
        rid = new_run_id()
        if rid in leftover_runs():
            continue
        try:
            return rid, RunLock(rid)
        except ChaosError:
            continue
    raise ChaosError(f"no free run id in {tries} draws")


def reap(rid: str, *, wait: float = 0.0) -> list[str] | None:
    """Clean up run ``rid`` (:func:`cleanup_run`) unless it is alive; what was removed, or None
    when a live process holds the run's lock. When the run left a lock file, it is held all
    the while (so that nobody claims the id while its leftovers are removed) and removed last;
    none is created for a run that has none (:func:`claim_run` never draws an id that has
    leftovers).

    ``wait``: seconds to go on trying for a lock that is held. The reaper, woken by its owner's
    death, passes some: a dying process closes its descriptors one by one, so the pipe that
    wakes the reaper may close before the lock is released."""
    if not _RID.match(rid):
        raise ValueError(f"not a run id: {rid!r}")
    path = LOCK_DIR / f"{rid}.lock"
    deadline = time.monotonic() + wait
    fd = _lock_file(path, create=False)
    while fd is None and path.exists() and time.monotonic() < deadline:
        time.sleep(0.05)  # the poll interval; the deadline bounds the wait
        fd = _lock_file(path, create=False)
    if fd is None:
        if path.exists():
            return None  # a live run holds it (or a sweeper is at it)
        return cleanup_run(rid, locked=True)
    try:
        removed = cleanup_run(rid, locked=True)
        path.unlink(missing_ok=True)
        removed.append(f"lock {path}")
        return removed
    finally:
        os.close(fd)


def run_is_alive(rid: str) -> bool:
    """True while some process holds run ``rid``'s lock."""
    try:
        fd = os.open(LOCK_DIR / f"{rid}.lock", os.O_RDWR | os.O_CLOEXEC)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return True
    finally:
        os.close(fd)
    return False


def list_netns() -> list[str]:
    """Names of every network namespace ``ip netns`` knows."""
    out = run(["ip", "netns", "list"], check=False).stdout
    return [line.split()[0] for line in out.splitlines() if line.strip()]


def _root_links() -> list[str]:
    out = run(["ip", "-o", "link", "show"], check=False).stdout
    names = []
    for line in out.splitlines():
        parts = line.split(":", 2)
        if len(parts) >= 2:
            names.append(parts[1].strip().split("@")[0])
    return names


def netns_pids(netns: str) -> list[int]:
    out = run(["ip", "netns", "pids", netns], check=False).stdout
    return [int(word) for word in out.split() if word.isdigit()]


def kill_inside(netns: str, timeout: float = 10.0) -> None:
    """SIGKILL every process in ``netns`` (resuming stopped ones), until none is left."""
    deadline = time.monotonic() + timeout
    while pids := netns_pids(netns):
        for pid in pids:
            for sig in (signal.SIGKILL, signal.SIGCONT):
                try:
                    os.kill(pid, sig)
                except ProcessLookupError:
                    break
        if time.monotonic() > deadline:
            raise ChaosError(f"processes {pids} in {netns} survive SIGKILL")
        time.sleep(0.02)  # the killed processes leave the namespace as they exit


def cleanup_run(rid: str, *, locked: bool = False) -> list[str]:
    """Remove everything of run ``rid``: processes, namespaces, links, nftables table, temp dir,
    and its lock file when nobody holds it. Idempotent; what it removed, described. The run's
    owner calls it; anyone else calls :func:`reap`, which holds the lock while it runs this
    (``locked``: the caller holds the lock, leave the file to it)."""
    if not _RID.match(rid):
        raise ValueError(f"not a run id: {rid!r}")
    removed: list[str] = []
    spaces = [name for name in list_netns() if name.startswith(f"{PREFIX}-{rid}-")]
    for name in spaces:
        kill_inside(name)
    hub = netns_name(rid, "hub")
    if hub in spaces:
        run(
            ["ip", "netns", "exec", hub, "nft", "delete", "table", "bridge", NFT_TABLE], check=False
        )
    for name in spaces:
        run(["ip", "netns", "delete", name], check=False)
        removed.append(f"netns {name}")
    for link in _root_links():
        if link.startswith(f"{LINK_PREFIX}{rid}"):
            run(["ip", "link", "delete", link], check=False)
            removed.append(f"link {link}")
    root = temp_root(rid)
    if root.exists():
        shutil.rmtree(root, ignore_errors=True)
        removed.append(f"dir {root}")
    lock = LOCK_DIR / f"{rid}.lock"
    if not locked and lock.exists() and not run_is_alive(rid):
        lock.unlink(missing_ok=True)
        removed.append(f"lock {lock}")
    return removed


def leftover_runs() -> set[str]:
    """Run ids that have something on this machine: namespaces, links, temp dirs, lock files."""
    rids: set[str] = set()
    for name in list_netns():
        if m := _NETNS.match(name):
            rids.add(m.group(1))
    for link in _root_links():
        if m := _LINK.match(link):
            rids.add(m.group(1))
    for path in Path(tempfile.gettempdir()).glob(f"{PREFIX}-*"):
        if m := _TMP.match(path.name):
            rids.add(m.group(1))
    if LOCK_DIR.is_dir():
        for path in LOCK_DIR.glob("*.lock"):
            if _RID.match(path.stem):
                rids.add(path.stem)
    return rids


def sweep_stale() -> list[str]:
    """Clean up every run whose owner is gone (nobody holds its lock), each under its lock
    (:func:`reap`); what was removed."""
    removed: list[str] = []
    for rid in sorted(leftover_runs()):
        removed += reap(rid) or []
    return removed


@dataclass(frozen=True, slots=True)
class Endpoint:
    """One namespace on the run's bridge: a node (``n<i>``) or a client (``c<i>``)."""

    name: str
    netns: str
    address: str
    link: str  # its veth's name on the hub side


class Network:
    """The hub namespace with its bridge, and one namespace per endpoint, for run ``rid``."""

    def __init__(self, rid: str) -> None:
        self.rid = rid
        self.hub = netns_name(rid, "hub")
        self.endpoints: dict[str, Endpoint] = {}

    def create(self) -> None:
        """Create the hub namespace and its bridge (``HUB_ADDRESS``/24)."""
        run(["ip", "netns", "add", self.hub])
        for cmd in (
            ["link", "set", "lo", "up"],
            ["link", "add", BRIDGE, "type", "bridge"],
            ["addr", "add", f"{HUB_ADDRESS}/24", "dev", BRIDGE],
            ["link", "set", BRIDGE, "up"],
        ):
            run(["ip", "-n", self.hub, *cmd])

    def add_endpoint(self, name: str, host: int, port_index: int) -> Endpoint:
        """A namespace for ``name`` at ``SUBNET.host``, its veth on the bridge as port
        ``port_index`` of the run."""
        netns = netns_name(self.rid, name)
        link = f"{LINK_PREFIX}{self.rid}h{port_index}"
        address = f"{SUBNET}.{host}"
        run(["ip", "netns", "add", netns])
        run(
            [
                *("ip", "link", "add", link, "netns", self.hub, "type", "veth"),
                *("peer", "name", "eth0", "netns", netns),
            ]
        )
        run(["ip", "-n", self.hub, "link", "set", link, "master", BRIDGE, "up"])
        for cmd in (
            ["link", "set", "lo", "up"],
            ["addr", "add", f"{address}/24", "dev", "eth0"],
            ["link", "set", "eth0", "up"],
        ):
            run(["ip", "-n", netns, *cmd])
        endpoint = Endpoint(name, netns, address, link)
        self.endpoints[name] = endpoint
        return endpoint

    def set_rules(self, script: str) -> None:
        """Replace the run's nftables table in the hub with ``script``, in one transaction."""
        run(["ip", "netns", "exec", self.hub, "nft", "-f", "-"], input=script)

    def set_rate(self, endpoint: str, rate: str | None) -> None:
        """Throttle both directions of ``endpoint``'s link to ``rate`` (tc ``tbf``, e.g.
        ``"1mbit"``), or lift the throttle with None. Queueing behind the rate is the only
        delay this kernel can add: it has no netem, fq or etf."""
        ep = self.endpoints[endpoint]
        for ns, dev in ((self.hub, ep.link), (ep.netns, "eth0")):
            run(["ip", "netns", "exec", ns, "tc", "qdisc", "del", "dev", dev, "root"], check=False)
            if rate is not None:
                run(
                    [
                        *("ip", "netns", "exec", ns, "tc", "qdisc", "add", "dev", dev, "root"),
                        *("tbf", "rate", rate, "burst", "16kb", "latency", "2s"),
                    ]
                )


def spawn_reaper(rid: str) -> subprocess.Popen[bytes]:
    """Start the reaper of run ``rid``: it waits until its stdin closes (the parent closed the
    pipe or died), then runs :func:`cleanup_run`. It lives in its own session, so signals to
    the parent's process group do not reach it."""
    return subprocess.Popen(
        [sys.executable, "-m", "meshcache.testing.chaos.reaper", rid],
        stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
        close_fds=True,
    )


__all__ = [
    "BRIDGE",
    "HUB_ADDRESS",
    "LOCK_DIR",
    "NFT_TABLE",
    "PREFIX",
    "SUBNET",
    "ChaosError",
    "ChaosUnavailable",
    "Endpoint",
    "Network",
    "RunLock",
    "claim_run",
    "cleanup_run",
    "entered",
    "join",
    "kill_inside",
    "leftover_runs",
    "list_netns",
    "missing_privileges",
    "netns_name",
    "new_run_id",
    "reap",
    "require_privileges",
    "run",
    "run_is_alive",
    "spawn_reaper",
    "sweep_stale",
    "temp_root",
]
