"""The event log: the one place that writes SQL against the `events` table.

`store/messages.db` in WAL mode holds `events` (append-only, enforced by
triggers), the projections derived from it, and each consumer's checkpoint.
The seam is small on purpose (append, append_many, read_since, checkpoint,
follow) so another backend is one new class behind the same tests.
"""

from __future__ import annotations

import sqlite3
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Iterable, Iterator, NamedTuple, Sequence

import msgspec

from base.timefmt import iso_now
from events import projections, types as t
from events.wakeup import Waker

BUSY_TIMEOUT_S = 30.0
READ_BATCH = 1000

_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS events (
        seq INTEGER PRIMARY KEY,
        at TEXT NOT NULL,
        type TEXT NOT NULL,
        stream TEXT NOT NULL,
        key TEXT,
        data TEXT NOT NULL)""",
    "CREATE UNIQUE INDEX IF NOT EXISTS events_key ON events(key) WHERE key IS NOT NULL",
    "CREATE INDEX IF NOT EXISTS events_stream ON events(stream, seq)",
    """CREATE TRIGGER IF NOT EXISTS events_no_update BEFORE UPDATE ON events
       BEGIN SELECT RAISE(ABORT, 'events is append-only'); END""",
    """CREATE TRIGGER IF NOT EXISTS events_no_delete BEFORE DELETE ON events
       BEGIN SELECT RAISE(ABORT, 'events is append-only'); END""",
    """CREATE TABLE IF NOT EXISTS checkpoints (
        consumer TEXT PRIMARY KEY, seq INTEGER NOT NULL, at TEXT NOT NULL)""",
    "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
)


_INSERT_ONE = (
    "INSERT INTO events (at, type, stream, key, data) VALUES (?, ?, ?, ?, ?)"
    " ON CONFLICT(key) WHERE key IS NOT NULL DO NOTHING"
)
# Seqs are given explicitly only here, inside the write lock, right after
# reading max(seq): the same value SQLite would assign, so a batch is contiguous.
_INSERT_MANY = "INSERT INTO events (seq, at, type, stream, key, data) VALUES (?, ?, ?, ?, ?, ?)"
WAL_AUTOCHECKPOINT_PAGES = 10_000
WRITER_CACHE_KIB = 32_768


class EventDecodeError(Exception):
    """A stored row is not a valid event; names the row so a person can look."""

    def __init__(self, seq: int, reason: str):
        super().__init__(f"event seq {seq} cannot be decoded: {reason}")
        self.seq = seq


class Record(NamedTuple):
    """One stored event with its place in the log."""

    seq: int
    at: str
    type: str
    stream: str
    key: str | None
    event: t.Event


class Appended(NamedTuple):
    """Where an append landed; `created` is False when its key already existed."""

    seq: int
    created: bool


def decode_row(seq: int, type_name: str, data: str) -> t.Event:
    """Decode a stored row, or raise EventDecodeError naming its seq."""
    try:
        event = t.decode(data)
    except msgspec.DecodeError as exc:
        raise EventDecodeError(seq, str(exc)) from exc
    if type(event).__name__ != type_name:
        raise EventDecodeError(seq, f"type column {type_name!r} disagrees with data")
    return event


def known_keys(conn: sqlite3.Connection, keys: list[str]) -> dict[str, int]:
    """key -> seq for those of `keys` already stored (asked 500 at a time, under SQLite's variable limit)."""
    found: dict[str, int] = {}
    for start in range(0, len(keys), 500):
        chunk = keys[start : start + 500]
        marks = ", ".join("?" * len(chunk))
        found.update(conn.execute(f"SELECT key, seq FROM events WHERE key IN ({marks})", chunk).fetchall())
    return found


def select(
    conn: sqlite3.Connection,
    after_seq: int,
    *,
    types: Iterable[type[t.Event] | str] | None = None,
    streams: Iterable[str] | None = None,
    limit: int | None = READ_BATCH,
    before_seq: int | None = None,
    newest: bool = False,
) -> list[Record]:
    """Events after `after_seq` (and before `before_seq`), oldest first.

    With `newest`, the last `limit` matching events rather than the first.
    """
    sql = ["SELECT seq, at, type, stream, key, data FROM events WHERE seq > ?"]
    params: list[object] = [after_seq]
    if before_seq is not None:
        sql.append("AND seq < ?")
        params.append(before_seq)
    for column, values in (("type", types), ("stream", streams)):
        if values is not None:
            names = [v if isinstance(v, str) else v.__name__ for v in values]
            sql.append(f"AND {column} IN ({', '.join('?' * len(names))})")
            params.extend(names)
    sql.append("ORDER BY seq DESC" if newest else "ORDER BY seq")
    if limit is not None:
        sql.append("LIMIT ?")
        params.append(limit)
    rows = conn.execute(" ".join(sql), params).fetchall()
    if newest:
        rows.reverse()
    return [_record(row) for row in rows]


def _record(row: tuple) -> Record:
    seq, at, type_name, stream, key, data = row
    return Record(seq, at, type_name, stream, key, decode_row(seq, type_name, data))


def fold(target: sqlite3.Connection, rows: sqlite3.Cursor, *, batch: int = 5000) -> int:
    """Apply stored rows `(seq, at, type, data)` to the projections on `target`."""
    count = 0
    while chunk := rows.fetchmany(batch):
        for seq, at, type_name, data in chunk:
            projections.apply(target, seq, at, decode_row(seq, type_name, data))
        count += len(chunk)
    return count


def connect(path: Path, *, sync: str = "normal") -> sqlite3.Connection:
    """A connection with the pragmas every user of the log needs."""
    conn = sqlite3.connect(
        path, timeout=BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False
    )
    conn.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}")
    conn.execute("PRAGMA recursive_triggers = ON")
    conn.execute(f"PRAGMA synchronous = {sync.upper()}")
    return conn


