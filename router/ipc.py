"""The host side of IPC: each JSON file an agent drops becomes one `IpcReceived`.

Identity is the folder a file appeared in. One thread takes the files in name
order and records each under a key made of its path and its inode and
modification time, so a file watchdog reports twice is recorded once (and
events it drops are found by the rescans) while a name the agent uses again
is a new request; a file that does not parse yet is looked at again once it
has not been written to for SETTLE_S; nothing is read through a symlink,
since the agent owns the folder.
`processing/` only holds files claimed by an earlier version, taken at start.
"""

from __future__ import annotations

import errno
import logging
import os
import queue
import stat
import threading
import time
from contextlib import contextmanager
from typing import Any, Callable, Iterator

import msgspec
from loguru import logger
from watchdog.events import FileSystemEvent, FileSystemEventHandler
from watchdog.observers import Observer

from base.agent_paths import NotRealDir, PathRefused, closing_fd, open_dir, open_file
from base.config import Settings
from events import EventLog, types as t
from rules.groups import GroupError, validate_folder

IPC_MAX_BYTES = 1 << 20
RESCAN_S = 10.0
SETTLE_S = 2.0   # a file that does not parse yet is given this long since its last write
KINDS = ("messages", "tasks")
PROCESSING_DIR = "processing"
ERRORS_DIR = "errors"
MAX_NAME_BYTES = 200  # room for the `<kind>-` and `<folder>-` prefixes within NAME_MAX (255)
OBSERVER_JOIN_S = 5.0

_REASON_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC
_STOP = object()
_RESCAN = object()
_WATCHDOG_LOGGER = "watchdog.observers.inotify_c"


class Refused(Exception):
    """A file the watcher will not record; the message is the reason.

    `unsettled`: the file was written to within SETTLE_S and may be complete
    later (an agent writing it in several steps), so it is looked at again
    before it is refused.
    """

    def __init__(self, reason: str, *, unsettled: bool = False):
        super().__init__(reason)
        self.unsettled = unsettled


class Payload(msgspec.Struct, frozen=True):
    """A parsed request file, and what tells this file apart from a later one of the same name."""

    value: dict[str, Any]
    size: int
    identity: str   # inode and modification time: a crash's leftover has the same, a reused name not


def printable(name: str) -> str:
    """A file or folder name safe for event data and the journal: one line, undecodable bytes and
    control characters replaced (a name with a newline could forge a log line)."""
    text = name.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    return "".join(char if char.isprintable() else "\ufffd" for char in text)


def read_payload(dir_fd: int, name: str) -> Payload:
    """Read and parse one claimed file without following links; raise Refused."""
    try:
        fd = open_file(dir_fd, name)  # the open is the check: a link swapped in since is refused too
    except PathRefused as refused:
        raise Refused(refused.reason.removeprefix("is ")) from None
    if fd is None:
        raise FileNotFoundError(errno.ENOENT, "claimed file vanished", name)
    with os.fdopen(fd, "rb") as handle:
        info = os.fstat(handle.fileno())
        if info.st_size > IPC_MAX_BYTES:
            raise Refused(f"{info.st_size} bytes, over the {IPC_MAX_BYTES}-byte limit")
        data = handle.read(IPC_MAX_BYTES + 1)
    if len(data) > IPC_MAX_BYTES:
        raise Refused(f"over the {IPC_MAX_BYTES}-byte limit")
    try:
        value = parse_payload(data)
    except Refused as refused:
        # abs(): the agent sets modification times at will, and one far ahead must not mean "still writing"
        raise Refused(str(refused), unsettled=abs(time.time() - info.st_mtime) < SETTLE_S) from None
    return Payload(value, len(data), f"{info.st_ino}-{info.st_mtime_ns}")


def request_key(folder: str, kind: str, name: str, identity: str) -> str:
    """The idempotency key of one request file: its place and its identity, never its name alone."""
    return f"ipc:{folder}/{kind}/{name}@{identity}"


def parse_payload(data: bytes) -> dict[str, Any]:
    """The file's JSON, which must be an object; raise Refused."""
    try:
        value = msgspec.json.decode(data)
    except (msgspec.DecodeError, UnicodeDecodeError, RecursionError, ValueError) as exc:
        raise Refused(f"not valid JSON: {exc}") from exc
    if not isinstance(value, dict):
        raise Refused(f"not a JSON object (got {type(value).__name__})")
    return value


