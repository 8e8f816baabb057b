"""The sender allowlist: who may trigger the assistant, or even be recorded.

`~/.config/nanoclaw/sender-allowlist.json`. In `trigger` mode
everyone is recorded but only allowed senders can trigger; in `drop` mode
messages from others are not recorded at all. A missing or broken file fails
open. v1 reads the file on every check; we re-read it whenever its size or
modification time changes, which gives the same answers without the cost.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from loguru import logger


@dataclass(frozen=True)
class Entry:
    allow: str | tuple[str, ...] = "*"
    mode: str = "trigger"

    def allows(self, sender: str) -> bool:
        return self.allow == "*" or sender in self.allow


@dataclass(frozen=True)
class Allowlist:
    default: Entry = Entry()
    chats: dict[str, Entry] = field(default_factory=dict)
    log_denied: bool = True

    def entry(self, chat_jid: str) -> Entry:
        return self.chats.get(chat_jid, self.default)

    def may_trigger(self, chat_jid: str, sender: str) -> bool:
        return self.entry(chat_jid).allows(sender)

    def drops(self, chat_jid: str, sender: str) -> bool:
        """True when the chat is in drop mode and this sender is not allowed."""
        entry = self.entry(chat_jid)
        return entry.mode == "drop" and not entry.allows(sender)


OPEN = Allowlist()


def _entry(raw: object) -> Entry | None:
    if not isinstance(raw, dict):
        return None
    allow, mode = raw.get("allow"), raw.get("mode")
    if mode not in ("trigger", "drop"):
        return None
    if allow == "*":
        return Entry("*", mode)
    if isinstance(allow, list) and all(isinstance(item, str) for item in allow):
        return Entry(tuple(allow), mode)
    return None


def parse(text: str) -> Allowlist:
    """Parse the file's text; anything unusable at the top level fails open."""
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as exc:
        logger.warning("sender allowlist is not valid JSON ({}); allowing everyone", exc)
        return OPEN
    default = _entry(raw.get("default")) if isinstance(raw, dict) else None
    if default is None:
        logger.warning("sender allowlist has no valid 'default' entry; allowing everyone")
        return OPEN
    chats: dict[str, Entry] = {}
    for jid, value in (raw.get("chats") or {}).items() if isinstance(raw.get("chats"), dict) else ():
        entry = _entry(value)
        if entry is None:
            logger.warning("sender allowlist entry for {} is invalid and ignored", jid)
        else:
            chats[jid] = entry
    return Allowlist(default, chats, raw.get("logDenied") is not False)


def problems(text: str) -> list[str]:
    """What `parse` would ignore in the file's text, for `nanoclaw doctor`; empty when all of it is valid."""
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as exc:
        return [f"not valid JSON ({exc}); everyone is allowed"]
    if not isinstance(raw, dict) or _entry(raw.get("default")) is None:
        return ["no valid 'default' entry; everyone is allowed"]
    chats = raw.get("chats") or {}
    if not isinstance(chats, dict):
        return ["'chats' is not an object; only the default applies"]
    return [f"the entry for {jid} is invalid and ignored" for jid, value in chats.items() if _entry(value) is None]


class AllowlistFile:
    """The allowlist as currently on disk, re-read when the file changes."""

    def __init__(self, path: Path):
        self.path = path
        self._stamp: tuple[int, int] | None = None
        self._current = OPEN

    def current(self) -> Allowlist:
        try:
            stat = os.stat(self.path)
        except OSError:
            self._stamp, self._current = None, OPEN
            return OPEN
        stamp = (stat.st_mtime_ns, stat.st_size)
        if stamp != self._stamp:
            try:
                self._current = parse(self.path.read_text(encoding="utf-8"))
            except (OSError, UnicodeDecodeError) as exc:
                logger.warning("cannot read sender allowlist {} ({}); allowing everyone", self.path, exc)
                self._current = OPEN
            self._stamp = stamp
        return self._current