class Transaction:
    """A write transaction: appends, projection reads and checkpoints commit together."""

    def __init__(self, conn: sqlite3.Connection):
        self.conn = conn
        self.last_seq = 0

    def append(self, event: t.Event, *, key: str | None = None) -> Appended:
        """Append one event and fold it into the projections; a known key is a no-op."""
        at = iso_now()
        cursor = self.conn.execute(_INSERT_ONE, (at, type(event).__name__, event.stream, key, t.encode(event)))
        if cursor.rowcount == 0:
            row = self.conn.execute("SELECT seq FROM events WHERE key = ?", (key,)).fetchone()
            return Appended(row[0], False)
        seq = cursor.lastrowid
        projections.apply(self.conn, seq, at, event)
        self.last_seq = seq
        return Appended(seq, True)

    def append_many(self, items: Iterable[t.Event | tuple[t.Event, str | None]]) -> list[Appended]:
        """Append a batch with one multi-row insert; its new events get contiguous seqs."""
        pairs = [item if isinstance(item, tuple) else (item, None) for item in items]
        known = self.known_keys([key for _, key in pairs if key is not None])
        at = iso_now()
        first = self.conn.execute("SELECT coalesce(max(seq), 0) FROM events").fetchone()[0] + 1
        results: list[Appended] = []
        rows: list[tuple] = []
        fresh: list[tuple[int, t.Event]] = []
        for event, key in pairs:
            if key is not None and key in known:
                results.append(Appended(known[key], False))
                continue
            seq = first + len(rows)
            if key is not None:
                known[key] = seq
            rows.append((seq, at, type(event).__name__, event.stream, key, t.encode(event)))
            fresh.append((seq, event))
            results.append(Appended(seq, True))
        self.conn.executemany(_INSERT_MANY, rows)
        for seq, event in fresh:
            projections.apply(self.conn, seq, at, event)
        if fresh:
            self.last_seq = fresh[-1][0]
        return results

    def known_keys(self, keys: list[str]) -> dict[str, int]:
        """The seq of each of these idempotency keys already stored, as of this transaction."""
        return known_keys(self.conn, keys)

    def read_since(self, after_seq: int, **filters) -> list[Record]:
        """Events as of this transaction, own appends included (see `select`)."""
        return select(self.conn, after_seq, **filters)

    def query(self, sql: str, params: Sequence | dict = ()) -> list[sqlite3.Row]:
        """Read projections (or anything) as of this transaction."""
        cursor = self.conn.execute(sql, params)
        cursor.row_factory = sqlite3.Row
        return cursor.fetchall()

    def checkpoint(self, consumer: str) -> int:
        row = self.conn.execute(
            "SELECT seq FROM checkpoints WHERE consumer = ?", (consumer,)
        ).fetchone()
        return row[0] if row else 0

    def set_checkpoint(self, consumer: str, seq: int) -> None:
        """Record that `consumer` has fully handled every event up to `seq`."""
        self.conn.execute(
            """INSERT INTO checkpoints (consumer, seq, at) VALUES (?, ?, ?)
               ON CONFLICT(consumer) DO UPDATE SET seq = max(seq, excluded.seq), at = excluded.at""",
            (consumer, seq, iso_now()),
        )