@contextmanager
def own_dir(name: str, parent_fd: int) -> Iterator[int]:
    """One of the watcher's own directories, created if missing, never through a link."""
    _mkdir(name, parent_fd)
    fd = open_dir(name, parent_fd)
    if fd is None:
        raise FileNotFoundError(errno.ENOENT, "directory vanished", name)
    with closing_fd(fd):
        yield fd


def _valid_folder(folder: str) -> bool:
    try:
        validate_folder(folder)
    except GroupError:
        return False
    return True


class _Changes(FileSystemEventHandler):
    """Runs on watchdog's dispatcher thread: only tells the worker which folder changed."""

    def __init__(self, root: str, changed: Callable[[str, str], None]):
        self.root = root
        self.changed = changed

    def on_created(self, event: FileSystemEvent) -> None:
        self._seen(str(event.src_path), event.is_directory)

    def on_moved(self, event: FileSystemEvent) -> None:
        self._seen(str(event.dest_path), event.is_directory)

    def on_closed(self, event: FileSystemEvent) -> None:  # a file written in place is complete now
        self._seen(str(event.src_path), event.is_directory)

    def _seen(self, path: str, is_directory: bool) -> None:
        parts = os.path.relpath(path, self.root).split(os.sep)
        if parts[0] in (os.curdir, os.pardir):
            return
        if len(parts) == 1 and is_directory:
            for kind in KINDS:
                self.changed(parts[0], kind)
        elif len(parts) in (2, 3) and parts[1] in KINDS and (len(parts) == 2 or parts[2].endswith(".json")):
            self.changed(parts[0], parts[1])


class _OverflowAlarm(logging.Handler):
    """watchdog only logs a lost-events overflow; turn that line into a rescan."""

    def __init__(self, rescan: Callable[[], None]):
        super().__init__(logging.WARNING)
        self.rescan = rescan

    def emit(self, record: logging.LogRecord) -> None:
        if "overflow" in record.getMessage().lower():
            self.rescan()


