"""``meshcache top``: the textual admin console.

Layers, each usable without the ones after it:

* :mod:`~meshcache.tui.source` — where figures come from: :class:`LiveSource` polls every
  member directly and concurrently; :class:`RecordedSource` replays recorded polls (tests,
  screenshots).
* :mod:`~meshcache.tui.model` — :class:`ClusterModel` turns polls into :class:`Snapshot` rows
  and an event log; no widgets, no I/O. :mod:`~meshcache.tui.hotkeys` merges the nodes'
  ``HOTKEYS`` answers for it.
* :mod:`~meshcache.tui.actions` — what drain, remove and a policy edit send, and when they are
  refused; no widgets, no I/O.
* :mod:`~meshcache.tui.views`, :mod:`~meshcache.tui.table`, :mod:`~meshcache.tui.dialogs`,
  :mod:`~meshcache.tui.app` — the widgets and :class:`TopApp`.
* :mod:`~meshcache.tui.main` — the command: flags, a first check of the node, then the app.

A new view is a :class:`~meshcache.tui.views.View` subclass turning
a snapshot into rows, listed in :data:`~meshcache.tui.views.VIEWS`; its figures come from the
poll (a new op in :class:`LiveSource`'s batch, read by the model).
"""

from __future__ import annotations

from meshcache.tui.model import ClusterModel, Snapshot
from meshcache.tui.source import LiveSource, NodeReply, Poll, RecordedSource

__all__ = ["ClusterModel", "LiveSource", "NodeReply", "Poll", "RecordedSource", "Snapshot"]
