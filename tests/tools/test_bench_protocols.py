"""The load generator's reading of meshcache replies (docs/protocol.md, Responses)."""

from __future__ import annotations

import pytest

from meshcache.wire.frame import pack_frame
from tools.bench.protocols import MeshcacheProtocol, ReplyKind


@pytest.mark.parametrize(
    ("response", "kind"),
    [
        ([7, 0, b"v", 3], ReplyKind.OK),
        ([7, 0, b"v", 3, {"hot": 12}], ReplyKind.OK),  # a node with hot keys adds hints
        ([7, 0, None, 3], ReplyKind.MISS),
        ([7, 0, None, 3, {"hot": 12}], ReplyKind.MISS),
        ([7, 1, ["BAD_REQUEST", "no"], 3], ReplyKind.ERROR),
        ([7, 0, b"v"], ReplyKind.ERROR),
        ([7, 0, b"v", 3, {}, 1], ReplyKind.ERROR),
    ],
)
def test_a_reply_is_ok_a_miss_or_an_error_with_or_without_hints(
    response: list[object], kind: int
) -> None:
    assert MeshcacheProtocol().classify(pack_frame(response)) == kind


def test_an_undecodable_reply_is_an_error() -> None:
    never_used = b"\xc1"  # no msgpack value starts with it
    assert MeshcacheProtocol().classify(b"\x00\x00\x00\x01" + never_used) == ReplyKind.ERROR
