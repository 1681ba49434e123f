"""Client URLs with credentials: an error never shows any part of the password, whatever
characters it holds unencoded."""

from __future__ import annotations

import pytest

import meshcache
from meshcache.client.url import parse_url

PIECES = ("s3cret", "tail", "pw9")


@pytest.mark.parametrize("separator", ["/", "#", "?", "/x?y#"])
@pytest.mark.parametrize(
    "after",
    ["127.0.0.1:7400/ns", "127.0.0.1:7400/ns?bogus=1", "h:port", "127.0.0.1:7400/ns?tls=maybe"],
)
def test_an_unencoded_password_never_shows_in_an_error(separator: str, after: str) -> None:
    url = f"meshcache://app:s3cret{separator}tail{separator}pw9@{after}"
    with pytest.raises(meshcache.ConfigError) as caught:
        parse_url(url)
    message = str(caught.value)
    assert not any(piece in message for piece in PIECES), message


@pytest.mark.parametrize("scheme", ["meshcache", "meshcaches", "redis"])
def test_other_errors_hide_the_password_too(scheme: str) -> None:
    with pytest.raises(meshcache.ConfigError) as caught:
        parse_url(f"{scheme}://app:s3cret-tail-pw9@h:1/a/b?timeout=soon")
    assert not any(piece in str(caught.value) for piece in PIECES), str(caught.value)


def test_a_percent_encoded_password_holds_any_character() -> None:
    options = parse_url("meshcache://app:s3cret%2Ftail%23pw9%3F%40@h:1/ns")
    assert options["username"] == "app" and options["password"] == "s3cret/tail#pw9?@"
    assert options["namespace"] == "ns"
    # an unencoded '@' is the password's too: the hosts follow the last one
    options = parse_url("meshcache://app:s3cret@tail@h:1")
    assert options["password"] == "s3cret@tail" and options["addresses"][0].host == "h"
