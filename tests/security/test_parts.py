"""The security parts without a network: hashes, user tables, grants, the throttle, protected
mode, and the dispatcher's gate (fuzzed AUTH included)."""

from __future__ import annotations

import base64
from collections.abc import Coroutine
from typing import Any

import msgpack
import pytest
import trio
import trio.testing
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from meshcache.errors import ConfigError, ErrorCode
from meshcache.gossip.keyring import Keyring
from meshcache.node.admin.metrics import NodeCounters
from meshcache.node.cluster.config import _password as raft_password
from meshcache.node.net.dispatch import Dispatcher
from meshcache.security import peer
from meshcache.security.acl import CLUSTER_USER, grant
from meshcache.security.guard import Guard, Session
from meshcache.security.hashing import PasswordHash, hash_password
from meshcache.security.protected import check_protected_mode, is_loopback
from meshcache.security.throttle import AuthThrottle
from meshcache.security.users import parse_user, parse_users
from meshcache.settings import load_settings
from meshcache.wire.frame import decode_response, encode_request
from meshcache.wire.ops import OPS, Limits, Permission
from meshcache.wire.pending import Pending

CHEAP = 1024  # scrypt's N for tests: about a millisecond per check
KEY = b"k" * 32


def cheap_hash(password: str) -> str:
    return hash_password(password, n=CHEAP)


# --- hashes ----------------------------------------------------------------------------------


def test_a_hash_verifies_its_password_only() -> None:
    text = cheap_hash("correct horse")
    hashed = PasswordHash.parse(text)
    assert hashed.n == CHEAP and text.startswith("scrypt$n=1024,r=8,p=1$")
    assert hashed.verify("correct horse")
    assert not hashed.verify("correct hors")
    assert not hashed.verify("")
    assert PasswordHash.parse(text).encode() == text
    assert cheap_hash("same") != cheap_hash("same")  # a new salt every time


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("plaintext", "not a password hash"),
        ("scrypt$n=1000,r=8,p=1$AAAAAAAAAAA=$" + "A" * 44, "power of two"),
        ("scrypt$n=4194304,r=8,p=1$AAAAAAAAAAA=$" + "A" * 44, "power of two"),
        ("scrypt$n=1024,r=99,p=1$AAAAAAAAAAA=$" + "A" * 44, "out of range"),
        ("scrypt$n=1024,r=8,p=1$!!!!$" + "A" * 44, "not a password hash"),
        ("scrypt$n=1024,r=8,p=1$QQ==$" + "A" * 44, "too short"),
    ],
)
def test_malformed_hashes_are_refused_with_the_reason(text: str, says: str) -> None:
    with pytest.raises(ConfigError, match=says):
        PasswordHash.parse(text)


def test_empty_and_huge_passwords_are_refused() -> None:
    with pytest.raises(ConfigError, match="empty"):
        hash_password("")
    with pytest.raises(ConfigError, match="longer"):
        hash_password("x" * 5000)
    assert not PasswordHash.parse(cheap_hash("a")).verify("a" * 5000)


# --- users -----------------------------------------------------------------------------------


def test_user_tables() -> None:
    users = parse_users(
        {
            "app": {"password": cheap_hash("p"), "permissions": ["read", "write"]},
            "ops": {
                "password": cheap_hash("q"),
                "permissions": ["admin"],
                "namespaces": ["app-*"],
            },
        },
        "node.toml",
    )
    assert users["app"].permissions == {Permission.READ, Permission.WRITE}
    assert users["ops"].namespaces == ("app-*",)


@pytest.mark.parametrize(
    ("name", "table", "says"),
    [
        ("@cluster", {"password": "x"}, "user name"),
        ("a", {"permissions": ["read"]}, "password is missing"),
        ("a", {"password": "plain", "permissions": ["read"]}, "not a password hash"),
        ("a", {"password": None, "permissions": ["peer"]}, "a password hash is a string"),
        ("a", {"pasword": "x"}, "unknown key 'pasword'"),
        ("a", "not a table", "must be a table"),
    ],
)
def test_bad_user_tables(name: str, table: Any, says: str) -> None:
    with pytest.raises(ConfigError, match=says):
        parse_user(name, table, "node.toml [users.a]")


