"""A NOTIFY that reaches the key's coordinator while a miss of that key is being loaded must not
answer the miss nil: the key has a row. The miss is answered the row as its load read it, or
the changed row (found by the chaos suite's loader checker, docs/chaos.md, "The read-through
loader under faults")."""

from __future__ import annotations

from pathlib import Path

import pytest
import trio

from tests.loader.helpers import Database, listening_node, wait_until

pytestmark = pytest.mark.postgres


@pytest.mark.trio
@pytest.mark.parametrize("on_notify", ["reload", "drop"])
async def test_a_miss_whose_load_meets_a_notify_is_not_answered_nil(
    tmp_path: Path, database: Database, on_notify: str
) -> None:
    async with listening_node(tmp_path, database, rows={}, delay=0.5, on_notify=on_notify) as on:
        table, loader, client = on.table, on.loader, on.client
        table.put("a", "1")  # the INSERT's NOTIFY: a key nobody held, nothing loads
        await wait_until(lambda: loader.stats["invalidations"] == 1, "the INSERT's NOTIFY")
        answers: list[bytes | None] = []

        async def get() -> None:
            answers.append(await client.get("a", namespace="items"))

        async with trio.open_nursery() as nursery:
            nursery.start_soon(get)
            await wait_until(lambda: loader.flights, "the miss's load in flight")
            await trio.to_thread.run_sync(table.put, "a", "2")  # NOTIFY during the load
        assert answers[0] in (b"1", b"2"), answers
