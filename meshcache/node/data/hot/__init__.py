"""Hot keys: detection at the owner, copies under a lease on other nodes (docs/hotkeys.md).

* :mod:`.sketch` — sampled, decaying Space-Saving top-K (pure);
* :mod:`.area` — a node's bounded LRU area of copies (sans-I/O);
* :mod:`.keys` — :class:`HotKeys`, the owner's and the holder's side, wired by the assembly.
"""

from meshcache.node.data.hot.area import HotArea
from meshcache.node.data.hot.keys import HotKeys
from meshcache.node.data.hot.sketch import HotSketch, SpaceSaving

__all__ = ["HotArea", "HotKeys", "HotSketch", "SpaceSaving"]
