"""redis-py's own test suite against a meshcache node's RESP port, counted by command family.

    python -m tools.redis_py_suite                      # RESP2 and RESP3, a table per protocol
    python -m tools.redis_py_suite --protocols 3 --failures 40 --json out.json
    python -m tools.redis_py_suite --supported-only   # only the tests the pass rate counts

redis-py's source distribution ships its tests. This script fetches the sdist of the redis-py
version installed here from the package index with pip (``pip download redis==VERSION
--no-binary :all: --no-deps``, kept in ``--cache``, so a second run downloads nothing),
unpacks its ``tests/``, starts one meshcache node with a RESP port (``meshcache start
--resp-port 0``, see tools/resp_bench.py) and the namespaces ``db1`` to ``db15`` (Redis's
databases 1 to 15: ``SELECT 9`` works), and runs ``tests/test_commands.py`` with
``--redis-url=redis://127.0.0.1:PORT/0 -m "not onlycluster"`` (how redis-py runs its suite
against a standalone server) under ``--protocol=2`` and ``--protocol=3``.

Every test is put in the family of the command its name starts with (``test_zpopmin_...`` is
a sorted-set test, ``test_client_setname`` a connection test): the command's group in
meshcache's RESP command table (``meshcache/resp/commands.py``). A test whose command (or
``CLIENT``/``CONFIG``/``COMMAND`` subcommand) meshcache does not have is counted under
``not supported`` and left out of the pass rate; docs/resp.md lists those commands and why.
The pass rate of a family is passed / (passed + failed): skipped tests (redis-py skips tests
for server versions and modules it does not find) count neither way. When pytest stops on an
internal error (a test that runs out of ``--timeout`` can stop the whole run on a loaded
machine), the counts cover only the tests run before it: the run is flagged INCOMPLETE and the
script exits 1.
"""

from __future__ import annotations

import argparse
import collections
import importlib.metadata
import json
import subprocess
import sys
import tarfile
import tempfile
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

from tools.resp_bench import resp_node

SUITE_FILES = ("tests/test_commands.py",)
#: Redis's 16 databases: 0 is namespace ``default``, the others ``db1`` ... ``db15``.
DATABASES = 16
UNSUPPORTED = "not supported"
DEFAULT_CACHE = Path.home() / ".cache" / "meshcache" / "redis-py"


@dataclass
class FamilyCount:
    passed: int = 0
    failed: int = 0
    skipped: int = 0

    @property
    def rate(self) -> float:
        ran = self.passed + self.failed
        return self.passed / ran if ran else 1.0


@dataclass
class Outcome:
    """One protocol's run: counts by family, and each failure's test, family and reason."""

    protocol: int
    families: dict[str, FamilyCount] = field(default_factory=dict)
    failures: list[tuple[str, str, str]] = field(default_factory=list)
    summary: str = ""  # pytest's last line ("12 failed, 300 passed, ... in 60s")
    #: pytest stopped on an internal error (its report names a test ``internal``): the counts
    #: cover only the tests run before it.
    incomplete: bool = False


def sdist(version: str, cache: Path) -> Path:
    """The redis-py source distribution of ``version``, from the cache or the package index."""
    cache.mkdir(parents=True, exist_ok=True)
    found = sorted(cache.glob(f"redis-{version}.tar.gz"))
    if found:
        return found[0]
    subprocess.run(
        [sys.executable, "-m", "pip", "download", f"redis=={version}", "--no-binary", ":all:",
         "--no-deps", "--quiet", "-d", str(cache)],
        check=True, timeout=600,
    )  # fmt: skip
    return cache / f"redis-{version}.tar.gz"


def unpack_tests(archive: Path, into: Path) -> Path:
    """Unpack the sdist's ``tests/`` (and what its conftest reads) under ``into``; its root."""
    with tarfile.open(archive) as tar:
        top = tar.getnames()[0].split("/", 1)[0]
        members = [
            m
            for m in tar.getmembers()
            if m.name.startswith(f"{top}/tests/") or (m.name.count("/") == 1 and m.isfile())
        ]
        tar.extractall(into, members=members, filter="data")
    return into / top


def family_of(test_name: str) -> str:
    """The family of a redis-py test: the group of the meshcache command its name starts
    with, or :data:`UNSUPPORTED`."""
    from meshcache.resp.commands import COMMANDS

    words = test_name.split("[", 1)[0].removeprefix("test_").split("_")
    for n in range(len(words), 0, -1):
        command = COMMANDS.get("".join(words[:n]).encode())
        if command is None:
            continue
        if command.subcommands:
            rest = words[n:]
            sub = next(
                (
                    "".join(rest[:m])
                    for m in range(len(rest), 0, -1)
                    if "".join(rest[:m]) in command.subcommands
                ),
                None,
            )
            if sub is None:
                return UNSUPPORTED
        return command.group
    return UNSUPPORTED


def supported_tests(root: Path, common: list[str]) -> list[str]:
    """The node ids of the collected tests whose family meshcache supports."""
    done = subprocess.run(
        [sys.executable, "-m", "pytest", *SUITE_FILES, "-q", "--collect-only", *common],
        cwd=root, capture_output=True, text=True, timeout=600, check=True,
    )  # fmt: skip
    ids = [line for line in done.stdout.splitlines() if "::" in line]
    return [i for i in ids if family_of(i.rsplit("::", 1)[1]) != UNSUPPORTED]