def test_a_user_never_gets_peer() -> None:
    with pytest.raises(ConfigError, match="never a user's"):
        parse_user("a", {"password": cheap_hash("p"), "permissions": ["peer"]}, "here")


# --- grants ----------------------------------------------------------------------------------


def test_grants_follow_the_op_table() -> None:
    reader = grant("r", {Permission.READ})
    assert "GET" in reader.allowed and "INFO" in reader.allowed and "PING" in reader.allowed
    assert "SET" not in reader.allowed and "NS_SET" not in reader.allowed
    assert "FWD" not in reader.allowed
    assert "AUTH" not in grant(CLUSTER_USER, set(Permission)).allowed  # always reaches the gate
    for name, spec in OPS.items():
        if spec.permission is Permission.ADMIN:
            assert name not in grant("w", {Permission.READ, Permission.WRITE}).allowed
    scoped = grant("s", {Permission.READ, Permission.WRITE}, ("app-*",))
    assert "GET" in scoped.scoped and "GET" not in scoped.allowed
    assert "INFO" in scoped.allowed  # node ops need only the permission
    assert scoped.allows_namespace("app-1") and not scoped.allows_namespace("default")


# --- the throttle ----------------------------------------------------------------------------


def test_the_throttle_grows_with_failures_and_forgives_with_time() -> None:
    t = AuthThrottle()
    assert t.delay("1.2.3.4", 0.0) == 0.0
    for _ in range(4):
        t.failed("1.2.3.4", 0.0)
    assert t.delay("1.2.3.4", 0.0) == pytest.approx(0.1)
    for _ in range(6):
        t.failed("1.2.3.4", 0.0)
    assert t.delay("1.2.3.4", 0.0) == 5.0  # capped
    assert t.delay("5.6.7.8", 0.0) == 0.0  # per address
    assert t.delay("1.2.3.4", 600.0) == 0.0  # ten half-lives later


def test_the_throttle_remembers_a_bounded_number_of_addresses() -> None:
    t = AuthThrottle(max_addresses=3)
    for i in range(10):
        t.failed(f"10.0.0.{i}", 0.0)
    assert len(t) == 3 and t.failures("10.0.0.9", 0.0) == 1.0


def test_one_record_per_address_shown_under_each_port_it_failed_through() -> None:
    t = AuthThrottle()
    assert t.failing(0.0) == {"data": 0, "resp": 0}
    t.failed("10.0.0.1", 0.0, "data")
    t.failed("10.0.0.1", 1.0, "resp")  # the same record: its count goes on, both ports shown
    t.failed("10.0.0.2", 2.0, "resp")
    assert len(t) == 2 and t.failures("10.0.0.1", 1.0) == pytest.approx(2.0, rel=0.02)
    assert t.failing(2.0) == {"data": 1, "resp": 2}
    # Four half-lives after its last failure a lone failure is forgotten; two are not yet.
    assert t.failing(2.0 + 4 * 60.0 + 1) == {"data": 1, "resp": 1}
    assert len(t) == 1 and t.failures("10.0.0.2", 300.0) == 0.0
    assert t.failing(1000.0) == {"data": 0, "resp": 0} and len(t) == 0


def test_evicted_records_leave_the_port_counts() -> None:
    t = AuthThrottle(max_addresses=2)
    for i in range(5):
        t.failed(f"10.0.0.{i}", 0.0, "data" if i % 2 else "resp")
    assert len(t) == 2 and t.failing(0.0) == {"data": 1, "resp": 1}


