"""tools/redis_py_suite.py: counting redis-py's JUnit report by command family."""

from __future__ import annotations

import xml.etree.ElementTree as ET

from tools.redis_py_suite import UNSUPPORTED, family_of, outcome_of

REPORT = """<testsuites><testsuite name="pytest">
<testcase classname="tests.test_commands.TestRedisCommands" name="test_zadd_nx"/>
<testcase classname="tests.test_commands.TestRedisCommands" name="test_zadd_gt_lt">
  <failure message="AssertionError: assert 1 == 2">...</failure></testcase>
<testcase classname="tests.test_commands.TestRedisCommands" name="test_get_and_set"/>
<testcase classname="tests.test_commands.TestRedisCommands" name="test_set_keepttl">
  <skipped message="redis version"/></testcase>
<testcase classname="tests.test_commands.TestRedisCommands" name="test_xadd">
  <failure message="unknown command 'XADD'">...</failure></testcase>
%s
</testsuite></testsuites>"""
INTERNAL = (
    '<testcase classname="pytest" name="internal"><error message="internal error"/></testcase>'
)


def test_tests_are_counted_by_family() -> None:
    outcome = outcome_of(ET.ElementTree(ET.fromstring(REPORT % "")), 2, "summary")
    assert not outcome.incomplete
    z = outcome.families["sortedset"]
    assert (z.passed, z.failed, z.skipped) == (1, 1, 0)
    s = outcome.families["string"]
    assert (s.passed, s.failed, s.skipped) == (1, 0, 1)
    assert outcome.families[UNSUPPORTED].failed == 1
    assert outcome.failures[0] == ("test_zadd_gt_lt", "sortedset", "AssertionError: assert 1 == 2")
    assert family_of("test_client_setname") == "connection"
    assert family_of("test_xadd") == UNSUPPORTED


def test_an_internal_error_flags_the_run_incomplete() -> None:
    outcome = outcome_of(ET.ElementTree(ET.fromstring(REPORT % INTERNAL)), 3, "summary")
    assert outcome.incomplete
    assert "internal" not in [name for name, _, _ in outcome.failures]
