"""SIGHUP re-reads a node's users: open connections follow at once; a bad file changes nothing."""

from __future__ import annotations

import base64
import signal
from pathlib import Path

from meshcache.errors import CommandError
from meshcache.security.hashing import hash_password
from meshcache.testing.mesh import Direct, wait_for
from meshcache.testing.nodes import NodeProcess


def users_file(path: Path, key: Path, users: dict[str, tuple[str, list[str]]]) -> None:
    text = f'[node]\ncluster_key_file = "{key}"\n'
    for name, (password, permissions) in users.items():
        text += (
            f'\n[users.{name}]\npassword = "{hash_password(password, n=1024)}"\n'
            f"permissions = {permissions!r}\n".replace("'", '"')
        )
    path.write_text(text)


def code_of(conn: Direct, op: str, args: list[object]) -> str:
    try:
        conn.call(op, args)
    except CommandError as exc:
        return str(exc.code)
    return "OK"


def test_sighup_applies_new_users_to_open_connections(tmp_path: Path) -> None:
    key = tmp_path / "cluster.key"
    key.write_text(base64.b64encode(b"r" * 32).decode() + "\n")
    config = tmp_path / "node.toml"
    users_file(config, key, {"app": ("one", ["read", "write"]), "viewer": ("two", ["read"])})
    with NodeProcess(tmp_path / "n", "--config", str(config)) as node:
        app, viewer = Direct(node.data_address), Direct(node.data_address)
        try:
            app.call("AUTH", ["app", "one"])
            viewer.call("AUTH", ["viewer", "two"])
            assert app.call("SET", [b"k", b"v"]) is True
            assert code_of(viewer, "SET", [b"k", b"w"]) == "NOPERM"

            # app is removed, viewer may now write.
            users_file(config, key, {"viewer": ("two", ["read", "write"])})
            node.signal(signal.SIGHUP)
            wait_for(lambda: code_of(app, "GET", [b"k"]) == "NOAUTH", 20, "app to lose access")
            assert code_of(viewer, "SET", [b"k", b"w"]) == "OK"

            # A file that does not load changes nothing.
            config.write_text("[users.viewer]\npassword = 'plain text'\n")
            node.signal(signal.SIGHUP)
            wait_for(
                lambda: "users_not_reloaded" in node.log_file.read_text(errors="replace"),
                20,
                "the bad file to be reported",
            )
            assert code_of(viewer, "SET", [b"k", b"x"]) == "OK"
            assert code_of(app, "AUTH", ["app", "one"]) == "WRONGPASS"
        finally:
            app.close()
            viewer.close()