class EventLog:
    """The append-only log plus its projections, shared by the threads of a process."""

    def __init__(self, path: Path | str, *, sync: str = "normal"):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._sync = sync
        self._write_lock = threading.RLock()
        self._writer = connect(self.path, sync=sync)
        self._writer.execute("PRAGMA journal_mode = WAL")
        self._writer.execute(f"PRAGMA wal_autocheckpoint = {WAL_AUTOCHECKPOINT_PAGES}")
        self._writer.execute(f"PRAGMA cache_size = -{WRITER_CACHE_KIB}")
        self._readers: list[sqlite3.Connection] = []
        self._local = threading.local()
        self._ensure_schema()
        self.waker = Waker(lambda: connect(self.path, sync=sync))

    # --- writing -------------------------------------------------------------

    @contextmanager
    def transaction(self) -> Iterator[Transaction]:
        """BEGIN IMMEDIATE ... COMMIT, serialised in-process and across processes."""
        with self._write_lock:
            self._writer.execute("BEGIN IMMEDIATE")
            tx = Transaction(self._writer)
            try:
                yield tx
            except BaseException:
                self._writer.execute("ROLLBACK")
                raise
            self._writer.execute("COMMIT")
        if tx.last_seq:
            self.waker.published(tx.last_seq)

    def append(self, event: t.Event, *, key: str | None = None) -> Appended:
        """Append one event; one that no projection folds is a single autocommit statement."""
        if type(event) in projections.APPLY:
            with self.transaction() as tx:
                return tx.append(event, key=key)
        with self._write_lock:
            appended = Transaction(self._writer).append(event, key=key)
        if appended.created:
            self.waker.published(appended.seq)
        return appended

    def append_many(
        self, items: Iterable[t.Event | tuple[t.Event, str | None]]
    ) -> list[Appended]:
        """Append a batch in one transaction: its new events get contiguous seqs."""
        with self.transaction() as tx:
            return tx.append_many(items)

    def set_checkpoint(self, consumer: str, seq: int) -> None:
        with self.transaction() as tx:
            tx.set_checkpoint(consumer, seq)

    # --- reading -------------------------------------------------------------

    def reader(self) -> sqlite3.Connection:
        """This thread's read connection (WAL readers never block the writer)."""
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = connect(self.path, sync=self._sync)
            self._local.conn = conn
            with self._write_lock:
                self._readers.append(conn)
        return conn

    def query(self, sql: str, params: Sequence | dict = ()) -> list[sqlite3.Row]:
        cursor = self.reader().execute(sql, params)
        cursor.row_factory = sqlite3.Row
        return cursor.fetchall()

    def table_version(self, name: str) -> int:
        """A projection's change counter (`versions`): cheap to poll before re-reading it."""
        return projections.table_version(self.reader(), name)

    def last_seq(self) -> int:
        return self.reader().execute("SELECT coalesce(max(seq), 0) FROM events").fetchone()[0]

    def checkpoint(self, consumer: str) -> int:
        row = self.reader().execute(
            "SELECT seq FROM checkpoints WHERE consumer = ?", (consumer,)
        ).fetchone()
        return row[0] if row else 0

    def read_since(self, after_seq: int, **filters) -> list[Record]:
        """Events after `after_seq` in seq order, optionally filtered (see `select`)."""
        return select(self.reader(), after_seq, **filters)

    def get(self, seq: int) -> Record | None:
        row = self.reader().execute(
            "SELECT seq, at, type, stream, key, data FROM events WHERE seq = ?", (seq,)
        ).fetchone()
        return None if row is None else _record(row)

    def known_keys(self, keys: list[str]) -> dict[str, int]:
        """The seq of each of these idempotency keys already stored."""
        return known_keys(self.reader(), keys)

    def by_key(self, key: str) -> Record | None:
        """The event stored under an idempotency key (a channel's message id, an outbound id)."""
        row = self.reader().execute(
            "SELECT seq, at, type, stream, key, data FROM events WHERE key = ?", (key,)
        ).fetchone()
        return None if row is None else _record(row)

    def messages_containing(self, text: str) -> list[int]:
        """Seqs of the inbound messages whose content holds `text`, newest first.

        A plain substring, not a pattern (`%` and `_` are literal); ASCII
        letters match in either case, as SQLite's LIKE does.
        """
        escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        rows = self.reader().execute(
            "SELECT seq FROM events WHERE type = 'MessageReceived'"
            " AND json_extract(data, '$.content') LIKE ? ESCAPE '\\' ORDER BY seq DESC",
            (f"%{escaped}%",),
        ).fetchall()
        return [row[0] for row in rows]

    def wait(self, after_seq: int, timeout: float | None) -> int:
        """Block until some event after `after_seq` is committed; returns the newest seq."""
        return self.waker.wait_beyond(after_seq, timeout)

    def follow(
        self,
        after_seq: int = 0,
        *,
        types: Iterable[type[t.Event] | str] | None = None,
        streams: Iterable[str] | None = None,
        stop: threading.Event | None = None,
        idle_timeout: float = 0.5,
    ) -> Iterator[Record]:
        """Yield matching events after `after_seq` as they are committed, until `stop` is set."""
        types = None if types is None else list(types)
        streams = None if streams is None else list(streams)
        while stop is None or not stop.is_set():
            high = self.last_seq()
            records = self.read_since(after_seq, types=types, streams=streams)
            for record in records:
                yield record
                after_seq = record.seq
            if len(records) < READ_BATCH:
                after_seq = max(after_seq, high)
                self.wait(high, idle_timeout)

    # --- projections -----------------------------------------------------------

    def rebuild_projections(self, *, batch: int = 5000) -> int:
        """Drop every projection and fold the whole log again; returns events folded."""
        with self.transaction() as tx:
            conn = tx.conn
            projections.drop_all(conn)
            projections.create_all(conn)
            reader = connect(self.path, sync=self._sync)
            try:
                cursor = reader.execute("SELECT seq, at, type, data FROM events ORDER BY seq")
                count = fold(conn, cursor, batch=batch)
            finally:
                reader.close()
            conn.execute(
                "INSERT OR REPLACE INTO meta (key, value) VALUES ('projection_version', ?)",
                (str(projections.PROJECTION_VERSION),),
            )
        return count

    def _ensure_schema(self) -> None:
        with self._write_lock:
            self._writer.execute("BEGIN IMMEDIATE")
            try:
                for ddl in _SCHEMA:
                    self._writer.execute(ddl)
                row = self._writer.execute(
                    "SELECT value FROM meta WHERE key = 'projection_version'"
                ).fetchone()
            except BaseException:
                self._writer.execute("ROLLBACK")
                raise
            self._writer.execute("COMMIT")
        if row is None or row[0] != str(projections.PROJECTION_VERSION):
            self.rebuild_projections()

    def close(self) -> None:
        self.waker.close()
        with self._write_lock:
            for conn in self._readers:
                conn.close()
            self._readers.clear()
            self._writer.close()
