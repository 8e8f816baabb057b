"""Follow-up messages and the close sentinel, read from `ipc/input/`.

The host pipes a message into a running container by renaming a JSON file
into this directory, and asks it to finish by creating `_close`. v1 polled
every 500 ms; Pro waits on inotify (through ctypes, no extra package), so a
message is read a few milliseconds after it lands. Where inotify is not
available the inbox polls every 50 ms instead.
"""

from __future__ import annotations

import asyncio
import ctypes
import json
import os
import select
import time
from pathlib import Path

from agent_runner.protocol import log

CLOSE_SENTINEL = "_close"
POLL_FALLBACK_S = 0.05
# A rescan even without events, in case the directory was replaced under
# the watch; it costs one listdir a second.
SAFETY_RESCAN_S = 1.0

IN_CLOSE_WRITE = 0x00000008
IN_MOVED_TO = 0x00000080
IN_CREATE = 0x00000100
IN_NONBLOCK = 0o4000
IN_CLOEXEC = 0o2000000
WATCH_MASK = IN_CLOSE_WRITE | IN_MOVED_TO | IN_CREATE


class _Inotify:
    """A non-blocking inotify descriptor watching one directory."""

    def __init__(self, directory: Path) -> None:
        libc = ctypes.CDLL(None, use_errno=True)
        fd = libc.inotify_init1(IN_NONBLOCK | IN_CLOEXEC)
        if fd < 0:
            raise OSError(ctypes.get_errno(), "inotify_init1 failed")
        if libc.inotify_add_watch(fd, os.fsencode(directory), WATCH_MASK) < 0:
            err = ctypes.get_errno()
            os.close(fd)
            raise OSError(err, f"inotify_add_watch failed on {directory}")
        self.fd = fd

    def clear(self) -> None:
        """Discard queued events; the caller rescans the directory anyway."""
        while True:
            try:
                if not os.read(self.fd, 65536):
                    return
            except BlockingIOError:
                return

    def close(self) -> None:
        os.close(self.fd)


class Inbox:
    """The container side of `ipc/input/`: drain messages, notice `_close`."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._watch: _Inotify | None = None
        self._taken: list[str] = []

    def take_consumed(self) -> list[str]:
        """Names of the message files read since the last call (the next output reports them)."""
        taken, self._taken = self._taken, []
        return taken

    def open(self) -> None:
        """Create the directory and start watching.

        A `_close` already there is kept: the host clears the folder before
        it starts a container, so one found now was written for this run
        (a worker stopping, a ready agent giving its slot up) before the
        runner was up, and is honoured at the first wait for input.
        """
        self.directory.mkdir(parents=True, exist_ok=True)
        try:
            self._watch = _Inotify(self.directory)
        except (OSError, AttributeError) as exc:
            log(f"inotify unavailable ({exc}); polling {self.directory} every {POLL_FALLBACK_S}s")
            self._watch = None

    @property
    def event_driven(self) -> bool:
        return self._watch is not None

    def close(self) -> None:
        if self._watch is not None:
            self._watch.close()
            self._watch = None

    def close_requested(self) -> bool:
        """True (once) when `_close` exists; the sentinel is consumed."""
        try:
            (self.directory / CLOSE_SENTINEL).unlink()
            return True
        except FileNotFoundError:
            return False
        except OSError as exc:
            log(f"could not remove {CLOSE_SENTINEL}: {exc}; treating it as a close request")
            return True

    def drain(self) -> list[str]:
        """Texts of pending `*.json` message files, in name order; files are deleted."""
        try:
            names = sorted(n for n in os.listdir(self.directory) if n.endswith(".json"))
        except OSError as exc:
            log(f"could not list {self.directory}: {exc}")
            return []
        texts = []
        for name in names:
            text = self._take(self.directory / name)
            if text:
                texts.append(text)
        return texts

    def _take(self, path: Path) -> str | None:
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            path.unlink()
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            log(f"dropping unreadable input file {path.name}: {exc}")
            _remove_quietly(path)
            return None
        if isinstance(data, dict) and data.get("type") == "message":
            text = data.get("text")
            if isinstance(text, str) and text:
                self._taken.append(path.name)
                return text
        return None

    def poll(self) -> list[str] | None:
        """None when a close was requested, else whatever messages are pending."""
        if self.close_requested():
            return None
        return self.drain()

    def next_messages(self) -> list[str] | None:
        """Block until messages arrive (returns them) or `_close` (returns None)."""
        while True:
            pending = self.poll()
            if pending is None or pending:
                return pending
            self._wait(SAFETY_RESCAN_S)

    async def next_messages_async(self) -> list[str] | None:
        """`next_messages` for an asyncio loop, without a blocked thread."""
        while True:
            pending = self.poll()
            if pending is None or pending:
                return pending
            await self._wait_async(SAFETY_RESCAN_S)

    def _wait(self, timeout_s: float) -> None:
        if self._watch is None:
            time.sleep(POLL_FALLBACK_S)
            return
        select.select([self._watch.fd], [], [], timeout_s)
        self._watch.clear()

    async def _wait_async(self, timeout_s: float) -> None:
        if self._watch is None:
            await asyncio.sleep(POLL_FALLBACK_S)
            return
        loop = asyncio.get_running_loop()
        ready = loop.create_future()

        def wake() -> None:
            if not ready.done():
                ready.set_result(None)

        loop.add_reader(self._watch.fd, wake)
        try:
            await asyncio.wait_for(ready, timeout_s)
        except asyncio.TimeoutError:
            pass
        finally:
            loop.remove_reader(self._watch.fd)
        self._watch.clear()


def _remove_quietly(path: Path) -> None:
    try:
        path.unlink()
    except OSError:
        pass
