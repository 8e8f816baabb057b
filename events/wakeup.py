"""Wakes consumers of the log as soon as something is appended.

In the appending process the writer publishes each commit, which wakes
waiters at once. Appends by other processes are noticed by one poller
thread per process that asks SQLite for `PRAGMA data_version` every
`CROSS_PROCESS_POLL_S` while anybody waits: a few microseconds a probe,
and no cooperation needed from the other writer (sqlite-utils included).
"""

from __future__ import annotations

import sqlite3
import threading
import time
from typing import Callable

CROSS_PROCESS_POLL_S = 0.005


class Waker:
    """Tracks the highest committed seq and wakes whoever waits for more."""

    def __init__(self, connect: Callable[[], sqlite3.Connection]):
        self._connect = connect
        self._cond = threading.Condition()
        self._listeners: list[Callable[[int], None]] = []
        self._waiters = 0
        self._closed = False
        self._thread: threading.Thread | None = None
        probe = connect()
        try:
            self._seq = _max_seq(probe)
        finally:
            probe.close()

    @property
    def seq(self) -> int:
        return self._seq

    def published(self, seq: int) -> None:
        """Record that `seq` is committed; wake waiters and call listeners."""
        with self._cond:
            if seq <= self._seq:
                return
            self._seq = seq
            self._cond.notify_all()
            listeners = list(self._listeners)
        for listener in listeners:
            listener(seq)

    def wait_beyond(self, seq: int, timeout: float | None) -> int:
        """Block until the log holds something after `seq`, or the timeout passes."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            self._waiters += 1
            self._start_poller()
            try:
                while self._seq <= seq and not self._closed:
                    remaining = None if deadline is None else deadline - time.monotonic()
                    if remaining is not None and remaining <= 0:
                        break
                    self._cond.wait(remaining)
            finally:
                self._waiters -= 1
            return self._seq

    def add_listener(self, listener: Callable[[int], None]) -> None:
        """Call `listener(seq)` after every new commit, from the committing thread."""
        with self._cond:
            self._listeners.append(listener)
            self._start_poller()
            self._cond.notify_all()

    def remove_listener(self, listener: Callable[[int], None]) -> None:
        with self._cond:
            if listener in self._listeners:
                self._listeners.remove(listener)

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=2)

    def _start_poller(self) -> None:
        if self._thread is None and not self._closed:
            self._thread = threading.Thread(target=self._poll, name="eventlog-waker", daemon=True)
            self._thread.start()

    def _poll(self) -> None:
        conn = self._connect()
        try:
            version = conn.execute("PRAGMA data_version").fetchone()[0]
            while True:
                with self._cond:
                    while not self._closed and self._waiters == 0 and not self._listeners:
                        self._cond.wait()
                    if self._closed:
                        return
                time.sleep(CROSS_PROCESS_POLL_S)
                now = conn.execute("PRAGMA data_version").fetchone()[0]
                if now != version:
                    version = now
                    self.published(_max_seq(conn))
        finally:
            conn.close()


def _max_seq(conn: sqlite3.Connection) -> int:
    return conn.execute("SELECT coalesce(max(seq), 0) FROM events").fetchone()[0]
