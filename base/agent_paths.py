"""Safe file operations in folders an agent can write.

An agent may replace any name in its own folders with a link, a hard link or
something else at any moment, so the host never acts there by path: it opens
each folder one name at a time under a trusted base without following links,
creates files exclusively and renames them into place inside that folder,
changes owners through descriptors, and refuses what is not as expected.
"""

from __future__ import annotations

import errno
import os
import secrets
import stat
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator, Sequence

from loguru import logger

DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
# NONBLOCK: a planted FIFO cannot hang the host; NOCTTY: nor can a terminal become ours.
READ_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC
NEW_FILE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
MAX_DEPTH = 64
TEMP_TRIES = 8


class NotRealDir(Exception):
    """A path that should be a directory is a symlink or a file."""


class PathRefused(Exception):
    """The host will not act on `path`; `reason` says why in plain words."""

    def __init__(self, path: Path | str, reason: str):
        super().__init__(f"{path}: {reason}")
        self.path = str(path)
        self.reason = reason


OnRefused = Callable[[str, PathRefused], None]


def warn_refusal(operation: str, refused: PathRefused) -> None:
    """The default for callers without an event log: one line in the journal."""
    logger.warning("refused to {} {}: {}; carrying on without it", operation, refused.path, refused.reason)


@contextmanager
def closing_fd(fd: int) -> Iterator[int]:
    try:
        yield fd
    finally:
        os.close(fd)


def what_is(name: str, dir_fd: int) -> str:
    """A few words for what lies at `name` (for messages only, never for a decision)."""
    try:
        mode = os.stat(name, dir_fd=dir_fd, follow_symlinks=False).st_mode
    except FileNotFoundError:
        return "missing"
    if stat.S_ISLNK(mode):
        return "a symbolic link (never followed)"
    if stat.S_ISDIR(mode):
        return "a folder"
    return "a regular file" if stat.S_ISREG(mode) else "not a regular file or folder"


def open_dir(name: str, dir_fd: int | None = None) -> int | None:
    """A directory descriptor (None if missing); never follows a symlink (NotRealDir)."""
    try:
        return os.open(name, DIR_FLAGS, dir_fd=dir_fd)
    except FileNotFoundError:
        return None
    except OSError as exc:
        if exc.errno not in (errno.ELOOP, errno.ENOTDIR):
            raise
        try:
            link = stat.S_ISLNK(os.stat(name, dir_fd=dir_fd, follow_symlinks=False).st_mode)
        except FileNotFoundError:
            return None  # gone since: as missing as if it had never been there
        raise NotRealDir("a symbolic link (never followed)" if link else "not a directory") from exc


