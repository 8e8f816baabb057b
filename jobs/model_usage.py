"""What one model call cost: the model and token counts the API reported.

The gateway passes the API's response bytes through untouched and at once;
this reader only watches them go by. A streamed answer is Server-Sent
Events: `message_start` carries the model and the input and cache tokens,
each `message_delta` the output tokens so far. A plain JSON answer carries
the same `usage` object at its top level. Anything unreadable is ignored:
usage is recorded, never required.
"""

from __future__ import annotations

from dataclasses import dataclass

import msgspec

MAX_LINE_BYTES = 1 << 20     # one SSE line we still look at; longer lines are passed on unread
MAX_JSON_BYTES = 8 << 20     # a non-streamed body we still parse for its usage


@dataclass
class Usage:
    model: str | None = None
    input_tokens: int | None = None
    output_tokens: int | None = None
    cache_creation_input_tokens: int | None = None
    cache_read_input_tokens: int | None = None

    def take(self, usage: object) -> None:
        """Copy the integer counts of an API `usage` object; later reports replace earlier ones."""
        if not isinstance(usage, dict):
            return
        for name in ("input_tokens", "output_tokens", "cache_creation_input_tokens", "cache_read_input_tokens"):
            value = usage.get(name)
            if isinstance(value, int) and not isinstance(value, bool):
                setattr(self, name, value)


class UsageReader:
    """Fed the response body chunk by chunk, as it is forwarded."""

    def __init__(self, streamed: bool):
        self.streamed = streamed
        self.usage = Usage()
        self._pending = bytearray()
        self._overflow = False

    def feed(self, chunk: bytes) -> None:
        if self.streamed:
            self._feed_sse(chunk)
        elif len(self._pending) + len(chunk) <= MAX_JSON_BYTES:
            self._pending += chunk
        else:
            self._overflow = True

    def finish(self) -> Usage:
        if not self.streamed and not self._overflow:
            message = _json(bytes(self._pending))
            if isinstance(message, dict):
                self._take_message(message)
        return self.usage

    def _feed_sse(self, chunk: bytes) -> None:
        self._pending += chunk
        while (end := self._pending.find(b"\n")) >= 0:
            line = bytes(self._pending[:end])
            del self._pending[:end + 1]
            if not self._overflow and line.startswith(b"data:"):
                self._take_event(_json(line[5:].strip()))
            self._overflow = False
        if len(self._pending) > MAX_LINE_BYTES:
            self._pending.clear()
            self._overflow = True  # the rest of this line is skipped

    def _take_event(self, event: object) -> None:
        if not isinstance(event, dict):
            return
        if event.get("type") == "message_start" and isinstance(event.get("message"), dict):
            self._take_message(event["message"])
        elif event.get("type") == "message_delta":
            self.usage.take(event.get("usage"))

    def _take_message(self, message: dict) -> None:
        if isinstance(message.get("model"), str):
            self.usage.model = message["model"]
        self.usage.take(message.get("usage"))


def _json(data: bytes) -> object:
    try:
        return msgspec.json.decode(data)
    except (msgspec.DecodeError, UnicodeDecodeError, RecursionError):
        return None
