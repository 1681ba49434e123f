"""A Raft voter in a process of its own, driven over stdin/stdout, for tests and figures.

Run ``python -m meshcache.control._voter_main --self HOST:PORT [--peers A,B] --data-dir DIR
--password-file FILE``. It prints ``{"event": "ready"}`` once its Raft port is bound, then
answers one JSON request per stdin line with one JSON line on stdout, in order::

    {"op": "propose", "command": {...}, "timeout": 2}  → {"ok": true, "config": {...},
                                                          "elapsed": seconds inside propose}
    {"op": "status"}                                   → {"ok": true, "status": {...}}
    {"op": "config"}                                   → {"ok": true, "config": {...}}
    {"op": "wait_version", "version": 3, "timeout": 5} → {"ok": true, "config": {...}}
    {"op": "add_voter" | "remove_voter", "address": "h:p", "timeout": 5} → {"ok": true}

Failures answer ``{"ok": false, "error": "<class>", "code": "...", "message": "..."}``.
:class:`VoterProcess` starts and drives one such process. This is not a product interface:
the node wires :class:`~meshcache.control.bridge.ConfigPlane` itself.
"""

from __future__ import annotations

import argparse
import json
import os
import selectors
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TextIO

import trio

import meshcache
from meshcache.control.bridge import ConfigPlane
from meshcache.control.config import command_from_mapping
from meshcache.control.raft import RaftSettings
from meshcache.errors import CommandError, InvalidCommandError, MeshcacheError

# --- the voter process ---------------------------------------------------------------------


def _error(exc: BaseException) -> dict[str, Any]:
    if isinstance(exc, CommandError):
        code, message = str(exc.code), exc.message
    else:
        code, message = "", str(exc)
    return {"ok": False, "error": type(exc).__name__, "code": code, "message": message}


async def _handle(plane: ConfigPlane, request: dict[str, Any]) -> dict[str, Any]:
    op = request.get("op")
    timeout = float(request.get("timeout", 5.0))
    if op == "propose":
        command = command_from_mapping(request["command"])
        started = trio.current_time()
        config = await plane.propose(command, timeout=timeout)
        elapsed = trio.current_time() - started
        return {"ok": True, "config": config.to_mapping(), "elapsed": elapsed}
    if op == "status":
        return {"ok": True, "status": plane.status().to_mapping()}
    if op == "config":
        return {"ok": True, "config": plane.config.to_mapping()}
    if op == "wait_version":
        with trio.fail_after(timeout):
            config = await plane.wait_for_version(int(request["version"]))
        return {"ok": True, "config": config.to_mapping()}
    if op == "add_voter":
        await plane.add_voter(str(request["address"]), timeout=timeout)
        return {"ok": True}
    if op == "remove_voter":
        await plane.remove_voter(str(request["address"]), timeout=timeout)
        return {"ok": True}
    raise InvalidCommandError(message=f"unknown op {op!r}")


def _write(out: TextIO, message: dict[str, Any]) -> None:
    out.write(json.dumps(message) + "\n")
    out.flush()


async def _serve(settings: RaftSettings, out: TextIO) -> None:
    plane = ConfigPlane(settings)
    stdin = trio.lowlevel.FdStream(os.dup(0))
    async with trio.open_nursery() as nursery:
        await nursery.start(plane.run)
        _write(out, {"event": "ready"})
        buffer = b""
        while True:
            data = await stdin.receive_some()
            if not data:
                break
            buffer += data
            while b"\n" in buffer:
                line, buffer = buffer.split(b"\n", 1)
                try:
                    answer = await _handle(plane, json.loads(line))
                except (MeshcacheError, trio.TooSlowError, KeyError, ValueError) as exc:
                    answer = _error(exc)
                _write(out, answer)
        nursery.cancel_scope.cancel()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="meshcache.control._voter_main")
    parser.add_argument("--self", dest="self_address", required=True)
    parser.add_argument("--peers", default="")
    parser.add_argument("--data-dir", required=True, type=Path)
    parser.add_argument("--password-file", required=True, type=Path)
    args = parser.parse_args(argv)
    try:
        settings = RaftSettings(
            self_address=args.self_address,
            peers=tuple(p for p in args.peers.split(",") if p),
            password=args.password_file.read_text().strip(),
            data_dir=args.data_dir,
        )
        trio.run(_serve, settings, sys.stdout)
    except MeshcacheError as exc:
        _write(sys.stdout, {"event": "error", **_error(exc)})
        return 2
    return 0


