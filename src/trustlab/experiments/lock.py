"""One run at a time per output directory: an exclusive ``flock`` on ``DIR/.lock``.

Two ``trustlab run`` on the same ``--out`` would both plan the same unfinished trials and
both do all the work. The lock is held for the whole run; the kernel drops it when the
holder exits, however it exits (a SIGKILLed run does not leave a stale lock, so a resume
just works). The holder writes its pid into the file so the refusal can name it.
"""

from __future__ import annotations

import os
from pathlib import Path

from trustlab.errors import TrustlabError

LOCK_NAME = ".lock"

try:
    import fcntl
except ImportError:  # Windows: no flock; runs there are not protected against each other
    fcntl = None


class RunLock:
    """``with RunLock(dir):`` holds the directory's lock (the directory must exist)."""

    def __init__(self, directory: str | Path) -> None:
        self.directory = Path(directory)
        self.path = self.directory / LOCK_NAME
        self.fd: int | None = None

    def acquire(self) -> "RunLock":
        if fcntl is None:
            return self
        try:
            # os.open's descriptors are not inherited by spawned workers (O_CLOEXEC), so an
            # orphaned worker can never keep the lock.
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise TrustlabError(f"cannot write to {self.directory}: "
                                f"{exc.strerror or exc}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            holder = _read_pid(fd)
            os.close(fd)
            raise TrustlabError(f"another trustlab run is using {self.directory} "
                                f"(pid {holder or 'unknown'}); wait for it to finish or "
                                "choose another --out") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self.fd = fd
        return self

    def release(self) -> None:
        if self.fd is not None:
            # The file stays: unlinking a lock file races with a process that opened it.
            os.close(self.fd)  # closing the only descriptor releases the flock
            self.fd = None

    def __enter__(self) -> "RunLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


def _read_pid(fd: int) -> str:
    try:
        text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
    except OSError:
        return ""
    return text if text.isdigit() else ""
