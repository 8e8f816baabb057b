"""Files an agent sends to its chat: taken from the group's folder into the host's own outbox.

The agent names a file of its folder (`browser/shot.png`, or the same under
`/workspace/group/` as it sees it). The host opens it there one name at a
time without following links, refuses anything but a regular file with one
link that fits the size cap, and copies it to `data/outbox/<outbound id>/`
before the reply is recorded: what is sent is what was checked, whatever
the agent does to its folder afterwards. Delivery reads only the copy and
removes it once the reply is sent or given up.
"""

from __future__ import annotations

import mimetypes
import os
import shutil
import stat
from pathlib import Path, PurePosixPath

import filetype

from base.agent_paths import PathRefused, closing_fd, open_file, open_under
from base.config import Settings
from events import types as t
from rules.groups import group_dir

MAX_FILE_BYTES = 20 * 1024 * 1024  # below every channel's upload limit (Telegram's bots: 50 MB)
MAX_QUEUED_BYTES = 100 * 1024 * 1024  # of files waiting for one chat: an agent cannot fill the host's disk
MAX_NAME_CHARS = 120
AGENT_GROUP_DIR = PurePosixPath("/workspace/group")  # the group's folder as the agent sees it
OUTBOX_DIR = "outbox"
SNIFF_BYTES = 8192
_NAME_CHARS = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._- ")


class FileRefused(Exception):
    """The file is not sent; the message says why, in words the agent and the log can show."""


def group_parts(path: str) -> list[str]:
    """The names from the group's folder down to the file; FileRefused for anything outside it."""
    if not path or "\0" in path:
        raise FileRefused("no file named (path is empty)")
    pure = PurePosixPath(path)
    if pure.is_absolute():
        try:
            pure = pure.relative_to(AGENT_GROUP_DIR)
        except ValueError:
            raise FileRefused(f"{path} is outside the group's folder ({AGENT_GROUP_DIR})") from None
    parts = list(pure.parts)
    if not parts or any(part in ("", ".", "..") for part in parts):
        raise FileRefused(f"{path} is not a file inside the group's folder")
    return parts


def shown_name(name: str) -> str:
    """The name the chat sees: the file's own, with anything but plain characters replaced."""
    cleaned = "".join(char if char in _NAME_CHARS else "_" for char in name).strip(" .")
    return cleaned[:MAX_NAME_CHARS] or "file"


def media_type(head: bytes, name: str) -> str:
    """What the content is, from its first bytes; the name's guess only for text, which has no signature."""
    kind = filetype.guess(head)
    if kind is not None:
        return kind.mime
    guessed, _ = mimetypes.guess_type(name)
    try:
        head.decode("utf-8")
    except UnicodeDecodeError:
        return "application/octet-stream"
    return guessed if guessed and guessed.startswith("text/") else "text/plain"


def outbox_dir(data_dir: Path, outbound_id: str) -> Path:
    return data_dir / OUTBOX_DIR / outbound_id


def take_file(settings: Settings, folder: str, path: str, outbound_id: str, *, queued_bytes: int = 0
              ) -> t.OutboundFile:
    """Copy the group's file into the outbox as the reply `outbound_id` will send it.

    `queued_bytes` is what files to the same chat already wait in the outbox; with this one they
    may not pass MAX_QUEUED_BYTES. Any failure, the disk's included, is a FileRefused.
    """
    try:
        return _take(settings, folder, path, outbound_id, queued_bytes)
    except OSError as exc:
        raise FileRefused(f"{path} could not be read or copied: {exc.strerror or exc}") from None
    except ValueError as exc:  # a name the file system cannot take (a NUL deep in a part)
        raise FileRefused(f"{path}: {exc}") from None


def _take(settings: Settings, folder: str, path: str, outbound_id: str, queued_bytes: int) -> t.OutboundFile:
    parts = group_parts(path)
    base = group_dir(settings, folder)
    try:
        dir_fd = open_under(base, parts[:-1])
        if dir_fd is None:
            raise FileRefused(f"{path} does not exist in the group's folder")
        with closing_fd(dir_fd):
            fd = open_file(dir_fd, parts[-1], shown=path)
    except PathRefused as refused:
        raise FileRefused(f"{refused.path} {refused.reason}") from None
    if fd is None:
        raise FileRefused(f"{path} does not exist in the group's folder")
    with os.fdopen(fd, "rb") as source:
        info = os.fstat(source.fileno())
        if info.st_nlink != 1:
            raise FileRefused(f"{path} has {info.st_nlink} hard links; only a file with one is sent")
        if info.st_size > MAX_FILE_BYTES:
            raise FileRefused(f"{path} is {info.st_size:,} bytes; files up to {MAX_FILE_BYTES:,} bytes are sent")
        if queued_bytes + info.st_size > MAX_QUEUED_BYTES:
            raise FileRefused(f"{queued_bytes:,} bytes of files to this chat wait to be sent already; "
                              f"{MAX_QUEUED_BYTES:,} may wait at once")
        data = source.read(MAX_FILE_BYTES + 1)
    if len(data) > MAX_FILE_BYTES:
        raise FileRefused(f"{path} grew past {MAX_FILE_BYTES:,} bytes while it was read")
    if not data:
        raise FileRefused(f"{path} is empty")
    name = shown_name(parts[-1])
    target = outbox_dir(settings.data_dir, outbound_id)
    target.mkdir(parents=True, exist_ok=True)
    with open(target / name, "wb") as copy:
        copy.write(data)
        copy.flush()
        os.fsync(copy.fileno())  # on the disk before the reply that names it commits
    return t.OutboundFile(name=name, path=f"{OUTBOX_DIR}/{outbound_id}/{name}", size=len(data),
                          media_type=media_type(data[:SNIFF_BYTES], name))


def file_path(data_dir: Path, file: t.OutboundFile) -> Path:
    """Where the outbox copy lies on the host."""
    return data_dir / file.path


def sweep(data_dir: Path, queued: set[str]) -> list[str]:
    """Remove outbox copies no queued reply names (a crash between a reply's end and its release)."""
    top = data_dir / OUTBOX_DIR
    removed = []
    for entry in sorted(top.iterdir()) if top.is_dir() else []:
        if entry.name not in queued:
            release(data_dir, entry.name)
            removed.append(entry.name)
    return removed


def release(data_dir: Path, outbound_id: str) -> None:
    """Remove a reply's outbox copy once it is sent or given up (nothing there is the agent's)."""
    target = outbox_dir(data_dir, outbound_id)
    if target.is_dir() and not stat.S_ISLNK(os.lstat(target).st_mode):
        shutil.rmtree(target, ignore_errors=True)
