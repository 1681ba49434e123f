"""docs/protocol.md against the code it describes: error codes, signature letters, and the
fields of answers built by the code (the answers of a running node: test_protocol_node.py)."""

from __future__ import annotations

import re
from pathlib import Path

from meshcache.control.bridge import RaftStatus
from meshcache.errors import ErrorCode
from meshcache.wire.ops import DATA_HANDLER, OPS

DOC = (Path(__file__).resolve().parents[2] / "docs" / "protocol.md").read_text(encoding="utf-8")


def section(title: str) -> str:
    """The text under a heading (any level) up to the next heading of the same or a higher
    level."""
    match = re.search(rf"^(#+) {re.escape(title)}\n", DOC, re.M)
    assert match, f"no section {title!r}"
    level = len(match.group(1))
    rest = DOC[match.end() :]
    end = re.search(rf"^#{{1,{level}}} ", rest, re.M)
    return rest[: end.start()] if end else rest


def table_row(op: str) -> str:
    [row] = [line for line in DOC.splitlines() if line.startswith(f"| `{op}` |")]
    return row


def test_the_error_table_lists_every_error_code_and_no_other() -> None:
    listed = re.findall(r"^\| `([A-Z_]+)` \|", section("Error codes"), re.M)
    assert len(listed) == len(set(listed)), "a code listed twice"
    assert set(listed) == {code.value for code in ErrorCode}


def test_every_signature_letter_is_documented() -> None:
    documented = set(re.findall(r"^\| `([a-z])` \|", section("Signature letters"), re.M))
    used = {letter for spec in OPS.values() for letter in spec.fixed + spec.repeat}
    assert used <= documented, used - documented
    assert "u" in documented and OPS["CAS"].signature == "kuvo?"


def test_raft_status_is_documented_with_the_fields_it_sends() -> None:
    status = RaftStatus("h:1", "leader", "h:1", ("h:1",), (), 1, 2, 2, True, True, 3)
    row = table_row("RAFT_STATUS")
    missing = [name for name in status.to_mapping() if f"`{name}`" not in row]
    assert not missing
    assert "self_address" not in row


def test_the_ops_that_ignore_the_namespace_are_the_node_ops_about_no_keyspace() -> None:
    sentence = re.search(r"\*\*ignores the namespace field\*\* — (.*?) —", DOC, re.S)
    assert sentence
    documented = set(re.findall(r"`([A-Z_]+)`", sentence.group(1)))
    keyspace_ops = {
        "DBSIZE",
        "SCAN",
        "SCAN_PART",
        "FWD",
        "RELAY",  # the namespace of each request it carries
        "REPL",
        "BULK",
        "RECORDS",
        "HANDOFF",
        "AE_DIGEST",
        "AE_KEYS",
        "AE_PULL",
        "AE_PUSH",
        "HOT_PUSH",
        "HOT_DROP",
    }
    node_ops = {name for name, spec in OPS.items() if spec.handler != DATA_HANDLER}
    assert documented == node_ops - keyspace_ops


def test_dbsize_documents_its_option_and_both_answers() -> None:
    row = table_row("DBSIZE")
    assert OPS["DBSIZE"].options == frozenset({"owned", "mesh"})
    assert all(f"`{name}`" in row for name in ("owned", "mesh", "count", "ring_version"))
