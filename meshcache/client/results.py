"""Result decoders: raw msgpack results in, the Python values the client methods promise out.

Each decoder checks the shape the protocol documents and raises
:class:`~meshcache.errors.RemoteProtocolError` on anything else, so a misbehaving node can never
make a client method return a value of the wrong type or raise something unexpected.

Stored data (values, fields, members) comes back as ``bytes``; a client made with
``decode_responses=True`` decodes it as UTF-8 and returns ``str`` instead. :data:`BINARY` and
:data:`TEXT` are the two sets of decoders for such results.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from meshcache.errors import RemoteProtocolError


def _wrong(what: str, value: Any) -> RemoteProtocolError:
    return RemoteProtocolError(f"expected {what} from the node, got {type(value).__name__}")


def any_value(value: Any) -> Any:
    return value


def boolean(value: Any) -> bool:
    if type(value) is not bool:
        raise _wrong("a bool", value)
    return value


def integer(value: Any) -> int:
    if type(value) is not int:
        raise _wrong("an int", value)
    return value


def number(value: Any) -> float:
    if type(value) is float:
        return value
    if type(value) is int:
        return float(value)
    raise _wrong("a number", value)


def optional_number(value: Any) -> float | None:
    return None if value is None else number(value)


def optional_integer(value: Any) -> int | None:
    return None if value is None else integer(value)


def binary(value: Any) -> bytes:
    if type(value) is not bytes:
        raise _wrong("bin", value)
    return value


def optional_binary(value: Any) -> bytes | None:
    return None if value is None else binary(value)


def name(value: Any) -> str:
    """A name the node answers as text (TYPE's ``string``, ``hash`` ...)."""
    if type(value) is not str:
        raise _wrong("str", value)
    return value


def pong(value: Any) -> bool:
    if value != "PONG":
        raise RemoteProtocolError(f"expected PONG, got {value!r}")
    return True


def binary_list(value: Any) -> list[bytes]:
    if type(value) is not list:
        raise _wrong("an array", value)
    return [binary(item) for item in value]


def binary_set(value: Any) -> set[bytes]:
    return set(binary_list(value))


def optional_binary_list(value: Any) -> list[bytes | None]:
    if type(value) is not list:
        raise _wrong("an array", value)
    return [optional_binary(item) for item in value]


def binary_map(value: Any) -> dict[bytes, bytes]:
    if type(value) is not dict:
        raise _wrong("a map", value)
    return {binary(k): binary(v) for k, v in value.items()}


def str_map(value: Any) -> dict[str, Any]:
    if type(value) is not dict or not all(type(k) is str for k in value):
        raise _wrong("a map with str keys", value)
    return value


def map_list(value: Any) -> list[dict[str, Any]]:
    """MEMBERS: an array of maps with str keys."""
    if type(value) is not list:
        raise _wrong("an array of maps", value)
    return [str_map(item) for item in value]


def versioned(value: Any) -> tuple[bytes, int] | None:
    """GETS: ``[value, version]`` or nil."""
    if value is None:
        return None
    if type(value) is not list or len(value) != 2:
        raise _wrong("[value, version]", value)
    return binary(value[0]), integer(value[1])


def set_result(value: Any) -> bool | bytes | None:
    """SET: a bool, or with ``get`` the old value (bin or nil)."""
    if value is None or type(value) in (bool, bytes):
        result: bool | bytes | None = value
        return result
    raise _wrong("a bool, bin or nil", value)


def scored_pairs(value: Any) -> list[tuple[bytes, float]]:
    """ZRANGE/ZRANGEBYSCORE withscores: ``[[member, score], ...]`` → ``[(member, score), ...]``."""
    if type(value) is not list:
        raise _wrong("an array", value)
    pairs: list[tuple[bytes, float]] = []
    for item in value:
        if type(item) is not list or len(item) != 2:
            raise _wrong("[member, score]", item)
        pairs.append((binary(item[0]), number(item[1])))
    return pairs


# -- stored data as text (decode_responses=True) --------------------------------------------------


def text(value: Any) -> str:
    if type(value) is not bytes:
        raise _wrong("bin", value)
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError:
        raise RemoteProtocolError(
            f"a stored value is not UTF-8 text ({value[:16]!r}...): a client made with"
            " decode_responses=True cannot return it as str; read binary data with a client"
            " made without it"
        ) from None


def optional_text(value: Any) -> str | None:
    return None if value is None else text(value)


def text_list(value: Any) -> list[str]:
    if type(value) is not list:
        raise _wrong("an array", value)
    return [text(item) for item in value]


def text_set(value: Any) -> set[str]:
    return set(text_list(value))


def optional_text_list(value: Any) -> list[str | None]:
    if type(value) is not list:
        raise _wrong("an array", value)
    return [optional_text(item) for item in value]


def text_map(value: Any) -> dict[str, str]:
    if type(value) is not dict:
        raise _wrong("a map", value)
    return {text(k): text(v) for k, v in value.items()}


def versioned_text(value: Any) -> tuple[str, int] | None:
    pair = versioned(value)
    return None if pair is None else (text(pair[0]), pair[1])


def set_result_text(value: Any) -> bool | str | None:
    result = set_result(value)
    return text(result) if isinstance(result, bytes) else result


def scored_pairs_text(value: Any) -> list[tuple[str, float]]:
    return [(text(member), score) for member, score in scored_pairs(value)]


@dataclass(frozen=True, slots=True)
class Decoders:
    """The decoder for each shape of result that holds stored data."""

    value: Callable[[Any], Any]
    optional_value: Callable[[Any], Any]
    value_list: Callable[[Any], Any]
    optional_value_list: Callable[[Any], Any]
    value_set: Callable[[Any], Any]
    value_map: Callable[[Any], Any]
    versioned: Callable[[Any], Any]
    set_result: Callable[[Any], Any]
    scored_pairs: Callable[[Any], Any]


BINARY = Decoders(
    binary,
    optional_binary,
    binary_list,
    optional_binary_list,
    binary_set,
    binary_map,
    versioned,
    set_result,
    scored_pairs,
)
"""Stored data as ``bytes`` (the default)."""

TEXT = Decoders(
    text,
    optional_text,
    text_list,
    optional_text_list,
    text_set,
    text_map,
    versioned_text,
    set_result_text,
    scored_pairs_text,
)
"""Stored data as ``str`` (``decode_responses=True``)."""
