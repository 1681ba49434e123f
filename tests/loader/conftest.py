"""A real PostgreSQL for the loader tests: ``MESHCACHE_TEST_PG_DSN``, or one started here.

The server (initdb + postgres in a temp dir, on a free port) lives for the test session and is
stopped at its end; it also dies with the test process (parent-death signal). Without the
server binaries the tests skip, except under ``CI=true``, where they fail.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from meshcache.testing.postgres import PostgresServer, server_binaries, test_dsn
from tests.loader.helpers import Database


@pytest.fixture(scope="session")
def database() -> Iterator[Database]:
    dsn = test_dsn()
    if dsn is not None:
        yield Database(dsn, None)
        return
    if server_binaries() is None:
        if os.environ.get("CI") == "true":
            pytest.fail("PostgreSQL server binaries are missing (CI must run the loader tests)")
        pytest.skip("PostgreSQL server binaries are not installed")
    with PostgresServer() as server:
        yield Database(server.dsn, server)
