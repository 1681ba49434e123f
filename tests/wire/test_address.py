"""The one address type and parser (meshcache.wire.address)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from meshcache.errors import ConfigError
from meshcache.wire.address import (
    DEFAULT_PORT,
    Address,
    format_address,
    parse_address,
    parse_addresses,
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("127.0.0.1:7401", Address("127.0.0.1", 7401)),
        ("cache-3.example.org:1", Address("cache-3.example.org", 1)),
        ("localhost:65535", Address("localhost", 65535)),
        ("[::1]:7400", Address("::1", 7400)),
        ("[fe80::1%eth0]:9", Address("fe80::1%eth0", 9)),
        ("  10.0.0.1:80\n", Address("10.0.0.1", 80)),
    ],
)
def test_host_and_port(text: str, expected: Address) -> None:
    assert parse_address(text) == expected
    assert parse_address(text, default_port=None) == expected


@pytest.mark.parametrize(
    ("text", "host"),
    [("10.0.0.1", "10.0.0.1"), ("cache-3", "cache-3"), ("::1", "::1"), ("[::1]", "::1")],
)
def test_a_missing_port_is_the_default_port_or_an_error(text: str, host: str) -> None:
    assert parse_address(text) == Address(host, DEFAULT_PORT)
    assert parse_address(text, default_port=9000) == Address(host, 9000)
    with pytest.raises(ConfigError, match="no port"):
        parse_address(text, default_port=None)


@pytest.mark.parametrize(
    "text",
    [
        "host:0",
        "host:65536",
        "host:-1",
        "host:+80",
        "host:8o",
        "host:",
        "[::1]:",
        "host:\u0668\u0660",  # Arabic-Indic digits: str.isdigit() says yes, a port says no
        "host: 80",
        "[::1]x",
        "[::1",
        "[]:80",
        ":80",
        "ho st:80",
        "",
        "   ",
    ],
)
def test_malformed_addresses_are_config_errors(text: str) -> None:
    with pytest.raises(ConfigError):
        parse_address(text)


def test_text_is_required() -> None:
    with pytest.raises(ConfigError, match="expected text"):
        parse_address(("host", 1))  # type: ignore[arg-type]


def test_str_and_format() -> None:
    assert str(Address("10.0.0.1", 7400)) == "10.0.0.1:7400" == format_address("10.0.0.1", 7400)
    assert str(Address("::1", 7400)) == "[::1]:7400" == format_address("::1", 7400)
    # Still a plain (host, port) tuple for socket calls.
    assert Address("h", 1) == ("h", 1) and hash(Address("h", 1)) == hash(("h", 1))


def test_parse_addresses() -> None:
    assert parse_addresses("a:1, [::1]:2,,") == [Address("a", 1), Address("::1", 2)]
    assert parse_addresses(Address("x", 3)) == [Address("x", 3)]
    assert parse_addresses(["x:1", Address("y", 2)]) == [Address("x", 1), Address("y", 2)]
    assert parse_addresses("a") == [Address("a", DEFAULT_PORT)]
    with pytest.raises(ConfigError, match="no port"):
        parse_addresses("a:1,b", default_port=None)
    with pytest.raises(ConfigError, match="no node address"):
        parse_addresses(" , ")


_HOSTNAME = st.from_regex(
    r"[a-z0-9]([a-z0-9-]{0,20}[a-z0-9])?(\.[a-z0-9]{1,10}){0,3}", fullmatch=True
)
_ANY_HOST = st.text(min_size=1, max_size=40).filter(
    lambda h: "[" not in h and "]" not in h and not any(c.isspace() for c in h)
)


@given(
    host=st.one_of(st.ip_addresses().map(str), _HOSTNAME, _ANY_HOST),
    port=st.integers(1, 65535),
)
def test_str_round_trips_through_the_parser(host: str, port: int) -> None:
    address = Address(host, port)
    assert parse_address(str(address), default_port=None) == address
    if "," not in host:
        assert parse_addresses(f"{address},{address}") == [address, address]
