"""Nothing a process starts outlives it: children that die with their parent, and
``python -m meshcache.reaper DIR``, which removes the directory ``DIR`` once its owner is gone.

:func:`die_with_parent` is a ``preexec_fn`` (or a first call in a forked worker) that asks the
kernel for a signal when the parent dies (``PR_SET_PDEATHSIG``, Linux): ``meshcache demo``'s
nodes and ``tools/bench``'s servers and load workers stop when their owner is killed, SIGKILL
included. :func:`temporary_directory` is a temporary directory with a reaper behind it.

The reaper:
The owner (``meshcache demo`` with a temporary directory) starts it in a session of its own with
a pipe on stdin and keeps the pipe's other end. The reaper blocks reading stdin; the read ends
when the owner closes the pipe (a normal exit) or dies (SIGKILL included: the kernel closes the
pipe). Unless the owner wrote ``keep`` first (a failed start keeps the logs its message points
to), the directory is removed. The owner's children may still be writing their last lines when
the owner dies: removal is retried briefly so files they create while stopping go too.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

KEEP = b"keep"
PR_SET_PDEATHSIG = 1  # <linux/prctl.h>
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


def die_with_parent(sig: int = signal.SIGTERM) -> Callable[[], None] | None:
    """A function that makes the calling process get ``sig`` when its parent dies (Linux), or
    None elsewhere.

    Made in the parent, called in the child: as a ``subprocess.Popen`` ``preexec_fn`` (between
    fork and exec) or first thing in a forked worker. The signal comes when the *thread* that
    forked the child ends, so fork from the thread that lives as long as the child should. If
    the parent died before the prctl took effect, the child is already an orphan and exits.
    """
    if not sys.platform.startswith("linux"):
        return None
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]
    prctl.restype = ctypes.c_int
    parent = os.getpid()

    def in_child() -> None:
        prctl(PR_SET_PDEATHSIG, sig, 0, 0, 0)
        if os.getppid() != parent:
            os._exit(1)

    return in_child


@contextlib.contextmanager
def temporary_directory(prefix: str) -> Iterator[Path]:
    """A new temporary directory, removed on the way out by its reaper, which also removes it
    when this process is killed (SIGKILL included)."""
    path = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        reaper = start(path)
    except BaseException:
        shutil.rmtree(path, ignore_errors=True)
        raise
    try:
        yield path
    finally:
        assert reaper.stdin is not None
        reaper.stdin.close()  # the reaper removes the directory and exits
        reaper.wait()


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
