"""The command line's side of security: `meshcache passwd`, protected mode at `meshcache start`,
and client commands with --user against a real node process."""

from __future__ import annotations

import base64
import io
import subprocess
import sys
from pathlib import Path

import pytest

from meshcache.cli import main
from meshcache.security.hashing import PasswordHash
from meshcache.testing.nodes import NodeProcess


def test_passwd_reads_the_environment_or_stdin_never_argv(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("MESHCACHE_PASSWORD", "from env")
    assert main(["passwd", "--cost", "1024"]) == 0
    printed = capsys.readouterr().out.strip()
    assert PasswordHash.parse(printed).verify("from env")
    monkeypatch.delenv("MESHCACHE_PASSWORD")
    monkeypatch.setattr(sys, "stdin", io.StringIO("piped in\n"))
    assert main(["passwd", "--cost", "1024"]) == 0
    assert PasswordHash.parse(capsys.readouterr().out.strip()).verify("piped in")
    monkeypatch.setattr(sys, "stdin", io.StringIO(""))
    assert main(["passwd"]) == 2
    assert "no password given" in capsys.readouterr().err
    assert main(["passwd", "hunter2"]) == 2  # a password on the command line is not accepted


def test_protected_mode_refuses_to_start_with_one_line(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "meshcache", "start", "--host", "10.255.0.1", "--port", "0"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1
    assert "users" in lines[0] and "--insecure" in lines[0] and "10.255.0.1" in lines[0]


def test_client_commands_authenticate_with_user_and_password(tmp_path: Path) -> None:
    key = tmp_path / "cluster.key"
    key.write_text(base64.b64encode(b"q" * 32).decode() + "\n")
    hashed = subprocess.run(
        [sys.executable, "-m", "meshcache", "passwd", "--cost", "1024"],
        input="s3cret\n",
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout.strip()
    config = tmp_path / "node.toml"
    config.write_text(
        f'[node]\ncluster_key_file = "{key}"\n\n[users.app]\npassword = "{hashed}"\n'
        'permissions = ["read", "write"]\n'
    )
    with NodeProcess(tmp_path / "n", "--config", str(config)) as node:
        port = str(node.data_address[1])

        def cli(*args: str, password: str | None = "s3cret") -> subprocess.CompletedProcess[str]:
            env = {"MESHCACHE_PASSWORD": password} if password is not None else {}
            return subprocess.run(
                [sys.executable, "-m", "meshcache", *args, "--port", port],
                capture_output=True,
                text=True,
                timeout=60,
                env={**node.env, **env},
                stdin=subprocess.DEVNULL,
            )

        assert cli("set", "k", "v", "--user", "app").returncode == 0
        got = cli("get", "k", "--user", "app")
        assert (got.returncode, got.stdout.strip()) == (0, "v")
        anonymous = cli("get", "k", password=None)
        assert anonymous.returncode == 4 and "NOAUTH" in anonymous.stderr
        wrong = cli("get", "k", "--user", "app", password="guess")
        assert wrong.returncode == 4 and "WRONGPASS" in wrong.stderr
        forbidden = cli("ns", "drop", "default", "--user", "app")
        assert forbidden.returncode == 4 and "NOPERM" in forbidden.stderr


def test_the_asyncio_client_authenticates_every_connection(tmp_path: Path) -> None:
    import asyncio

    from meshcache import AsyncClient, WrongPassError
    from meshcache.security.hashing import hash_password

    key = tmp_path / "cluster.key"
    key.write_text(base64.b64encode(b"a" * 32).decode() + "\n")
    config = tmp_path / "node.toml"
    config.write_text(
        f'[node]\ncluster_key_file = "{key}"\n\n[users.app]\n'
        f'password = "{hash_password("pw", n=1024)}"\npermissions = ["read", "write"]\n'
    )
    with NodeProcess(tmp_path / "n", "--config", str(config)) as node:
        address = f"127.0.0.1:{node.data_address[1]}"

        async def scenario() -> None:
            async with AsyncClient(address, username="app", password="pw", max_connections=4) as c:
                # Concurrent calls open several connections, each authenticated.
                await asyncio.gather(*(c.set(f"k{i}", b"v") for i in range(20)))
                assert await c.mget([f"k{i}" for i in range(20)]) == [b"v"] * 20
            async with AsyncClient(address, username="app", password="nope") as wrong:
                with pytest.raises(WrongPassError):
                    await wrong.get("k0")

        asyncio.run(scenario())