# --- driving one from another process -------------------------------------------------------


class VoterProcess:
    """One voter process: start it, send it requests, kill it, restart it on the same files."""

    def __init__(
        self, address: str, peers: Sequence[str], data_dir: Path, password: str = "secret"
    ) -> None:
        self.address = address
        self.peers = tuple(peers)
        self.data_dir = Path(data_dir)
        self.password = password
        self._proc: subprocess.Popen[bytes] | None = None
        self._buffer = b""

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self, timeout: float = 15.0) -> None:
        """Start the process and wait for its ready line (or raise RuntimeError)."""
        self.launch()
        self.wait_ready(timeout)

    def launch(self) -> None:
        """Start the process without waiting (start several, then :meth:`wait_ready` each)."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        password_file = self.data_dir / "raft.password"
        password_file.write_text(self.password)
        env = dict(os.environ)
        package_root = str(Path(meshcache.__file__).resolve().parents[1])
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [package_root, env.get("PYTHONPATH")]))
        argv = [
            sys.executable,
            "-m",
            "meshcache.control._voter_main",
            "--self",
            self.address,
            "--peers",
            ",".join(self.peers),
            "--data-dir",
            str(self.data_dir),
            "--password-file",
            str(password_file),
        ]
        with (self.data_dir / "voter.log").open("ab") as log:
            self._proc = subprocess.Popen(
                argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log, env=env
            )
        self._buffer = b""

    def wait_ready(self, timeout: float = 15.0) -> None:
        """Wait for the ready line of a launched process (or raise RuntimeError)."""
        first = self._read_line(timeout)
        if first.get("event") != "ready":
            self.kill()
            raise RuntimeError(f"voter {self.address} did not start: {first}")

    def request(self, op: str, **fields: Any) -> dict[str, Any]:
        """Send one request and return its answer.

        A ``timeout`` field goes to the voter; the answer is awaited that long plus 10 s,
        then TimeoutError is raised.
        """
        proc = self._proc
        if proc is None or proc.stdin is None:
            raise RuntimeError(f"voter {self.address} is not running")
        proc.stdin.write(json.dumps({"op": op, **fields}).encode() + b"\n")
        proc.stdin.flush()
        return self._read_line(float(fields.get("timeout", 5.0)) + 10.0)

    def _read_line(self, timeout: float) -> dict[str, Any]:
        proc = self._proc
        assert proc is not None and proc.stdout is not None
        deadline = time.monotonic() + timeout
        fd = proc.stdout.fileno()
        with selectors.DefaultSelector() as selector:
            selector.register(fd, selectors.EVENT_READ)
            while b"\n" not in self._buffer:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"voter {self.address}: no answer in {timeout} s")
                if selector.select(left):
                    chunk = os.read(fd, 65536)
                    if not chunk:
                        raise RuntimeError(f"voter {self.address} exited ({proc.poll()})")
                    self._buffer += chunk
        line, self._buffer = self._buffer.split(b"\n", 1)
        answer: dict[str, Any] = json.loads(line)
        return answer

    def kill(self) -> None:
        """``kill -9`` the process and reap it."""
        if self._proc is not None:
            if self._proc.poll() is None:
                self._proc.send_signal(signal.SIGKILL)
            self._proc.wait()
            self._close_pipes()
            self._proc = None

    def stop(self, timeout: float = 10.0) -> None:
        """Close its stdin so it shuts down cleanly; kill it if it does not within ``timeout``."""
        proc = self._proc
        if proc is None:
            return
        if proc.stdin is not None:
            proc.stdin.close()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        self._close_pipes()
        self._proc = None

    def _close_pipes(self) -> None:
        proc = self._proc
        if proc is not None:
            for pipe in (proc.stdin, proc.stdout):
                if pipe is not None and not pipe.closed:
                    pipe.close()


if __name__ == "__main__":
    raise SystemExit(main())
