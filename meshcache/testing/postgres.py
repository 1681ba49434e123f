"""A throwaway PostgreSQL server for tests, tools and the demo: initdb + postgres in a temp dir.

:class:`PostgresServer` runs the server binaries (``initdb`` and ``postgres``, found on
``PATH`` or in ``/usr/local/bin`` and Debian's ``/usr/lib/postgresql/*/bin``) on a free
loopback port with trust authentication, in a directory it removes when it stops. Run as root,
both run as the ``postgres`` user (initdb refuses root). The server is started with a parent-death
signal and its directory has a reaper process (``meshcache/reaper.py``), so both go away with the
process that started it even when that process is killed. A caller that owns a directory and its
cleanup (the chaos harness: a server in a network namespace of its own) passes ``root``, the
address to listen on (``host``) and ``enter``, run in each server process before it gives up
root (e.g. joining that namespace); psql then talks to it over its Unix socket.

:func:`server_binaries` says whether the binaries exist; :func:`test_dsn` is the DSN tests use:
``MESHCACHE_TEST_PG_DSN`` when set, else None (start a server).
"""

from __future__ import annotations

import ctypes
import glob
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType

from meshcache.errors import MeshcacheError
from meshcache.reaper import start as start_reaper
from meshcache.testing.ports import free_port

#: The environment variable naming an existing server for the tests.
TEST_DSN_ENV = "MESHCACHE_TEST_PG_DSN"
_PR_SET_PDEATHSIG = 1
_SEARCH = ("/usr/local/bin", *sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True))


class PostgresError(MeshcacheError):
    """The server binaries are missing, or the server did not start in time."""


def server_binaries() -> tuple[str, str] | None:
    """Paths of ``initdb`` and ``postgres``, or None when they are not installed."""
    for where in (None, *_SEARCH):
        initdb = shutil.which("initdb", path=where)
        postgres = shutil.which("postgres", path=where)
        if initdb and postgres:
            return initdb, postgres
    return None


def test_dsn() -> str | None:
    """``MESHCACHE_TEST_PG_DSN`` when set and not empty."""
    return os.environ.get(TEST_DSN_ENV, "").strip() or None


def _demote(uid: int | None, gid: int | None, enter: Callable[[], None] | None = None) -> None:
    """In the child: run ``enter``, become the server's user, then die with the parent."""
    if enter is not None:
        enter()
    if gid is not None and uid is not None:
        os.setgroups([])
        os.setgid(gid)
        os.setuid(uid)
    # Set after the user change: a credential change clears the parent-death signal.
    ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGQUIT)


