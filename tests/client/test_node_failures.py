"""A node killed with ``kill -9`` under load: idempotent calls are retried elsewhere, not lost.

Real node processes. Threads share one blocking client and loop over SET and GET while one of
three nodes is killed. Every SET and GET is idempotent, so none may fail with a connection
error: the retry must neither take another pooled connection to the dead node nor open a new
one to it (its listener may still accept while the process dies).
"""

from __future__ import annotations

import random
import threading
from collections import Counter
from pathlib import Path

import pytest

import meshcache
from tests.client.cluster import make_namespace, mesh
from tests.mesh.helpers import wait_for

pytestmark = pytest.mark.slow

THREADS = 6


def test_sets_and_gets_survive_a_kill_9(tmp_path: Path) -> None:
    with mesh(tmp_path) as nodes:
        make_namespace(nodes, "two", replicas=2)
        outcomes: Counter[str] = Counter()
        failures: list[str] = []
        stop = threading.Event()
        lock = threading.Lock()
        with meshcache.Client(",".join(n.data for n in nodes), timeout=5) as client:

            def work(seed: int) -> None:
                rnd = random.Random(seed)
                while not stop.is_set():
                    key = f"k{rnd.randrange(300)}"
                    for op in ("set", "get"):
                        try:
                            if op == "set":
                                client.set(key, b"v", namespace="two")
                            else:
                                client.get(key, namespace="two")
                            outcome = "ok"
                        except meshcache.MeshcacheError as exc:
                            outcome = type(exc).__name__
                            with lock:
                                failures.append(f"{op} {key}: {outcome}: {exc}")
                        with lock:
                            outcomes[outcome] += 1

            threads = [threading.Thread(target=work, args=(i,)) for i in range(THREADS)]
            for thread in threads:
                thread.start()
            try:
                wait_for(lambda: outcomes.total() >= 500, 30, "500 calls before the kill")
                nodes[2].kill()
                after = outcomes.total() + 3000
                wait_for(lambda: outcomes.total() >= after, 60, "3000 calls after the kill")
            finally:
                stop.set()
                for thread in threads:
                    thread.join(30)
        # A node's refusal (UNAVAILABLE, WRITE_FAILED) is an answer; a connection error or a
        # timeout on an idempotent call is what the client must not let through.
        lost = [f for f in failures if "MeshcacheConnectionError" in f or "MeshcacheTimeout" in f]
        assert lost == [], f"{outcomes}: {lost[:5]}"
