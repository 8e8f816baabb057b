"""The real local chat channel on a real socket, run in this process for fast tests of its limits.

Its event loop runs in a thread; the router side of the channel context
keeps the messages it is handed, so a test can see what was recorded.
`RawPeer` is the other end as an attacker holds it: a plain socket that
sends what it likes and reads line by line.
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
from pathlib import Path

from base.config import Settings
from router.channels.base import ChannelContext, InboundMessage, RegisteredChat
from router.channels.local import LocalChannel

CALL_TIMEOUT_S = 10.0


class ChannelInThread:
    def __init__(self, settings: Settings, jids: tuple[str, ...] = ("local:me",), **options):
        self.received: list[InboundMessage] = []
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="local-channel", daemon=True)
        self._thread.start()
        groups = {jid: RegisteredChat(jid=jid, name=jid, folder=jid.split(":")[1], is_main=False) for jid in jids}
        context = ChannelContext(settings, self._on_message, self._on_chat_metadata, lambda fresh=False: groups)
        self.channel = LocalChannel(context, **options)
        try:
            self.call(self.channel.connect())
        except BaseException:
            self._stop_loop()
            raise

    @property
    def path(self) -> Path:
        return self.channel.path

    def call(self, coroutine):
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(CALL_TIMEOUT_S)

    async def _on_message(self, channel: str, message: InboundMessage) -> int:
        self.received.append(message)
        return len(self.received)

    async def _on_chat_metadata(self, *_details) -> None:
        return None

    def close(self) -> None:
        try:
            self.call(self.channel.disconnect())
        finally:
            self._stop_loop()

    def _stop_loop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(CALL_TIMEOUT_S)
        self.loop.close()


class RawPeer:
    """A client that speaks the protocol by hand (or does not speak at all)."""

    def __init__(self, path: Path, timeout: float = 5.0):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        self.sock.connect(str(path))
        self._file = self.sock.makefile("rb")

    def line(self) -> dict | None:
        """The next line from the router, or None once it closed the connection."""
        raw = self._file.readline()
        return json.loads(raw) if raw else None

    def send(self, message: dict) -> None:
        self.sock.sendall((json.dumps(message) + "\n").encode())

    def close(self) -> None:
        self._file.close()
        self.sock.close()