class PostgresServer:
    """One PostgreSQL server in a temp dir. Use as a context manager (or start/stop).

    Args:
        port: the TCP port (default: a free one).
        host: the address it listens on.
        root: a directory for its files, which :meth:`stop` removes; the caller removes it
            if this process dies first. Default: a temp dir with a reaper behind it.
        enter: called in each server process before it gives up root (``initdb``, ``postgres``).

    Attributes:
        dsn: ``postgresql://meshcache@HOST:PORT/meshcache`` once started.
        port: the TCP port it listens on.
    """

    user = "meshcache"
    database = "meshcache"

    def __init__(
        self,
        *,
        port: int | None = None,
        host: str = "127.0.0.1",
        root: Path | None = None,
        enter: Callable[[], None] | None = None,
    ) -> None:
        self.port = port or free_port()
        self.host = host
        self.root: Path | None = None
        self._given_root = root
        self._enter = enter
        self.proc: subprocess.Popen[bytes] | None = None
        self._ids: tuple[int | None, int | None] = (None, None)
        self._reaper: subprocess.Popen[bytes] | None = None

    @property
    def dsn(self) -> str:
        return f"postgresql://{self.user}@{self.host}:{self.port}/{self.database}"

    def start(self, timeout: float = 30.0) -> PostgresServer:
        """initdb, start the server, create the database; wait until it accepts connections.

        Raises:
            PostgresError: the binaries are missing or the server is not ready in ``timeout``.
        """
        binaries = server_binaries()
        if binaries is None:
            raise PostgresError("the PostgreSQL server binaries (initdb, postgres) are not found")
        initdb = binaries[0]
        if self._given_root is not None:
            self.root = self._given_root
            self.root.mkdir(parents=True, exist_ok=True)
        else:
            self.root = Path(tempfile.mkdtemp(prefix="meshcache-pg-"))
            self._reaper = start_reaper(self.root)  # removes it even when this process is killed
        if os.geteuid() == 0:
            account = pwd.getpwnam("postgres")
            self._ids = (account.pw_uid, account.pw_gid)
            os.chown(self.root, account.pw_uid, account.pw_gid)
        uid, gid = self._ids
        enter = self._enter
        data = self.root / "data"
        done = subprocess.run(
            [initdb, "-D", str(data), "-A", "trust", "-U", self.user, "-E", "UTF8", "--no-sync"],
            preexec_fn=lambda: _demote(uid, gid, enter),
            capture_output=True,
            timeout=timeout,
        )
        if done.returncode:
            self.stop()
            raise PostgresError(f"initdb failed: {done.stderr.decode(errors='replace')[-500:]}")
        if self.host != "127.0.0.1":  # initdb trusts loopback only; add the server's subnet
            with open(data / "pg_hba.conf", "a") as hba:
                hba.write("host all all samenet trust\n")
        self._launch(timeout)
        self.psql(f"CREATE DATABASE {self.database}", database="postgres")
        return self

    def _accepts(self) -> bool:
        try:
            self.psql("SELECT 1", database="postgres")
        except PostgresError:
            return False
        return True

    def psql(self, sql: str, *, database: str | None = None) -> str:
        """Run ``sql`` with psql over TCP; its output (unaligned, tuples only).

        Raises:
            PostgresError: psql failed (its message).
        """
        psql = shutil.which("psql") or shutil.which("psql", path=":".join(_SEARCH))
        if psql is None:
            raise PostgresError("psql is not installed")
        # A server on another address (another network namespace) is reached by its socket.
        host = "127.0.0.1" if self.host == "127.0.0.1" else str(self.root)
        done = subprocess.run(
            [
                psql,
                "-X",
                "-q",
                "-A",
                "-t",
                "-v",
                "ON_ERROR_STOP=1",
                "-h",
                host,
                "-p",
                str(self.port),
                "-U",
                self.user,
                "-d",
                database or self.database,
                "-c",
                sql,
            ],
            capture_output=True,
            timeout=30,
        )
        if done.returncode:
            raise PostgresError(done.stderr.decode(errors="replace").strip())
        return done.stdout.decode().strip()

    def stop(self) -> None:
        """Stop the server (fast shutdown) and remove its directory."""
        proc, self.proc = self.proc, None
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        root, self.root = self.root, None
        if root is not None:
            shutil.rmtree(root, ignore_errors=True)
        reaper, self._reaper = self._reaper, None
        if reaper is not None:
            assert reaper.stdin is not None
            reaper.stdin.close()
            reaper.wait()

    def pause(self) -> None:
        """Stop the server but keep its data, so :meth:`resume` brings it back."""
        proc, self.proc = self.proc, None
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            proc.wait(timeout=15)

    def resume(self, timeout: float = 30.0) -> None:
        """Start a paused server again on the same port and data."""
        self._launch(timeout)

    def _launch(self, timeout: float) -> None:
        binaries = server_binaries()
        assert binaries is not None and self.root is not None
        uid, gid = self._ids
        enter = self._enter
        log = open(self.root / "server.log", "ab")  # noqa: SIM115 - the server's whole life
        self.proc = subprocess.Popen(
            [
                binaries[1],
                "-D",
                str(self.root / "data"),
                "-p",
                str(self.port),
                "-k",
                str(self.root),
                "-c",
                f"listen_addresses={self.host}",
                "-c",
                "fsync=off",
                "-c",
                "max_connections=200",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            preexec_fn=lambda: _demote(uid, gid, enter),
        )
        log.close()
        deadline = time.monotonic() + timeout
        while not self._accepts():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                tail = (self.root / "server.log").read_text(errors="replace")[-800:]
                self.stop()
                raise PostgresError(f"PostgreSQL did not start: {tail}")
            time.sleep(0.05)  # the poll interval; the deadline bounds the wait

    def __enter__(self) -> PostgresServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


__all__ = ["TEST_DSN_ENV", "PostgresError", "PostgresServer", "server_binaries", "test_dsn"]
