"""The service as a person meets it across crashes: start it (armed with a fault or not), chat, restart.

`start_service` runs `nanoclaw run` (router plus worker) in a process group
of its own, so a fault point or `kill_group` ends the whole service the way
systemd would. `ChatUser` is a person at the local chat who keeps talking
through restarts: a message the router did not acknowledge is sent again
with the same id, and every reply pushed to the terminal is kept.
"""

from __future__ import annotations

import time
import uuid

from base.config import Settings
from router.channels.local_client import ChatClientError, LocalChatClient
from tests.router_process import RouterProcess

READY_TIMEOUT_S = 60


def start_service(settings: Settings, *, fault: str | None = None, ready: bool = True, **env: str) -> RouterProcess:
    """`nanoclaw run` leading its own process group; `fault` arms NANOCLAW_FAULT to kill that whole group."""
    armed = {"NANOCLAW_FAULT": fault, "NANOCLAW_FAULT_SCOPE": "group"} if fault else {}
    service = RouterProcess(settings, worker=True, own_group=True, **armed, **env)
    return service.wait_ready(timeout=READY_TIMEOUT_S) if ready else service


class ChatUser:
    """One chat's user: sends with fresh ids, resends what was not acknowledged, keeps what was pushed."""

    def __init__(self, jid: str):
        self.jid = jid
        self.client: LocalChatClient | None = None
        self.sent: list[str] = []             # texts, in the order the user typed them
        self.unacked: dict[str, str] = {}     # message id -> text, not yet acknowledged by a router
        self.pushed: list[dict] = []          # every reply pushed to a terminal of this user

    def attach(self, service: RouterProcess) -> "ChatUser":
        self.collect()
        self.detach()
        self.client = LocalChatClient(service.socket, self.jid)
        for message_id, text in list(self.unacked.items()):
            self._send(message_id, text)
        return self

    def detach(self) -> None:
        if self.client is not None:
            self.client.close()
            self.client = None

    def send(self, text: str, timeout: float = 10) -> bool:
        """Type a message; True once a router acknowledged it (else it is sent again on `attach`)."""
        message_id = uuid.uuid4().hex
        self.sent.append(text)
        self.unacked[message_id] = text
        return self._send(message_id, text, timeout)

    def _send(self, message_id: str, text: str, timeout: float = 10) -> bool:
        if self.client is None:
            return False
        try:
            self.client.send(text, message_id=message_id, timeout=timeout)
        except (ChatClientError, OSError):
            self.detach()
            return False
        self.unacked.pop(message_id, None)
        return True

    def collect(self, seconds: float = 0) -> list[dict]:
        """Take the replies pushed so far (waiting up to `seconds` for the first); returns the new ones."""
        new: list[dict] = []
        deadline = time.monotonic() + seconds
        while self.client is not None:
            event = self.client.next_event(max(0.0, deadline - time.monotonic()) if not new else 0)
            if event is None:
                break
            if event.get("op") == "reply":
                new.append(event)
            elif event.get("op") == "closed":
                self.detach()
        self.pushed += new
        return new

    def pushed_twice(self) -> list[str]:
        """Reply ids this user was shown more than once (must be none)."""
        ids = [p["id"] for p in self.pushed]
        return sorted({i for i in ids if ids.count(i) > 1})