def run_suite(
    root: Path, port: int, protocol: int, timeout: float, *, supported_only: bool = False
) -> Outcome:
    """Run the suite files once with ``--protocol``; the outcome by family. With
    ``supported_only``, only the tests of the families meshcache supports run."""
    common = [
        "-p", "no:cacheprovider", f"--redis-url=redis://127.0.0.1:{port}/0",
        f"--protocol={protocol}", "-m", "not onlycluster",
    ]  # fmt: skip
    tests = supported_tests(root, common) if supported_only else list(SUITE_FILES)
    with tempfile.TemporaryDirectory(prefix="redis-py-") as tmp:
        report = Path(tmp) / "junit.xml"
        done = subprocess.run(
            [sys.executable, "-m", "pytest", *tests, "-q", *common, f"--timeout={timeout:g}",
             f"--junitxml={report}", "-o", "junit_family=xunit1"],
            cwd=root, capture_output=True, text=True, timeout=3600, check=False,
        )  # fmt: skip
        tree = ET.parse(report)
    lines = done.stdout.strip().splitlines()
    return outcome_of(tree, protocol, lines[-1] if lines else done.stderr[-300:])


def outcome_of(tree: ET.ElementTree[ET.Element], protocol: int, summary: str) -> Outcome:
    """Count a JUnit report (pytest's ``--junitxml``, xunit1) by family."""
    outcome = Outcome(protocol, summary=summary)
    for case in tree.iter("testcase"):
        name = case.get("name", "")
        if name == "internal" and case.get("classname") == "pytest":
            outcome.incomplete = True
            continue
        family = family_of(name)
        counts = outcome.families.setdefault(family, FamilyCount())
        failure = case.find("failure")
        if failure is None:
            failure = case.find("error")
        if failure is not None:
            counts.failed += 1
            reason = (failure.get("message") or "").splitlines()[0][:200]
            outcome.failures.append((name, family, reason))
        elif case.find("skipped") is not None:
            counts.skipped += 1
        else:
            counts.passed += 1
    return outcome


def table(outcome: Outcome) -> str:
    lines = [
        f"RESP{outcome.protocol}",
        "",
        "| family | passed | failed | skipped | pass rate |",
        "|---|---|---|---|---|",
    ]
    supported = FamilyCount()
    for name, c in sorted(outcome.families.items(), key=lambda item: item[0] == UNSUPPORTED):
        lines.append(f"| {name} | {c.passed} | {c.failed} | {c.skipped} | {c.rate:.0%} |")
        if name != UNSUPPORTED:
            supported.passed += c.passed
            supported.failed += c.failed
            supported.skipped += c.skipped
    lines.append(
        f"| **supported families** | {supported.passed} | {supported.failed} "
        f"| {supported.skipped} | {supported.rate:.1%} |"
    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tools.redis_py_suite",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--protocols", type=int, nargs="+", default=[2, 3], choices=[2, 3])
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE, help="where the sdist is kept")
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds per test (a "
                        "loaded machine needs room: a test that runs out of it can stop the "
                        "whole pytest run)")  # fmt: skip
    parser.add_argument("--failures", type=int, default=200, help="failures of supported "
                        "families to list (0: none)")  # fmt: skip
    parser.add_argument("--json", type=Path, help="also write every outcome here")
    parser.add_argument("--supported-only", action="store_true",
                        help="run only the tests of the families meshcache supports")  # fmt: skip
    args = parser.parse_args(argv)

    version = importlib.metadata.version("redis")
    archive = sdist(version, args.cache)
    outcomes: list[Outcome] = []
    with tempfile.TemporaryDirectory(prefix="redis-py-tests-") as tmp:
        root = unpack_tests(archive, Path(tmp))
        config = Path(tmp) / "node.toml"
        config.write_text("".join(f"[namespaces.db{i}]\n" for i in range(1, DATABASES)))
        with resp_node("--config", str(config)) as node:
            for protocol in args.protocols:
                outcomes.append(
                    run_suite(
                        root, node.resp_port, protocol, args.timeout,
                        supported_only=args.supported_only,
                    )
                )  # fmt: skip
    print(f"redis-py {version}: {', '.join(SUITE_FILES)} against one meshcache node")
    for outcome in outcomes:
        print()
        print(table(outcome))
        print(f"pytest: {outcome.summary}")
        if outcome.incomplete:
            print("pytest stopped on an internal error: these counts are INCOMPLETE")
        listed = [f for f in outcome.failures if f[1] != UNSUPPORTED][: args.failures]
        if listed:
            print()
            reasons = collections.Counter(reason for _, _, reason in listed)
            for name, family, reason in listed:
                print(f"- {family}: {name}: {reason}")
            print(f"({len(reasons)} distinct reasons)")
    if args.json is not None:
        args.json.write_text(
            json.dumps(
                [
                    {
                        "protocol": o.protocol,
                        "families": {k: vars(v) for k, v in o.families.items()},
                        "failures": o.failures,
                        "summary": o.summary,
                        "incomplete": o.incomplete,
                    }
                    for o in outcomes
                ],
                indent=1,
            )
        )
    return 1 if any(o.incomplete for o in outcomes) else 0


if __name__ == "__main__":
    sys.exit(main())