def open_base(base: Path, *, create: bool) -> int | None:
    """The host's own folder (its configured path, links in it allowed), or None if missing."""
    if create:
        base.mkdir(parents=True, exist_ok=True)
    try:
        return os.open(base, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except FileNotFoundError:
        if create:
            raise PathRefused(base, "vanished while being made") from None
        return None


def open_child(dir_fd: int, name: str, *, create: bool = False, mode: int = 0o755,
               shown: Path | str = "") -> int | None:
    """The folder `name` inside `dir_fd`, made if asked; PathRefused for anything but a real folder."""
    for _ in range(TEMP_TRIES):  # made, then removed by someone else before we opened it: again
        if create:
            try:
                os.mkdir(name, mode, dir_fd=dir_fd)
            except FileExistsError:
                pass
        try:
            fd = open_dir(name, dir_fd)
        except NotRealDir as problem:
            raise PathRefused(shown or name, f"is {problem}") from None
        if fd is not None or not create:
            return fd
    raise PathRefused(shown or name, "kept vanishing while being made")


def open_under(base: Path, parts: Sequence[str], *, create: bool = False, mode: int = 0o755) -> int | None:
    """`base/parts...` opened one folder at a time without following links.

    None if missing; with `create`, missing folders are made and the result is never None.
    """
    fd = open_base(base, create=create)
    shown = base
    for part in parts:
        if fd is None:
            return None
        if not part or part in (".", "..") or "/" in part:
            os.close(fd)
            raise PathRefused(shown / str(part), "is not a single folder name")
        shown = shown / part
        try:
            child = open_child(fd, part, create=create, mode=mode, shown=shown)
        finally:
            os.close(fd)
        fd = child
    return fd


def ensure_own_dir(dir_fd: int, name: str, *, shown: Path, mode: int = 0o755) -> tuple[int, str | None]:
    """A real folder at `name`: whatever else is there (a link, a file) is removed itself first.

    Returns the folder's descriptor and, when something had to go, what it was.
    """
    replaced = None
    for _ in range(TEMP_TRIES):
        try:
            fd = open_child(dir_fd, name, create=True, mode=mode, shown=shown)
            assert fd is not None  # open_child with create returns a folder or raises
            return fd, replaced
        except PathRefused as refused:
            replaced = refused.reason.removeprefix("is ")
            try:
                os.unlink(name, dir_fd=dir_fd)  # the link or file itself, never what it points to
            except (FileNotFoundError, IsADirectoryError):
                pass
    raise PathRefused(shown, "kept changing; no folder could be made there")


def write_file(dir_fd: int, name: str, data: bytes, *, mode: int = 0o644,
               owner: tuple[int, int] | None = None, shown: Path | str = "") -> None:
    """Replace `name` in the folder atomically with a new file: a planted link is replaced, not followed."""
    temp, fd = _new_temp(dir_fd, name, mode)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            os.fchmod(handle.fileno(), mode)
            if owner is not None:
                os.fchown(handle.fileno(), *owner)
        os.rename(temp, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
    except OSError as exc:
        _unlink_quietly(dir_fd, temp)
        if exc.errno in (errno.EISDIR, errno.ENOTEMPTY, errno.EEXIST, errno.ENOTDIR):
            raise PathRefused(shown or name, f"is {what_is(name, dir_fd)}, where a file was expected") from None
        raise


def _new_temp(dir_fd: int, name: str, mode: int) -> tuple[str, int]:
    for _ in range(TEMP_TRIES):
        temp = f".{name}.{secrets.token_hex(4)}.tmp"
        try:
            return temp, os.open(temp, NEW_FILE_FLAGS, mode, dir_fd=dir_fd)
        except FileExistsError:
            continue
    raise PathRefused(name, f"no free temporary name after {TEMP_TRIES} tries")


def create_file(dir_fd: int, name: str, data: bytes, *, mode: int = 0o644,
                owner: tuple[int, int] | None = None, shown: Path | str = "") -> bool:
    """Create `name` only if nothing is there (True if created); a link or non-file there is refused."""
    try:
        fd = os.open(name, NEW_FILE_FLAGS, mode, dir_fd=dir_fd)
    except FileExistsError:
        found = what_is(name, dir_fd)
        if found in ("a regular file", "missing"):
            return False
        raise PathRefused(shown or name, f"is {found}; left alone") from None
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
        os.fchmod(handle.fileno(), mode)
        if owner is not None:
            os.fchown(handle.fileno(), *owner)
    return True


def open_file(dir_fd: int, name: str, *, shown: Path | str = "") -> int | None:
    """A regular file opened for reading without following a link; None if missing."""
    try:
        fd = os.open(name, READ_FLAGS, dir_fd=dir_fd)
    except FileNotFoundError:
        return None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise PathRefused(shown or name, "is a symbolic link (never followed)") from None
        if exc.errno == errno.ENXIO:  # a socket
            raise PathRefused(shown or name, "is not a regular file") from None
        raise
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise PathRefused(shown or name, "is not a regular file")
    return fd


def read_text(dir_fd: int, name: str, *, limit: int, shown: Path | str = "") -> str | None:
    """The text of a regular file (at most `limit` bytes), never through a link; None if missing."""
    fd = open_file(dir_fd, name, shown=shown)
    if fd is None:
        return None
    with os.fdopen(fd, "rb") as handle:
        return handle.read(limit).decode("utf-8", "replace")


def hand_over(fd: int, owner: tuple[int, int], *, shown: Path | str) -> bool:
    """Give an opened file or folder to `owner` by descriptor; True if it changed.

    A regular file with more than one name is refused: changing it would change
    a file elsewhere that shares it.
    """
    info = os.fstat(fd)
    if (info.st_uid, info.st_gid) == owner:
        return False
    if stat.S_ISREG(info.st_mode) and info.st_nlink > 1:
        raise PathRefused(shown, f"is a file with {info.st_nlink} hard links; its owner is left alone")
    os.fchown(fd, *owner)
    return True


def unlink_in(dir_fd: int, name: str, *, shown: Path | str = "") -> bool:
    """Remove the file or link `name` itself (never a link's target); False if it was gone."""
    try:
        os.unlink(name, dir_fd=dir_fd)
    except FileNotFoundError:
        return False
    except IsADirectoryError:
        raise PathRefused(shown or name, "is a folder, where a file was expected") from None
    return True


def remove_entry(dir_fd: int, name: str, *, depth: int = 0) -> int:
    """Delete `name` inside the folder, a whole tree if it is one, never leaving it; bytes freed."""
    for _ in range(TEMP_TRIES):  # each round: the agent swapped a file and a folder under us
        try:
            size = os.stat(name, dir_fd=dir_fd, follow_symlinks=False).st_size
            os.unlink(name, dir_fd=dir_fd)
            return size
        except FileNotFoundError:
            return 0
        except IsADirectoryError:
            pass
        try:
            return _remove_folder(dir_fd, name, depth)
        except NotRealDir:
            continue
    raise PathRefused(name, "kept changing between a file and a folder; left for the next clean-up")


def _remove_folder(parent_fd: int, name: str, depth: int) -> int:
    if depth >= MAX_DEPTH:
        raise PathRefused(name, f"is nested more than {MAX_DEPTH} folders deep; left alone")
    fd = open_dir(name, parent_fd)
    if fd is None:
        return 0
    with closing_fd(fd):
        freed = sum(remove_entry(fd, child, depth=depth + 1) for child in os.listdir(fd))
    os.rmdir(name, dir_fd=parent_fd)
    return freed


def _unlink_quietly(dir_fd: int, name: str) -> None:
    try:
        os.unlink(name, dir_fd=dir_fd)
    except OSError:
        pass
