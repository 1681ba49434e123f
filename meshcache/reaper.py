"""``python -m meshcache.reaper DIR``: remove the directory ``DIR`` once its owner is gone.

The owner (``meshcache demo`` with a temporary directory) starts it in a session of its own with
a pipe on stdin and keeps the pipe's other end. The reaper blocks reading stdin; the read ends
when the owner closes the pipe (a normal exit) or dies (SIGKILL included: the kernel closes the
pipe). Unless the owner wrote ``keep`` first (a failed start keeps the logs its message points
to), the directory is removed. The owner's children may still be writing their last lines when
the owner dies: removal is retried briefly so files they create while stopping go too.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

KEEP = b"keep"
_RETRIES = 20  # times the directory is removed again while stopping children may write to it
_RETRY_EVERY = 0.1  # seconds between those tries


def start(directory: Path) -> subprocess.Popen[bytes]:
    """Start a reaper for ``directory``; write :data:`KEEP` to its stdin to keep the directory.

    The caller closes the reaper's stdin when it is done with the directory and waits for it.
    """
    return subprocess.Popen(
        [sys.executable, "-m", "meshcache.reaper", str(directory)],
        stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # a Ctrl-C to the owner's process group does not reach it
    )


def reap(directory: Path) -> None:
    """Remove ``directory``, again for a short while if something recreates files in it."""
    for _ in range(_RETRIES):
        shutil.rmtree(directory, ignore_errors=True)
        time.sleep(_RETRY_EVERY)
        if not directory.exists():
            return
    shutil.rmtree(directory, ignore_errors=True)


def wait_for_owner() -> bytes:
    """Block until the owner closes stdin or dies; return what it wrote. Ignores group signals."""
    for sig in (signal.SIGINT, signal.SIGHUP, signal.SIGTERM):
        signal.signal(sig, signal.SIG_IGN)
    return sys.stdin.buffer.read()


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        sys.stderr.write("usage: python -m meshcache.reaper DIR\n")
        return 2
    if wait_for_owner() != KEEP:
        reap(Path(argv[0]))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
