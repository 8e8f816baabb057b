"""The other end of the local chat socket: used by `nanoclaw chat`, tests and benchmarks.

A blocking client with a reader thread: it checks that the socket is served
by this user or root, waits for the router's hello, attaches to a local JID,
sends messages with fresh ids, and queues what the router pushes (replies,
typing, acknowledgements) for the caller to take.
"""

from __future__ import annotations

import getpass
import json
import queue
import socket
import threading
import uuid
from pathlib import Path

from router.channels.local_socket import peer_of, server_refusal


class ChatClientError(Exception):
    """The router is not reachable, or refused a request."""


class LocalChatClient:
    def __init__(self, path: Path, jid: str, *, sender: str | None = None, timeout: float = 10.0):
        self.jid = jid
        self.sender = sender or getpass.getuser()
        self.events: queue.Queue[dict] = queue.Queue()
        self._acks: dict[str, queue.Queue[dict]] = {}
        self._sock = _connect(path)
        self._file = self._sock.makefile("rb")
        self._lock = threading.Lock()
        self._control: queue.Queue[dict] = queue.Queue()  # hello, attached, and errors tied to no message
        self._reader = threading.Thread(target=self._read, name="local-chat-reader", daemon=True)
        self._reader.start()
        try:
            hello = self._answer(self._control, timeout)
            self.max_message_bytes: int | None = hello.get("max_message_bytes")
            attached = self._request({"op": "attach", "jid": jid}, self._control, timeout)
        except ChatClientError:
            self.close()
            raise
        self.history: list[dict] = attached.get("history", [])

    def _write(self, message: dict) -> None:
        data = (json.dumps(message, ensure_ascii=False) + "\n").encode()
        try:
            with self._lock:
                self._sock.sendall(data)
        except OSError as exc:
            raise ChatClientError(f"the router closed the connection ({exc.strerror or exc})") from exc

    def _request(self, message: dict, answers: queue.Queue, timeout: float) -> dict:
        self._write(message)
        return self._answer(answers, timeout)

    @staticmethod
    def _answer(answers: queue.Queue, timeout: float) -> dict:
        try:
            answer = answers.get(timeout=timeout)
        except queue.Empty as exc:
            raise ChatClientError(f"no answer from the router within {timeout:g} s") from exc
        if answer.get("op") == "error":
            raise ChatClientError(answer.get("message", "refused"))
        return answer

    def _read(self) -> None:
        try:
            for line in self._file:
                self._dispatch(line)
        except (OSError, ValueError):
            pass  # the router died (connection reset) or we closed the socket: the same end
        for answers in [*self._acks.values(), self._control]:  # the router went away: fail waiting calls now
            answers.put({"op": "error", "message": "the router closed the connection"})
        self._acks.clear()
        self.events.put({"op": "closed"})

    def _dispatch(self, line: bytes) -> None:
        try:
            message = json.loads(line)
        except json.JSONDecodeError:
            return
        op = message.get("op")
        if op in ("hello", "attached") or (op == "error" and not self._acks):
            self._control.put(message)
        elif op in ("ack", "error") and message.get("id") in self._acks:
            self._acks.pop(message["id"]).put(message)
        elif op == "error" and self._acks:
            self._acks.pop(next(iter(self._acks))).put(message)
        else:
            self.events.put(message)

    def send(self, text: str, *, message_id: str | None = None, timeout: float = 10.0) -> dict:
        """Send one message; returns the router's ack once the message is recorded."""
        message_id = message_id or uuid.uuid4().hex
        answers: queue.Queue[dict] = queue.Queue()
        self._acks[message_id] = answers
        request = {"op": "send", "jid": self.jid, "id": message_id, "text": text}
        if self.sender:
            request["sender"] = self.sender
        return self._request(request, answers, timeout)

    def next_event(self, timeout: float | None) -> dict | None:
        try:
            return self.events.get(timeout=timeout)
        except queue.Empty:
            return None

    def close(self) -> None:
        try:
            self._sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self._sock.close()


def _connect(path: Path) -> socket.socket:
    """A connected socket to the router at `path`, once the kernel says who serves it."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.connect(str(path))
    except OSError as exc:
        sock.close()
        raise ChatClientError(
            f"cannot reach the router at {path} ({exc.strerror or exc}); is 'nanoclaw run' running?") from exc
    if (why := server_refusal(peer_of(sock), path)) is not None:
        sock.close()
        raise ChatClientError(why)
    return sock