class IpcWatcher:
    """Watches `data/ipc/` and records each complete request file exactly once."""

    def __init__(self, settings: Settings, log: EventLog):
        self.settings = settings
        self.log = log
        self.root = settings.ipc_dir
        self._queue: queue.Queue = queue.Queue()
        self._pending: set[tuple[str, str]] = set()
        self._pending_lock = threading.Lock()
        self._process_lock = threading.Lock()  # one claimer at a time keeps name order
        self._warned: set[str] = set()
        self._observer: Any = None
        self._worker: threading.Thread | None = None
        self._alarm = _OverflowAlarm(self.request_rescan)

    # --- life cycle -------------------------------------------------------------

    def start(self) -> None:
        """Watch the IPC root; the worker scans everything first, then every RESCAN_S."""
        if self._worker is not None:
            raise RuntimeError("the IPC watcher is already running")
        self.root.mkdir(parents=True, exist_ok=True)
        (self.root / ERRORS_DIR).mkdir(mode=0o700, exist_ok=True)
        observer = Observer()
        observer.schedule(_Changes(str(self.root), self._changed), str(self.root), recursive=True)
        observer.start()
        self._observer = observer
        logging.getLogger(_WATCHDOG_LOGGER).addHandler(self._alarm)
        self._worker = threading.Thread(target=self._run, name="ipc-watcher", daemon=True)
        self._worker.start()
        logger.info("IPC watcher started on {}", self.root)

    def stop(self) -> None:
        """Stop watching; a file being processed is finished first."""
        if self._worker is None:
            return
        logging.getLogger(_WATCHDOG_LOGGER).removeHandler(self._alarm)
        self._observer.stop()
        self._observer.join(OBSERVER_JOIN_S)
        self._queue.put(_STOP)
        self._worker.join()
        self._observer = self._worker = None
        logger.info("IPC watcher stopped")

    def request_rescan(self) -> None:
        """Ask the worker for a full rescan now (events may have been lost)."""
        self._queue.put(_RESCAN)

    def _changed(self, folder: str, kind: str) -> None:
        with self._pending_lock:
            if (folder, kind) in self._pending:
                return
            self._pending.add((folder, kind))
        self._queue.put((folder, kind))

    def _run(self) -> None:
        next_scan = 0.0
        while True:
            if time.monotonic() >= next_scan:
                self._guarded(self.scan)
                next_scan = time.monotonic() + RESCAN_S
            try:
                item = self._queue.get(timeout=max(0.0, next_scan - time.monotonic()))
            except queue.Empty:
                continue
            if item is _STOP:
                return
            if item is _RESCAN:
                next_scan = 0.0
                continue
            with self._pending_lock:
                self._pending.discard(item)
            self._guarded(lambda: self.drain(*item))

    @staticmethod
    def _guarded(work: Callable[[], object]) -> None:
        try:
            work()
        except Exception:  # the watcher must outlive one bad pass; the rescan retries
            logger.exception("IPC pass failed; retrying at the next rescan")

    # --- passes -------------------------------------------------------------------

    def scan(self) -> int:
        """Take every waiting file: leftovers in `processing/`, then `*/{messages,tasks}/*.json`."""
        taken = 0
        if not self.root.is_dir():
            return 0
        with self._process_lock, self._root() as root_fd:
            for folder in sorted(os.listdir(root_fd)):
                taken += self._take_folder(root_fd, folder, KINDS, recover=_valid_folder(folder))
        return taken

    def drain(self, folder: str, kind: str) -> int:
        """Take the waiting files of one folder's `messages/` or `tasks/`, in name order."""
        with self._process_lock, self._root() as root_fd:
            return self._take_folder(root_fd, folder, (kind,), recover=False)

    def _take_folder(self, root_fd: int, folder: str, kinds: tuple[str, ...], *, recover: bool) -> int:
        try:
            folder_fd = open_dir(folder, root_fd)
        except NotRealDir as problem:
            self._warn_once(folder, f"data/ipc/{printable(folder)} is {problem}; ignored")
            return 0
        if folder_fd is None:
            return 0
        with closing_fd(folder_fd):
            if _valid_folder(folder):
                self._ensure_processing(folder, folder_fd)
            taken = self._recover(folder, folder_fd) if recover else 0
            return taken + sum(self._take_kind(folder, folder_fd, kind) for kind in kinds)

    def _take_kind(self, folder: str, folder_fd: int, kind: str) -> int:
        try:
            kind_fd = open_dir(kind, folder_fd)
        except NotRealDir as problem:
            self._quarantine(folder, kind, kind, folder_fd, kind, f"{kind}/ is {problem}")
            return 1
        if kind_fd is None:
            return 0
        with closing_fd(kind_fd):
            names = sorted(n for n in os.listdir(kind_fd) if n.endswith(".json"))
            if names and not _valid_folder(folder):
                for name in names:
                    self._quarantine(folder, kind, name, kind_fd, name, "the folder name is invalid or reserved")
                return len(names)
            if not names:
                return 0
            return sum(self._take(folder, kind, name, kind_fd) for name in names)

    def _recover(self, folder: str, folder_fd: int) -> int:
        """Files a crash left between claim and record: the oldest work, done first."""
        with own_dir(PROCESSING_DIR, folder_fd) as fd:
            names = sorted(os.listdir(fd))
            for claimed in names:
                kind, _, name = claimed.partition("-")
                if kind in KINDS and name.endswith(".json"):
                    self._record(folder, kind, name, fd, claimed)
                else:
                    self._quarantine(folder, PROCESSING_DIR, claimed, fd, claimed, "not a claimed request file")
            return len(names)

    # --- one file -------------------------------------------------------------------

    def _take(self, folder: str, kind: str, name: str, kind_fd: int) -> int:
        """Record the file where it lies, then delete it.

        One thread takes every file, and the append is keyed by the file's
        path and identity (inode, modification time), so a file reported
        twice (or found again after a crash between the append and the
        delete) is recorded once, while a later file that reuses the name is
        a new request. No rename: moving each
        file out would make watchdog pair move events, which can hold its
        queue for half a second.
        """
        if len(os.fsencode(name)) > MAX_NAME_BYTES:
            self._quarantine(folder, kind, name, kind_fd, name, "the file name is too long")
            return 1
        self._record(folder, kind, name, kind_fd, name)
        return 1

    def _record(self, folder: str, kind: str, name: str, dir_fd: int, claimed: str) -> None:
        """Append `IpcReceived` for a claimed file, then delete it; quarantine what is refused."""
        try:
            if name != printable(name):
                raise Refused("the file name is not printable UTF-8 (control characters or undecodable bytes)")
            payload = read_payload(dir_fd, claimed)
        except FileNotFoundError:
            return
        except Refused as refused:
            if refused.unsettled:  # perhaps still being written: look again once it has settled
                self._look_again(folder, kind)
            else:
                self._quarantine(folder, kind, name, dir_fd, claimed, str(refused))
            return
        event = t.IpcReceived(folder=folder, kind=kind, file=name, payload=payload.value,  # type: ignore[arg-type]
                              size=payload.size)
        appended = self.log.append(event, key=request_key(folder, kind, name, payload.identity))
        try:
            os.unlink(claimed, dir_fd=dir_fd)
        except FileNotFoundError:
            pass
        if appended.created:
            logger.debug("{}: IPC {} file {} recorded (seq {})", folder, kind, name, appended.seq)
        else:
            logger.warning("{}: IPC {} file {} was already recorded; the copy is dropped", folder, kind, name)

    def _look_again(self, folder: str, kind: str) -> None:
        timer = threading.Timer(SETTLE_S, lambda: self._worker is not None and self._changed(folder, kind))
        timer.daemon = True
        timer.start()

    def _quarantine(self, folder: str, kind: str, name: str, dir_fd: int, current: str, reason: str) -> None:
        """Move a refused file to `data/ipc/errors/<folder>-<file>` with a `.reason` beside it."""
        with self._root() as root_fd, own_dir(ERRORS_DIR, root_fd) as errors_fd:
            target = self._free_name(errors_fd, _quarantine_name(folder, name))
            try:
                os.rename(current, target, src_dir_fd=dir_fd, dst_dir_fd=errors_fd)
            except FileNotFoundError:
                return
            reason_fd = os.open(f"{target}.reason", _REASON_FLAGS, 0o644, dir_fd=errors_fd)
            with os.fdopen(reason_fd, "w", encoding="utf-8") as handle:
                handle.write(f"{reason}\nfolder: {printable(folder)}\nkind: {kind}\nfile: {printable(name)}\n")
        where = f"{self.root.relative_to(self.settings.root)}/{ERRORS_DIR}/{printable(target)}"
        self.log.append(t.IpcRejected(folder=printable(folder), file=printable(name), reason=reason,
                                      kind=kind, quarantined_to=where))
        logger.warning("{}: IPC {} file {} refused ({}); moved to {}", printable(folder), kind,
                       printable(name), reason, where)

    # --- our own directories -------------------------------------------------------

    def _ensure_processing(self, folder: str, folder_fd: int) -> None:
        """Make `processing/` before any claim (so its watch is ready); quarantine an impostor."""
        _mkdir(PROCESSING_DIR, folder_fd)
        if not stat.S_ISDIR(os.stat(PROCESSING_DIR, dir_fd=folder_fd, follow_symlinks=False).st_mode):
            self._quarantine(folder, PROCESSING_DIR, PROCESSING_DIR, folder_fd, PROCESSING_DIR,
                             "processing/ is not a real directory")
            _mkdir(PROCESSING_DIR, folder_fd)

    def _root(self):
        """The IPC root (the host's own path: a symlink here is followed)."""
        return closing_fd(os.open(self.root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC))

    @staticmethod
    def _free_name(errors_fd: int, name: str) -> str:
        """`name`, or `name.1`, `name.2`, ... when an earlier refusal used it."""
        candidate, number = name, 0
        while _exists(candidate, errors_fd) or _exists(f"{candidate}.reason", errors_fd):
            number += 1
            candidate = f"{name}.{number}"
        return candidate

    def _warn_once(self, key: str, message: str) -> None:
        if key not in self._warned:
            self._warned.add(key)
            logger.warning(message)


def _quarantine_name(folder: str, name: str) -> str:
    """`<folder>-<file>`, shortened when that would not fit a file name."""
    folder_bytes, name_bytes = os.fsencode(folder), os.fsencode(name)
    if len(folder_bytes) + len(name_bytes) > MAX_NAME_BYTES + 32:
        folder_bytes, name_bytes = folder_bytes[:32], name_bytes[:MAX_NAME_BYTES]
    return os.fsdecode(folder_bytes + b"-" + name_bytes)


def _mkdir(name: str, dir_fd: int) -> None:
    try:
        os.mkdir(name, 0o700, dir_fd=dir_fd)
    except FileExistsError:
        pass


def _exists(name: str, dir_fd: int) -> bool:
    try:
        os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return False
    return True
