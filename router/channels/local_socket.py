"""Where the local chat's socket lives, and which processes may use it.

The socket sits in a private folder outside the install, because a
container that sees the install must not see the socket. Each end also asks
the kernel who is on the other side (SO_PEERCRED): the router serves only
this service's user or root in its own pid namespace, and the chat client
talks only to a router run by itself or root, never to a socket planted by
someone else.
"""

from __future__ import annotations

import os
import socket
import stat
import struct
from dataclasses import dataclass
from pathlib import Path

PRIVATE_DIR_MODE = 0o700
_UCRED = struct.Struct("3i")  # pid, uid, gid, as SO_PEERCRED returns them


class SocketPlaceError(Exception):
    """The socket's folder is not safe to use; the message says what to change."""


@dataclass(frozen=True)
class Peer:
    """The process on the other end of a Unix socket, as the kernel saw it at connect()."""

    pid: int
    uid: int
    gid: int


def peer_of(sock: socket.socket) -> Peer:
    return Peer(*_UCRED.unpack(sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _UCRED.size)))


def trusted_uids() -> set[int]:
    """This process's user and root: the only users either end accepts."""
    return {os.geteuid(), 0}


def client_refusal(peer: Peer) -> str | None:
    """Why the router may not serve this peer, or None when it may."""
    if peer.uid not in trusted_uids():
        return (f"uid {peer.uid} may not use this chat: only the service's user "
                f"(uid {os.geteuid()}) and root may")
    elsewhere = "runs in another pid namespace (a container); the local chat is for this machine's user"
    if peer.pid <= 0:
        return f"the peer {elsewhere}"
    try:
        theirs = os.readlink(f"/proc/{peer.pid}/ns/pid")
    except OSError:
        return f"cannot tell where process {peer.pid} runs (/proc/{peer.pid}/ns/pid is unreadable)"
    if theirs != os.readlink("/proc/self/ns/pid"):
        return f"process {peer.pid} {elsewhere}"
    return None


def server_refusal(peer: Peer, path: Path) -> str | None:
    """Why the chat client must not talk to whoever serves `path`, or None when it may."""
    if peer.uid not in trusted_uids():
        return (f"the socket {path} is served by uid {peer.uid}, neither you nor root; "
                "it is not nanoclaw's router, so nothing was sent")
    return None


def prepare_folder(folder: Path) -> list[Path]:
    """Create `folder` and its missing parents (mode 0700) and check them; returns the folders made.

    Every folder made here, and `folder` itself, must be a real directory of
    ours that nobody else can open; every existing folder above them must
    belong to us or root and be writable by nobody else unless it is sticky
    (like /tmp), so no other user can swap a folder in under the socket.
    """
    missing: list[Path] = []
    existing = folder
    while not os.path.lexists(existing):
        missing.append(existing)
        existing = existing.parent
    for ancestor in (existing, *existing.parents):
        _check_ancestor(ancestor)
    for path in reversed(missing):
        try:
            os.mkdir(path, PRIVATE_DIR_MODE)
        except FileExistsError:
            pass  # made by someone in between: the check below decides whether it is ours
        _check_private(path)
    _check_private(folder)
    return list(reversed(missing))


def _check_private(path: Path) -> None:
    info = os.lstat(path)
    if stat.S_ISLNK(info.st_mode):
        raise SocketPlaceError(f"{path} is a symbolic link, not a folder; remove it (or set LOCAL_CHAT_SOCKET)")
    if not stat.S_ISDIR(info.st_mode):
        raise SocketPlaceError(f"{path} is not a folder; remove it (or set LOCAL_CHAT_SOCKET)")
    if info.st_uid != os.geteuid():
        raise SocketPlaceError(f"{path} belongs to uid {info.st_uid}, not to this service's user (uid "
                               f"{os.geteuid()}); remove it (or set LOCAL_CHAT_SOCKET to a folder of yours)")
    if info.st_mode & 0o077:
        raise SocketPlaceError(f"{path} is open to other users (mode {stat.S_IMODE(info.st_mode):04o}); "
                               f"run 'chmod 700 {path}'")


def _check_ancestor(path: Path) -> None:
    info = os.lstat(path)
    if stat.S_ISLNK(info.st_mode):
        if info.st_uid not in trusted_uids():
            raise SocketPlaceError(f"{path} is a symbolic link of uid {info.st_uid}; remove it "
                                   "(or set LOCAL_CHAT_SOCKET)")
        info = os.stat(path)
    if not stat.S_ISDIR(info.st_mode):
        raise SocketPlaceError(f"{path} is not a folder; set LOCAL_CHAT_SOCKET to a path in a folder")
    if info.st_uid not in trusted_uids():
        raise SocketPlaceError(f"{path} belongs to uid {info.st_uid}, who could replace the socket's folder; "
                               "set LOCAL_CHAT_SOCKET to a path in a folder of yours")
    shared_but_sticky = info.st_mode & stat.S_ISVTX and info.st_uid == 0
    if info.st_mode & 0o022 and not shared_but_sticky:
        raise SocketPlaceError(f"{path} is writable by other users (mode {stat.S_IMODE(info.st_mode):04o}), who "
                               "could replace the socket's folder; set LOCAL_CHAT_SOCKET to a path in a private folder")
