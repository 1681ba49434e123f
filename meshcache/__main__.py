"""``python -m meshcache``: the same as the ``meshcache`` command."""

from __future__ import annotations

import sys

from meshcache.cli import main

if __name__ == "__main__":
    sys.exit(main())
