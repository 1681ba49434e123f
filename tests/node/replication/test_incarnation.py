"""A dropped namespace's data: gone from a store that learns of the drop late, and discarded
when its records arrive after the namespace was created again."""

from __future__ import annotations

import random

from meshcache.control.config import (
    ClusterConfig,
    CreateNamespace,
    DropNamespace,
    UpdateNamespace,
    apply,
)
from meshcache.hlc import HLC, make_version
from meshcache.node.cluster.config import install_namespaces
from meshcache.node.data.replication.tombstones import Tombstone, apply_record
from meshcache.store import EntryView, Store
from meshcache.store.sizes import VERSION_HEADER
from meshcache.store.store import pack_version

NOW_MS = 1_700_000_000_000
OLD = make_version(NOW_MS - 1000)
FLOOR = make_version(NOW_MS - 500)
NEW = make_version(NOW_MS - 100)


def make_store() -> Store:
    return Store(
        clock=lambda: NOW_MS / 1000,
        hlc=HLC(lambda: NOW_MS),
        tombstone_grace_s=60,
        rng=random.Random(1),
    )


def created(floor: int = FLOOR) -> tuple[ClusterConfig, ClusterConfig]:
    """A config holding namespace ``s``, and the one after it was dropped and created again."""
    v1 = apply(ClusterConfig(version=1), CreateNamespace(1, "s", floor=1))
    v2 = apply(v1, DropNamespace(2, "s"))
    return v1, apply(v2, CreateNamespace(3, "s", floor=floor))


def test_a_store_that_learns_a_drop_and_re_creation_at_once_drops_the_keys() -> None:
    store = make_store()
    v1, v3 = created()
    install_namespaces(store, ClusterConfig(), v1)
    store.execute("s", "SET", [b"k", b"old", {}])
    assert install_namespaces(store, v1, v3) == ["s"]
    assert store.execute("s", "GET", [b"k"]) is None
    assert store.floor("s") == FLOOR


def test_a_store_keeps_the_keys_of_the_same_incarnation() -> None:
    store = make_store()
    v1, _ = created()
    install_namespaces(store, ClusterConfig(), v1)
    store.execute("s", "SET", [b"k", b"v", {}])
    v2 = apply(v1, UpdateNamespace(2, "s", {"max_items": 10}))
    assert install_namespaces(store, v1, v2) == []
    assert store.execute("s", "GET", [b"k"]) == b"v"
    assert store.policy("s").max_items == 10


def test_configs_without_incarnations_keep_the_keys() -> None:
    store = make_store()
    legacy = {"version": 3, "members": [], "namespaces": {"default": {}, "s": {}}}
    old = ClusterConfig.from_mapping(legacy)
    new = ClusterConfig.from_mapping({**legacy, "version": 4})
    install_namespaces(store, ClusterConfig(), old)
    store.execute("s", "SET", [b"k", b"v", {}])
    assert install_namespaces(store, old, new) == []
    assert store.execute("s", "GET", [b"k"]) == b"v"


def test_records_of_an_earlier_incarnation_are_discarded_and_counted() -> None:
    store = make_store()
    _, v3 = created()
    install_namespaces(store, ClusterConfig(), v3)
    assert not apply_record(store, "s", b"a", EntryView("bytes", b"old", None, OLD))
    assert not apply_record(store, "s", b"b", Tombstone(OLD))
    assert not apply_record(store, "s", b"c", EntryView("bytes", b"old", None, FLOOR))
    assert not store.apply_plain("s", b"d", b"old", OLD)
    assert store.incarnation_discarded["s"] == 4
    assert apply_record(store, "s", b"a", EntryView("bytes", b"new", None, NEW))
    assert store.apply_plain("s", b"d", b"new", NEW)
    assert store.execute("s", "GET", [b"a"]) == b"new"
    assert store.execute("s", "GET", [b"b"]) is None
    assert store.execute("s", "GET", [b"d"]) == b"new"


def test_blobs_of_an_earlier_incarnation_are_discarded_as_stale() -> None:
    store = make_store()
    _, v3 = created()
    install_namespaces(store, ClusterConfig(), v3)
    blobs = [pack_version(OLD) + b"old", pack_version(NEW) + b"new", pack_version(OLD) + b"x"]
    assert len(blobs[0]) > VERSION_HEADER
    done = store.apply_blobs("s", [b"a", b"b", b"c"], blobs, make_version(NOW_MS + 1000))
    assert (done.applied, done.stale) == (1, 2)
    assert store.incarnation_discarded["s"] == 2
    assert store.execute("s", "GET", [b"a"]) is None
    assert store.execute("s", "GET", [b"b"]) == b"new"


def test_writes_after_the_floor_was_installed_are_above_it() -> None:
    store = make_store()
    ahead = make_version(NOW_MS + 200)  # the proposer's clock runs ahead of this node's
    _, v3 = created(floor=ahead)
    install_namespaces(store, ClusterConfig(), v3)
    store.execute("s", "SET", [b"k", b"v", {}])
    entry = store.get_entry("s", b"k")
    assert entry is not None and entry.version > ahead
