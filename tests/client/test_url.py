"""Client URLs: what each part of ``meshcache://hosts/namespace?options`` sets; what is refused."""

from __future__ import annotations

import pytest

import meshcache
from meshcache.client.url import parse_url
from meshcache.wire import Address


def test_every_part_of_a_url() -> None:
    assert parse_url(
        "meshcache://a:1,[::1]:2,b/ns?timeout=2.5&connect_timeout=none&max_connections=8"
        "&decode_responses=yes&smart=false&max_frame=1024"
    ) == {
        "addresses": [Address("a", 1), Address("::1", 2), Address("b", 7400)],
        "namespace": "ns",
        "timeout": 2.5,
        "connect_timeout": None,
        "max_connections": 8,
        "decode_responses": True,
        "smart": False,
        "max_frame": 1024,
    }


def test_what_may_be_left_out() -> None:
    assert parse_url("meshcache://h:1") == {"addresses": [Address("h", 1)]}
    assert parse_url("meshcache://h:1/") == {"addresses": [Address("h", 1)]}
    assert parse_url("MESHCACHE:///") == {}
    assert parse_url("meshcache://h?namespace=my%20ns") == {
        "addresses": [Address("h", 7400)],
        "namespace": "my ns",
    }
    assert parse_url("meshcache://h/my%2Fns") == {
        "addresses": [Address("h", 7400)],
        "namespace": "my/ns",
    }


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("redis://h:1", "starts with meshcache://"),
        ("h:1", "starts with meshcache://"),
        ("meshcache://user@h:1", "credentials are user:password@"),
        ("meshcache://:pw@h:1", "credentials are user:password@"),
        ("meshcache://u:secret@h:1?color=red", "u:[*]{3}@h:1"),
        ("meshcache://h:1?color=red", "unknown option 'color'"),
        ("meshcache://h:1?timeout=soon", "timeout='soon'"),
        ("meshcache://h:1?timeout=0", "timeout='0'"),
        ("meshcache://h:1?smart=maybe", "smart='maybe'"),
        ("meshcache://h:1?max_connections=1.5", "max_connections='1.5'"),
        ("meshcache://h:1/ns?namespace=other", "namespace is given twice"),
        ("meshcache://h:1?timeout=1&timeout=2", "timeout is given twice"),
        ("meshcache://h:1/a/b", "one namespace"),
        ("meshcache://h:port", "port is not a number"),
    ],
)
def test_what_is_refused(url: str, says: str) -> None:
    with pytest.raises(meshcache.ConfigError, match=says.replace("?", r"\?")):
        parse_url(url)


def test_keyword_arguments_override_the_url() -> None:
    client = meshcache.Client.from_url("meshcache://h:1/ns?timeout=2", timeout=9, namespace="x")
    assert (client.timeout, client.namespace) == (9, "x")
    client.close()
