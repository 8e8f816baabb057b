"""What a chat is told when someone asks how to register it (`/chatid` on Telegram and Slack, `!chatid` on Discord).

One text for every channel, so the README can show it once and a test can
keep the two word for word.
"""

from __future__ import annotations

import time
from pathlib import Path

from router.channels.base import RegisteredChat


def registration_help(jid: str, name: str, registered: RegisteredChat | None, root: Path,
                      folder_example: str = "telegram_family") -> str:
    """This chat's JID and the command that registers it, or what it is registered as."""
    if registered is not None:
        role = "the main group" if registered.is_main else "a group"
        return f"This chat is {jid}, registered as {role} ({registered.name!r}, folder {registered.folder})."
    quoted = '"' + name.replace('"', "'") + '"'
    return (f"This chat is {jid}.\n\nTo let the assistant answer here, run in the NanoClaw folder ({root}):\n\n"
            f".venv/bin/nanoclaw groups add {jid} --name {quoted} --folder FOLDER\n\n"
            f"(add --main for your own main chat; FOLDER is a short name such as {folder_example})")


HELP_EVERY_S = 3600.0


class HelpLimiter:
    """An unregistered chat that mentions the bot is told how to register it at most once an hour."""

    def __init__(self, every_s: float = HELP_EVERY_S):
        self.every_s = every_s
        self._helped: dict[str, float] = {}

    def due(self, jid: str) -> bool:
        now = time.monotonic()
        if now - self._helped.get(jid, -self.every_s) < self.every_s:
            return False
        self._helped[jid] = now
        return True
