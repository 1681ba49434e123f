"""Starting and stopping the servers under test on free loopback ports.

:func:`redis_server` and :func:`meshcache_node` are context managers: the process is started,
polled until it answers PING (with a deadline), yielded as a :class:`ServerProcess`, and stopped
(SIGTERM, then SIGKILL) on the way out — also on errors and Ctrl-C. When the bench itself is
killed (SIGKILL included) the server gets SIGTERM from the kernel (``PR_SET_PDEATHSIG``) and a
reaper removes its temporary directory (``meshcache/reaper.py``).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from meshcache.reaper import die_with_parent, temporary_directory
from meshcache.testing.ports import free_port
from tools.bench.preload import request, wait_until_ready
from tools.bench.protocols import MeshcacheProtocol, Protocol, RedisProtocol

HOST = "127.0.0.1"
REPO_ROOT = Path(__file__).resolve().parents[2]


class ServerStartError(Exception):
    """The server could not be started or did not become ready; the message has its log tail."""


@dataclass(slots=True)
class ServerProcess:
    """A running server: its process, address and protocol."""

    name: str
    proc: subprocess.Popen[bytes]
    host: str
    port: int
    protocol: Protocol
    log_path: Path

    def rss_bytes(self) -> int:
        """Resident set size of the server process (VmRSS from /proc), in bytes."""
        return rss_bytes(self.proc.pid)

    def check_alive(self) -> None:
        code = self.proc.poll()
        if code is not None:
            raise ServerStartError(
                f"{self.name} exited with status {code}; log tail:\n{self.log_tail()}"
            )

    def log_tail(self, lines: int = 30) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


def rss_bytes(pid: int) -> int:
    """VmRSS of process ``pid`` in bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


@contextlib.contextmanager
def _managed(
    name: str, argv: list[str], protocol: Protocol, port: int, workdir: Path, timeout: float
) -> Iterator[ServerProcess]:
    log_path = workdir / f"{name}.log"
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_ROOT), env.get("PYTHONPATH", "")) if p)
    with log_path.open("wb") as log:
        try:
            proc = subprocess.Popen(
                argv,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=workdir,
                env=env,
                preexec_fn=die_with_parent(),  # stops when the bench is killed
            )
        except OSError as exc:
            raise ServerStartError(f"cannot run {argv[0]}: {exc}") from None
    server = ServerProcess(name, proc, HOST, port, protocol, log_path)
    try:
        try:
            wait_until_ready(HOST, port, protocol, timeout=timeout, alive=server.check_alive)
        except TimeoutError as exc:
            raise ServerStartError(f"{exc}; log tail:\n{server.log_tail()}") from None
        yield server
    finally:
        server.stop()


@contextlib.contextmanager
def redis_server(
    *, executable: str = "redis-server", timeout: float = 20.0
) -> Iterator[ServerProcess]:
    """A fresh redis-server on a free loopback port: no persistence, default settings otherwise."""
    path = shutil.which(executable)
    if path is None:
        raise ServerStartError(f"{executable} is not installed (apt-get install redis-server)")
    with temporary_directory("bench-redis-") as tmp:
        port = free_port(HOST)
        argv = [
            path,
            "--bind", HOST,
            "--port", str(port),
            "--save", "",
            "--appendonly", "no",
            "--daemonize", "no",
            "--dir", str(tmp),
        ]  # fmt: skip
        with _managed("redis-server", argv, RedisProtocol(), port, Path(tmp), timeout) as srv:
            yield srv


@contextlib.contextmanager
def meshcache_node(
    *,
    python: str = sys.executable,
    extra_args: tuple[str, ...] = (),
    timeout: float = 30.0,
) -> Iterator[ServerProcess]:
    """A single meshcache node (``python -m meshcache start``) on free loopback ports."""
    with temporary_directory("bench-meshcache-") as tmp:
        port = free_port(HOST)
        admin = free_port(HOST)
        data = Path(tmp) / "data"
        data.mkdir()
        argv = [
            python, "-m", "meshcache", "start",
            "--port", str(port),
            "--admin-port", str(admin),
            "--data-dir", str(data),
            *extra_args,
        ]  # fmt: skip
        with _managed("meshcache", argv, MeshcacheProtocol(), port, Path(tmp), timeout) as srv:
            yield srv


def redis_info(server: ServerProcess, section: str = "memory") -> dict[str, str]:
    """``INFO <section>`` of a redis-server as a dict of strings."""
    reply = request(
        server.host, server.port, server.protocol, RedisProtocol.command(b"INFO", section.encode())
    )
    body = reply.split(b"\r\n", 1)[1].decode()
    out: dict[str, str] = {}
    for line in body.splitlines():
        if ":" in line and not line.startswith("#"):
            name, _, value = line.partition(":")
            out[name] = value
    return out
