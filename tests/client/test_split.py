"""Splitting batches by node and merging the results: a model store checks split + merge."""

from __future__ import annotations

import zlib
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from meshcache.client import results
from meshcache.client.core import Command
from meshcache.client.split import MERGE, plan
from meshcache.errors import CommandError, MeshcacheError, RemoteProtocolError
from meshcache.wire import OPS, Address

NODES = [Address("n", i) for i in range(3)]


def by_crc(key: bytes) -> Address:
    return NODES[zlib.crc32(key) % len(NODES)]


def cmd(op: str, *args: Any) -> Command[Any]:
    decode = {
        "GET": results.optional_binary,
        "SET": results.set_result,
        "MGET": results.optional_binary_list,
        "MSET": results.boolean,
        "DELETE": results.integer,
        "EXISTS": results.integer,
        "PING": results.pong,
        "INCR": results.integer,
    }[op]
    return Command.build(op, list(args), "default", decode)


def execute(store: dict[bytes, bytes], commands: list[Command[Any]]) -> list[Any]:
    """What a node answers, one command after the other (already decoded)."""
    out: list[Any] = []
    for c in commands:
        op, args = c.op, c.args
        if op == "GET":
            out.append(store.get(args[0]))
        elif op == "SET":
            store[args[0]] = args[1]
            out.append(True)
        elif op == "MGET":
            out.append([store.get(k) for k in args])
        elif op == "MSET":
            store.update(zip(args[::2], args[1::2], strict=True))
            out.append(True)
        elif op == "DELETE":
            out.append(sum(store.pop(k, None) is not None for k in args))
        elif op == "EXISTS":
            out.append(sum(k in store for k in args))
        elif op == "PING":
            out.append(True)
        else:
            raise AssertionError(op)
    return out


keys = st.sampled_from([b"k%d" % i for i in range(12)])
values = st.binary(max_size=3)
commands = st.one_of(
    st.builds(lambda k: cmd("GET", k), keys),
    st.builds(lambda k, v: cmd("SET", k, v), keys, values),
    st.builds(lambda ks: cmd("MGET", *ks), st.lists(keys, min_size=1, max_size=8)),
    st.builds(
        lambda kv: cmd("MSET", *(x for pair in kv for x in pair)),
        st.lists(st.tuples(keys, values), min_size=1, max_size=6),
    ),
    st.builds(lambda ks: cmd("DELETE", *ks), st.lists(keys, min_size=1, max_size=6)),
    st.builds(lambda ks: cmd("EXISTS", *ks), st.lists(keys, min_size=1, max_size=6)),
    st.just(cmd("PING")),
)


def keys_of(c: Command[Any]) -> list[bytes]:
    if c.op == "MSET":
        return list(c.args[::2])
    if c.op in ("MGET", "DELETE", "EXISTS"):
        return list(c.args)
    return [] if c.key is None else [c.key]


def places_of(c: Command[Any]) -> set[Address | None]:
    return {by_crc(k) for k in keys_of(c)} or {None}


@settings(max_examples=300, deadline=None)
@given(
    batch=st.lists(commands, min_size=1, max_size=12),
    initial=st.dictionaries(keys, values),
    reverse=st.booleans(),
)
def test_split_then_merge_is_the_batch_run_in_order(
    batch: list[Command[Any]], initial: dict[bytes, bytes], reverse: bool
) -> None:
    expected = execute(dict(initial), batch)
    p = plan(batch, by_crc)
    if p is None:
        assert len(set().union(*(places_of(c) for c in batch))) == 1
        return
    # Each node holds only the keys it owns, and groups may finish in any order (they run
    # in parallel), so they are run forwards or backwards.
    stores: dict[Address | None, dict[bytes, bytes]] = {
        n: {k: v for k, v in initial.items() if by_crc(k) == n} for n in NODES
    }
    stores[None] = {}
    answers: dict[int, list[Any]] = {}
    order = list(enumerate(p.groups))
    for g, group in reversed(order) if reverse else order:
        place = None if group.key is None else by_crc(group.key)
        for c in group.commands:
            assert places_of(c) == {place}, "a command went to a node that does not own its keys"
        answers[g] = execute(stores[place], group.commands)
    assert p.results([answers[g] for g in range(len(p.groups))], raise_on_error=True) == expected


