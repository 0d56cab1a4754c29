"""A request-rate limit shared by every thread and every process on this machine.

NCBI counts requests per API key (or IP address) per second, whichever process sends them, so a per-process
limiter is not enough. Processes agree through a small file, locked with ``fcntl.flock``, that holds the
earliest time (``time.time()``) the next request may go. Whoever holds the lock sleeps until that time,
then writes the next slot: requests leave at least ``1 / rate`` seconds apart (plus a small safety margin
that absorbs network and scheduling jitter, so the server never sees more than ``rate`` in any one second).
"""

from __future__ import annotations

import fcntl
import logging
import math
import os
import threading
import time
from pathlib import Path

log = logging.getLogger("medlit.entrez")

# Spacing is 1/rate widened by this fraction: requests can reach the server a few milliseconds earlier
# or later than they left the limiter, and a burst of ``rate + 1`` must never fit in one second there.
SAFETY_MARGIN = 0.05
_READ_SIZE = 64


class RateLimiter:
    """``wait()`` before each request; all users of the same ``lock_path`` together stay within ``rate``."""

    def __init__(self, rate_per_second: float, lock_path: Path) -> None:
        if not rate_per_second > 0 or not math.isfinite(rate_per_second):
            raise ValueError(f"rate must be a positive number of requests per second, not {rate_per_second}")
        self.rate = float(rate_per_second)
        self.lock_path = Path(lock_path)
        self.interval = (1.0 / self.rate) * (1.0 + SAFETY_MARGIN)
        self._lock = threading.Lock()
        self._local_next = 0.0  # used only when the lock file cannot be opened
        self._file_usable = True

    def __repr__(self) -> str:
        return f"RateLimiter(rate={self.rate:g}/s, lock_path={str(self.lock_path)!r})"

    def wait(self) -> float:
        """Block until this caller may send one request; returns the seconds slept."""
        with self._lock:
            fd = self._open() if self._file_usable else None
            if fd is None:
                return self._wait_local()
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                slept = self._sleep_until(self._read_next(fd))
                self._write_next(fd, time.time() + self.interval)
                return slept
            finally:
                os.close(fd)  # also releases the flock

    def _open(self) -> int | None:
        """The lock file, opened afresh (flock is per open file description, so threads contend too)."""
        try:
            self.lock_path.parent.mkdir(parents=True, exist_ok=True)
            return os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o666)
        except OSError as exc:
            log.warning(
                "rate-limit file %s unusable (%s): limiting this process only", self.lock_path, exc.strerror
            )
            self._file_usable = False
            return None

    def _read_next(self, fd: int) -> float:
        """The next allowed time from the file; empty, corrupt or absurd contents count as 'now'."""
        try:
            raw = os.pread(fd, _READ_SIZE, 0)
            value = float(raw.decode("ascii").strip() or "0")
        except (OSError, UnicodeDecodeError, ValueError):
            return 0.0
        if not math.isfinite(value):
            return 0.0
        # A slot can lie at most one interval ahead; anything later is garbage or a clock that jumped back.
        return min(value, time.time() + self.interval)

    def _write_next(self, fd: int, value: float) -> None:
        data = f"{value:.6f}\n".encode("ascii")
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, data, 0)
        except OSError as exc:  # a full disk must not stop requests; the lock alone still serialises them
            log.warning("cannot write rate-limit file %s (%s)", self.lock_path, exc.strerror)

    def _sleep_until(self, when: float) -> float:
        delay = when - time.time()
        if delay <= 0:
            return 0.0
        time.sleep(delay)
        return delay

    def _wait_local(self) -> float:
        slept = self._sleep_until(min(self._local_next, time.time() + self.interval))
        self._local_next = time.time() + self.interval
        return slept