# --- protected mode --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.1.2.3", True),
        ("::1", True),
        ("[::1]", True),
        ("localhost", True),
        ("0.0.0.0", False),
        ("::", False),
        ("10.0.0.5", False),
        ("cache.example.com", False),
    ],
)
def test_loopback(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


def test_protected_mode_names_both_ways_out() -> None:
    with pytest.raises(ConfigError) as refused:
        load_settings(overrides={"host": "10.0.0.5"}, environ={})
    message = str(refused.value)
    assert "10.0.0.5" in message and "users" in message and "--insecure" in message
    assert "\n" not in message
    assert load_settings(overrides={"host": "10.0.0.5", "insecure": "true"}, environ={}).insecure
    check_protected_mode("10.0.0.5", has_users=True, insecure=False, where="host")


# --- the Raft password ------------------------------------------------------------------------


@pytest.mark.parametrize("peers", ["10.0.0.5:7401,10.0.0.6:7401", "127.0.0.1:7401,127.0.0.1:7411"])
def test_raft_voters_need_a_password_file(tmp_path: Any, peers: str) -> None:
    """Voters off loopback, and on it too: pysyncobj speaks pickle, so never without one."""
    overrides = {"raft_peers": peers, "insecure": "true", "data_dir": str(tmp_path)}
    with pytest.raises(ConfigError, match="needs raft_password_file"):
        load_settings(overrides=overrides, environ={})
    password = tmp_path / "raft.password"
    password.write_text("shared secret\n")
    s = load_settings(overrides={**overrides, "raft_password_file": str(password)}, environ={})
    assert raft_password(s) == "shared secret"
    password.write_text("\n")
    with pytest.raises(ConfigError, match="is empty"):
        raft_password(s)


def test_a_bootstrap_voter_generates_its_password_once(tmp_path: Any) -> None:
    s = load_settings(overrides={"bootstrap": "true", "data_dir": str(tmp_path)}, environ={})
    first = raft_password(s)
    path = tmp_path / "raft" / "password"
    assert len(first) >= 24 and path.stat().st_mode & 0o777 == 0o600
    assert raft_password(s) == first  # kept: voters added later share it


def test_users_need_a_cluster_key_and_may_have_a_resp_port(tmp_path: Any) -> None:
    users = {"app": {"password": cheap_hash("p"), "permissions": ["read"]}}
    with pytest.raises(ConfigError, match="cluster_key_file"):
        load_settings(overrides={"users": users}, environ={})
    key_file = tmp_path / "key"
    key_file.write_text(base64.b64encode(KEY).decode() + "\n")
    with_resp = load_settings(
        overrides={"users": users, "cluster_key_file": str(key_file), "resp_port": "0"},
        environ={},
    )
    assert with_resp.resp_port == 0 and set(with_resp.users) == {"app"}
    s = load_settings(
        overrides={"users": users, "cluster_key_file": str(key_file), "host": "10.0.0.5"},
        environ={},
    )
    assert set(s.users) == {"app"}


def test_users_in_a_toml_file(tmp_path: Any) -> None:
    key_file = tmp_path / "key"
    key_file.write_text(base64.b64encode(KEY).decode() + "\n")
    path = tmp_path / "node.toml"
    path.write_text(
        f'[node]\ncluster_key_file = "key"\n\n[users.app]\npassword = "{cheap_hash("p")}"\n'
        'permissions = ["read", "write"]\nnamespaces = ["app-*"]\n'
    )
    s = load_settings(config_file=path, environ={})
    assert s.users["app"].namespaces == ("app-*",)
    bad = tmp_path / "bad.toml"
    bad.write_text('[users.app]\npassword = "hunter2"\n')
    with pytest.raises(ConfigError, match=r"bad.toml \[users.app\] password: not a password hash"):
        load_settings(config_file=bad, environ={})


# --- peer tokens -----------------------------------------------------------------------------


def test_peer_tokens_follow_the_keyring() -> None:
    old, new = b"o" * 32, b"n" * 32
    ring = Keyring([old])
    assert peer.auth_args(None) is None and peer.auth_args(Keyring()) is None
    token = peer.auth_args(ring)
    assert token == [CLUSTER_USER, peer.peer_token(old)]
    ring.install(new)
    assert peer.accepts(ring, peer.peer_token(new)) and peer.accepts(ring, peer.peer_token(old))
    ring.use(new)
    ring.remove(old)
    assert not peer.accepts(ring, peer.peer_token(old))  # a removed key no longer admits
    assert not peer.accepts(ring, "not a token")


# --- the dispatcher's gate -------------------------------------------------------------------


def dispatcher(guard: Guard) -> Dispatcher:
    def execute(ns: str, op: str, args: list[Any]) -> Any:
        return b"value" if op == "GET" else True

    return Dispatcher(
        execute=execute,
        routes={"PING": lambda ns, args: "PONG", "INFO": lambda ns, args: {}},
        limits=Limits(),
        counters=NodeCounters(),
        guard=guard,
    )


def ask(d: Dispatcher, session: Session, op: str, *args: Any, ns: str = "default") -> Any:
    answer = d.handle(encode_request(1, op, ns, list(args))[4:], session)
    assert isinstance(answer, bytes)
    return decode_response(answer[4:])


def guard_with_users() -> Guard:
    users = parse_users(
        {
            "reader": {"password": cheap_hash("r"), "permissions": ["read"]},
            "scoped": {
                "password": cheap_hash("s"),
                "permissions": ["read", "write"],
                "namespaces": ["app-*"],
            },
        },
        "test",
    )
    return Guard(users, keyring=Keyring([KEY]))


def test_an_unauthenticated_connection_may_only_ping() -> None:
    guard = guard_with_users()
    d = dispatcher(guard)
    session = guard.session("10.0.0.1")
    assert ask(d, session, "PING").value == "PONG"
    for op, args in (("GET", ["k"]), ("INFO", []), ("FWD", ["GET", []])):
        response = ask(d, session, op, *args)
        assert not response.ok and response.value[0] == ErrorCode.NOAUTH
        assert "AUTH" in response.value[1]
    assert d.counters.bad_input["noauth"] == 3 and guard.stats["noauth"] == 3


@pytest.mark.trio
async def test_auth_then_permissions_and_namespaces() -> None:
    guard = guard_with_users()
    d = dispatcher(guard)
    session = guard.session("10.0.0.1")
    pending = d.handle(encode_request(7, "AUTH", "default", ["scoped", "s"])[4:], session)
    assert isinstance(pending, Pending) and pending.fans_out  # nothing after it runs first
    response = decode_response((await pending.answer)[4:])
    assert response.ok and response.id == 7 and session.user == "scoped"
    assert ask(d, session, "GET", "k", ns="app-1").value == b"value"
    refused = ask(d, session, "GET", "k", ns="default")
    assert refused.value[0] == ErrorCode.NOPERM and "'default'" in refused.value[1]
    admin = ask(d, session, "NS_DROP", "app-1")
    assert admin.value[0] == ErrorCode.NOPERM and "'admin'" in admin.value[1]
    assert ask(d, session, "FWD", "GET", []).value[0] == ErrorCode.NOPERM


@pytest.mark.trio
async def test_wrong_password_and_unknown_user_get_the_same_answer() -> None:
    guard = guard_with_users()
    d = dispatcher(guard)
    session = guard.session("10.0.0.1")
    answers = []
    for user, password in (("reader", "wrong"), ("nobody", "r")):
        pending = d.handle(encode_request(1, "AUTH", "default", [user, password])[4:], session)
        assert isinstance(pending, Pending)
        answers.append(decode_response((await pending.answer)[4:]).value)
    assert answers[0] == answers[1] and answers[0][0] == ErrorCode.WRONGPASS
    assert session.user is None and guard.stats["failed"] == 2
    assert d.counters.errors["WRONGPASS"] == 2


@pytest.mark.trio
async def test_repeated_failures_from_one_address_are_slowed(
    autojump_clock: trio.testing.MockClock,
) -> None:
    guard = guard_with_users()
    session = guard.session("10.0.0.9")
    other = guard.session("10.0.0.10")
    for _ in range(4):
        with pytest.raises(Exception, match="WRONGPASS"):
            await guard.authenticate(session, "reader", "wrong")
    started = trio.current_time()
    with pytest.raises(Exception, match="WRONGPASS"):
        await guard.authenticate(session, "reader", "wrong")
    assert trio.current_time() - started >= 0.1 and guard.stats["throttled"] == 1
    started = trio.current_time()
    assert await guard.authenticate(other, "reader", "r") == "OK"  # another address: no wait
    assert trio.current_time() - started < 0.1


@pytest.mark.trio
async def test_peer_auth_with_the_cluster_key() -> None:
    guard = guard_with_users()
    d = dispatcher(guard)
    session = guard.session("10.0.0.2")
    token = peer.auth_args(Keyring([KEY]))
    assert token is not None
    assert await guard.authenticate(session, *token) == "OK"
    assert session.user == CLUSTER_USER and "FWD" in session.allowed
    assert ask(d, session, "GET", "k", ns="anything").ok
    stranger = guard.session("10.0.0.3")
    wrong = peer.auth_args(Keyring([b"x" * 32]))
    assert wrong is not None
    with pytest.raises(Exception, match="WRONGPASS"):
        await guard.authenticate(stranger, *wrong)


def test_a_node_without_users_or_key_lets_everyone_do_everything() -> None:
    open_guard = Guard()
    session = open_guard.session("1.2.3.4")
    assert {"GET", "SET", "NS_SET", "FWD"} <= session.allowed
    keyed = Guard(keyring=Keyring([KEY])).session("1.2.3.4")
    assert {"GET", "SET", "NS_SET"} <= keyed.allowed and "FWD" not in keyed.allowed


AUTH_ARGS = st.one_of(
    st.lists(
        st.one_of(
            st.text(max_size=20),
            st.binary(max_size=20),
            st.integers(-(2**63), 2**64 - 1),
            st.none(),
            st.booleans(),
            st.floats(allow_nan=True),
            st.lists(st.integers(-(2**63), 2**64 - 1), max_size=3),
            st.dictionaries(st.text(max_size=3), st.integers(0, 9), max_size=2),
        ),
        max_size=4,
    ),
    st.text(max_size=10),
    st.integers(-(2**63), 2**64 - 1),
    st.none(),
    st.binary(min_size=5000, max_size=6000).map(lambda b: [b"user", b]),
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(args=AUTH_ARGS, ns=st.one_of(st.text(max_size=5), st.just("default")))
def test_fuzzed_auth_never_breaks_the_dispatcher(args: Any, ns: str) -> None:
    guard = guard_with_users()
    d = dispatcher(guard)
    session = guard.session("10.0.0.1")
    body = msgpack.packb([3, "AUTH", ns, args], use_bin_type=True)
    answer = d.handle(body, session)
    if isinstance(answer, Pending):
        # Two text arguments within limits: a real AUTH, checked off the loop; never a user.
        assert isinstance(args, list) and len(args) == 2
        waiting: Coroutine[Any, Any, bytes] = answer.answer

        async def finish() -> bytes:
            return await waiting

        response = decode_response(trio.run(finish)[4:])
        assert not response.ok and response.value[0] == "WRONGPASS"
    else:
        response = decode_response(answer[4:])
        assert not response.ok and response.id == 3
        assert response.value[0] in {"BAD_REQUEST", "WRONG_ARITY", "TOO_LARGE"}
    assert session.user is None
    assert ask(d, session, "GET", "k").value[0] == ErrorCode.NOAUTH
