"""Secrets a node writes to disk are created readable by its user only."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from meshcache.node.cluster.config import _password as raft_password
from meshcache.settings import load_settings


@pytest.fixture
def open_umask() -> Iterator[None]:
    previous = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(previous)


def test_the_generated_raft_password_is_created_0600(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, open_umask: None
) -> None:
    """Mode 0600 from the file's creation on: with no chmod afterwards (there is none to wait
    for) the file is still unreadable to others, whatever the umask."""
    changed: list[object] = []
    monkeypatch.setattr(os, "chmod", lambda *args, **kwargs: changed.append(args))
    monkeypatch.setattr(Path, "chmod", lambda *args, **kwargs: changed.append(args))
    s = load_settings(overrides={"bootstrap": "true", "data_dir": str(tmp_path)}, environ={})
    first = raft_password(s)
    path = tmp_path / "raft" / "password"
    assert path.stat().st_mode & 0o777 == 0o600
    assert path.read_text() == first + "\n" and len(first) >= 24
    assert raft_password(s) == first
    assert not changed
