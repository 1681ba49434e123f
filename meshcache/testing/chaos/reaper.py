"""``python -m meshcache.testing.chaos.reaper RID``: remove run ``RID`` once its owner is gone.

Started by :class:`~meshcache.testing.chaos.ChaosCluster` in a session of its own with a pipe
on stdin. It blocks reading stdin; the read ends when the owner closes the pipe (a normal exit,
after its own cleanup) or dies (SIGKILL included: the kernel closes the pipe). Then it runs
:func:`~meshcache.testing.chaos.netns.reap` for the run (nothing when a live run still holds
the id's lock after a few seconds) and exits.
"""

from __future__ import annotations

import sys

from meshcache.reaper import wait_for_owner
from meshcache.testing.chaos.netns import reap

#: Seconds the reaper waits for its dead owner's lock to be released (see :func:`reap`).
REAP_WAIT = 10.0


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        sys.stderr.write("usage: python -m meshcache.testing.chaos.reaper RID\n")
        return 2
    wait_for_owner()
    reap(argv[0], wait=REAP_WAIT)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
