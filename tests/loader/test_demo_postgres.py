"""``meshcache demo --with-postgres`` as a user runs it: the printed commands work — a
read-through GET, an UPDATE in psql seen through another node — and Ctrl-C stops the nodes and
removes the throwaway server. The printed commands name the CLI as another terminal can run it."""

from __future__ import annotations

import re
import shlex
import signal
import socket
import subprocess
import sys

import pytest

from meshcache.demo import cli_command
from meshcache.testing.postgres import server_binaries
from tests.mesh.helpers import wait_for
from tests.mesh.test_demo import DemoRun, clean_env


def meshcache(command: str) -> str:
    args = shlex.split(command.split("#")[0])
    assert args[0] == "meshcache"
    done = subprocess.run(
        [sys.executable, "-m", "meshcache", *args[1:]],
        capture_output=True,
        text=True,
        env=clean_env(),
        timeout=30,
    )
    return done.stdout.strip()


def test_the_printed_commands_name_the_cli_as_another_terminal_runs_it() -> None:
    venv = ".venv/bin/meshcache"
    # Started as the README says, with the venv not on PATH: the same path.
    assert cli_command(venv, lambda _: None) == venv
    assert cli_command(venv, lambda _: "/usr/local/bin/meshcache") == venv
    # Found on PATH as this very script (an activated venv), or started with python -m.
    assert cli_command(venv, lambda _: venv) == "meshcache"
    assert cli_command("/src/meshcache/__main__.py", lambda _: None) == "meshcache"
    assert cli_command("meshcache", lambda _: None) == "meshcache"


@pytest.mark.slow
@pytest.mark.postgres
def test_the_demo_with_postgres_reads_through_and_sees_an_update(database: object) -> None:
    assert server_binaries() is not None  # the database fixture skipped otherwise
    demo = DemoRun("--nodes", "2", "--with-postgres")
    try:
        demo.wait_ready()
        wait_for(lambda: any("Ctrl-C" in line for line in demo.out), 10, "the examples")
        examples = [line.strip() for line in demo.out if line.startswith("  ")]
        gets = [e for e in examples if e.startswith("meshcache get 7 -n items")]
        update = next(e for e in examples if e.startswith("psql "))
        dsn = re.search(r"postgresql://\S+", update)
        assert dsn is not None and len(gets) == 2
        assert meshcache(gets[0]) == "item 7"
        subprocess.run(shlex.split(update), check=True, capture_output=True, timeout=30)
        wait_for(lambda: meshcache(gets[1]) == "changed", 10, "the update seen by node 1")
    finally:
        demo.proc.send_signal(signal.SIGINT)
        assert demo.proc.wait(timeout=30) == 0, demo.err
    port = int(re.sub(r".*:(\d+)/.*", r"\1", dsn.group(0)))
    with pytest.raises(OSError):  # the throwaway server is gone with the demo
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
