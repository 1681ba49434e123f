"""The guard's password check: users reloaded while a check runs, and the decoy an unknown user
name is checked against (the same work as a user's hash)."""

from __future__ import annotations

import threading
from typing import Any

import pytest
import trio

from meshcache.errors import WrongPassError
from meshcache.security import hashing
from meshcache.security.guard import Guard
from meshcache.security.hashing import DEFAULT_N, DEFAULT_R, PasswordHash, hash_password
from meshcache.security.users import User
from meshcache.wire.ops import Permission

CHEAP = 1024
READ_WRITE = frozenset({Permission.READ, Permission.WRITE})


class HeldHash:
    """A password hash whose check waits, on its worker thread, until the test lets it go."""

    def __init__(self, password: str) -> None:
        self.real = PasswordHash.parse(hash_password(password, n=CHEAP))
        self.n, self.r, self.p = self.real.n, self.real.r, self.real.p
        self.started = threading.Event()
        self.release = threading.Event()

    def verify(self, password: str) -> bool:
        self.started.set()
        if not self.release.wait(10):
            raise TimeoutError("the test never released the check")
        return self.real.verify(password)


def user(name: str, password: Any, permissions: frozenset[Permission] = READ_WRITE) -> User:
    return User(name, password, permissions)


async def auth_during_reload(guard: Guard, held: HeldHash, reload: dict[str, User]) -> Any:
    """``AUTH alice old-pw`` whose check is under way when the users become ``reload``: the
    session's user and what the AUTH answered (or raised)."""
    session = guard.session("10.0.0.1")
    outcome: list[Any] = []

    async def auth() -> None:
        try:
            outcome.append(await guard.authenticate(session, "alice", "old-pw"))
        except Exception as exc:
            outcome.append(exc)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(auth)
        started = await trio.to_thread.run_sync(held.started.wait, 10)
        assert started
        guard.set_users(reload)
        held.release.set()
    return session, outcome[0]


@pytest.mark.trio
async def test_a_password_changed_during_its_check_is_refused() -> None:
    held = HeldHash("old-pw")
    guard = Guard({"alice": user("alice", held)})
    new = PasswordHash.parse(hash_password("new-pw", n=CHEAP))
    session, answer = await auth_during_reload(guard, held, {"alice": user("alice", new)})
    assert isinstance(answer, WrongPassError)
    assert session.user is None and guard.stats["failed"] == 1


@pytest.mark.trio
async def test_a_user_removed_during_its_check_is_refused() -> None:
    held = HeldHash("old-pw")
    guard = Guard({"alice": user("alice", held), "bob": user("bob", held.real)})
    session, answer = await auth_during_reload(guard, held, {"bob": user("bob", held.real)})
    assert isinstance(answer, WrongPassError)  # not a KeyError
    assert session.user is None and guard.stats["failed"] == 1


@pytest.mark.trio
async def test_a_reload_that_keeps_the_password_gives_the_new_permissions() -> None:
    held = HeldHash("old-pw")
    guard = Guard({"alice": user("alice", held)})
    reload = {"alice": user("alice", held, frozenset({Permission.READ}))}
    session, answer = await auth_during_reload(guard, held, reload)
    assert answer == "OK" and session.user == "alice"
    assert "GET" in session.allowed and "SET" not in session.allowed


def users_of_costs(*costs: int) -> dict[str, User]:
    return {
        f"u{i}": user(f"u{i}", PasswordHash.parse(hash_password("pw", n=n)))
        for i, n in enumerate(costs)
    }


def test_the_decoy_has_the_cost_of_the_users_hashes() -> None:
    assert Guard().decoy.n == DEFAULT_N
    guard = Guard(users_of_costs(2048, 2048))
    assert (guard.decoy.n, guard.decoy.r, guard.decoy.p) == (2048, DEFAULT_R, 1)
    guard.set_users(users_of_costs(1024, 4096, 4096))  # the most common cost
    assert guard.decoy.n == 4096
    guard.set_users(users_of_costs(1024, 2048))  # equally common: the highest
    assert guard.decoy.n == 2048
    slow_r = PasswordHash.parse(hash_password("pw", n=1024, r=16))
    guard.set_users({"a": user("a", slow_r)})
    assert (guard.decoy.n, guard.decoy.r) == (1024, 16)
    assert not guard.decoy.verify("pw") and not guard.decoy.verify("")


@pytest.mark.trio
async def test_an_unknown_user_costs_the_work_of_a_known_one(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The scrypt runs an AUTH does, for a known user and an unknown one, have the same
    parameters (the users' cost, not the default)."""
    runs: list[tuple[int, int, int, int]] = []
    scrypt = hashing._scrypt

    def counted(secret: bytes, salt: bytes, n: int, r: int, p: int, size: int) -> bytes:
        runs.append((n, r, p, size))
        return scrypt(secret, salt, n, r, p, size)

    guard = Guard(users_of_costs(2048))
    monkeypatch.setattr(hashing, "_scrypt", counted)
    for name in ("u0", "ghost"):
        with pytest.raises(WrongPassError):
            await guard.authenticate(guard.session(f"10.0.0.{len(runs) + 1}"), name, "wrong")
    assert len(runs) == 2 and runs[0] == runs[1] == (2048, DEFAULT_R, 1, 32)