def test_one_node_batches_are_not_split() -> None:
    assert plan([cmd("GET", b"a"), cmd("SET", b"b", b"1")], lambda k: NODES[0]) is None
    assert plan([cmd("MGET", b"a", b"b", b"c")], lambda k: NODES[0]) is None
    assert plan([cmd("MGET", b"a", b"b")], lambda k: None) is None


def test_mget_parts_and_merge() -> None:
    place = {b"a": NODES[0], b"b": NODES[1], b"c": NODES[0], b"d": NODES[2]}
    p = plan([cmd("MGET", b"a", b"b", b"c", b"d")], place.__getitem__)
    assert p is not None
    assert [g.commands[0].args for g in p.groups] == [[b"a", b"c"], [b"b"], [b"d"]]
    assert [g.key for g in p.groups] == [b"a", b"b", b"d"]
    merged = p.results([[[b"1", None]], [[b"2"]], [[b"4"]]], raise_on_error=True)
    assert merged == [[b"1", b"2", None, b"4"]]


def test_counts_sum_and_mset_is_true_only_when_every_part_is() -> None:
    place = {b"a": NODES[0], b"b": NODES[1]}
    p = plan(
        [cmd("DELETE", b"a", b"b"), cmd("EXISTS", b"b", b"a"), cmd("MSET", b"a", b"1", b"b", b"2")],
        place.__getitem__,
    )
    assert p is not None and len(p.groups) == 2
    assert p.groups[0].retryable and p.groups[1].retryable
    assert p.merge([[1, 0, True], [1, 1, True]]) == [2, 1, True]
    assert p.merge([[1, 0, True], [1, 1, False]])[2] is False


def test_a_failed_part_fails_its_command_only() -> None:
    place = {b"a": NODES[0], b"b": NODES[1]}
    p = plan([cmd("MGET", b"a", b"b"), cmd("GET", b"a"), cmd("INCR", b"b")], place.__getitem__)
    assert p is not None
    assert p.groups[0].retryable and not p.groups[1].retryable
    error = CommandError("UNAVAILABLE", "owner down")
    merged = p.merge([[[b"1"], b"1"], [error, 3]])
    assert merged == [error, b"1", 3]
    try:
        p.results([[[b"1"], b"1"], [error, 3]], raise_on_error=True)
    except MeshcacheError as exc:
        assert exc is error
    else:
        raise AssertionError("the error was not raised")


def test_a_part_of_the_wrong_length_is_a_protocol_error() -> None:
    place = {b"a": NODES[0], b"b": NODES[1]}
    p = plan([cmd("MGET", b"a", b"b")], place.__getitem__)
    assert p is not None
    assert isinstance(p.merge([[[b"1", b"2"]], [[b"3"]]])[0], RemoteProtocolError)


def test_meta_commands_form_their_own_group() -> None:
    p = plan([cmd("PING"), cmd("GET", b"a")], lambda k: NODES[1])
    assert p is not None
    assert [g.key for g in p.groups] == [None, b"a"]


def test_the_ops_cut_by_node_are_the_op_tables_many_key_ops() -> None:
    many = {name for name, spec in OPS.items() if spec.multi_key}
    assert many == {"MGET", "MSET", "DELETE", "EXISTS"}  # what the node splits too
    assert set(MERGE) == many
    place = {b"a": NODES[0], b"b": NODES[1]}
    for name in sorted(many):
        args: list[Any] = [b"a", b"1", b"b", b"2"] if name == "MSET" else [b"a", b"b"]
        p = plan([cmd(name, *args)], place.__getitem__)
        assert p is not None and len(p.groups) == 2, name
    # Ops with several arguments that are not many keys are never cut.
    p = plan([cmd("SET", b"a", b"b")], place.__getitem__)
    assert p is None
