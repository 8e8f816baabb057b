"""Files people send (photos, voice notes, documents), saved where the group's agent can read them.

A channel hands over what it knows of each file and a way to fetch it; this
module downloads it (at most `MAX_INBOUND_BYTES`, within a minute), tells
its type from its content (`filetype`), gives it a plain name with the
extension its content has, and writes it
into `inbox/` in the group's folder. The group's folder is the agent's to
write, so it is reached one name at a time without following links: a link
planted at `inbox` is removed itself and a real folder made, and a file is
renamed into place over whatever was at its name. The message the agent
reads names each file by the path it sees (`/workspace/group/inbox/...`),
or says why a file is not there.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Awaitable, Callable

import filetype

from base.agent_paths import PathRefused, closing_fd, ensure_own_dir, open_under, write_file
from base.config import Settings
from router.channels.base import describe_size
from rules.outbox import AGENT_GROUP_DIR, media_type, shown_name

MAX_INBOUND_BYTES = 20 * 1024 * 1024
FETCH_TIMEOUT_S = 60.0
INBOX = "inbox"
MAX_STORED_NAME = 100


@dataclass(frozen=True)
class Incoming:
    name: str
    kind: str  # what the chat calls it: Photo, Voice message, Document, File
    size: int | None  # as the platform declares it, when it does
    fetch: Callable[[], Awaitable[bytes]]


async def receive_files(settings: Settings, folder: str, message_id: str, files: list[Incoming]) -> str:
    """One line per file for the message's text: its path in the agent's folder, or why it is missing."""
    lines = [await _receive(settings, folder, message_id, n, file) for n, file in enumerate(files, 1)]
    return "\n".join(lines)


async def _receive(settings: Settings, folder: str, message_id: str, n: int, file: Incoming) -> str:
    name = shown_name(file.name)
    if file.size is not None and file.size > MAX_INBOUND_BYTES:
        return _too_large(file.kind, name, file.size)
    try:
        data = await asyncio.wait_for(file.fetch(), FETCH_TIMEOUT_S)
    except Exception as exc:
        return f"[{file.kind}: {name}, not downloaded ({type(exc).__name__}: {exc})]"
    if len(data) > MAX_INBOUND_BYTES:
        return _too_large(file.kind, name, len(data))
    mime = media_type(data[:8192], name)
    name = _named_for(name, data)
    stored = f"{shown_name(message_id)}-{n}-{name}".replace(" ", "_")[-MAX_STORED_NAME:].lstrip(".-") or f"file-{n}"
    try:
        await asyncio.to_thread(_write, settings, folder, stored, data)
    except (OSError, PathRefused) as exc:
        return f"[{file.kind}: {name}, not saved ({exc})]"
    looks = "" if file.kind not in ("Photo", "Voice message") or mime.split("/")[0] in ("image", "audio", "video") \
        else f", which is not what a {file.kind.lower()} is"
    return f"[{file.kind}: {AGENT_GROUP_DIR / INBOX / stored} ({mime}{looks}, {describe_size(len(data))})]"


def _named_for(name: str, data: bytes) -> str:
    """The name with the extension its content has (a PNG sent as `photo.jpg` is `photo.png`)."""
    kind = filetype.guess(data[:8192])
    if kind is None:
        return name
    stem, dot, suffix = name.rpartition(".")
    if dot and suffix.lower() in (kind.extension, "jpeg" if kind.extension == "jpg" else kind.extension):
        return name
    return f"{stem if dot else name}.{kind.extension}"


def _too_large(kind: str, name: str, size: int) -> str:
    return (f"[{kind}: {name}, not downloaded: it is {describe_size(size)} and files up to "
            f"{describe_size(MAX_INBOUND_BYTES)} are]")


def _write(settings: Settings, folder: str, name: str, data: bytes) -> None:
    group_fd = open_under(settings.groups_dir, (folder,), create=True)
    assert group_fd is not None
    with closing_fd(group_fd):
        inbox_fd, _ = ensure_own_dir(group_fd, INBOX, shown=settings.groups_dir / folder / INBOX)
        with closing_fd(inbox_fd):
            write_file(inbox_fd, name, data, mode=0o644, shown=settings.groups_dir / folder / INBOX / name)


def kind_of(media_type: str | None, default: str = "File") -> str:
    """What a chat's declared type makes a file: a photo, a voice message, or a document."""
    major = (media_type or "").split("/")[0]
    return {"image": "Photo", "audio": "Voice message"}.get(major, default)
