"""The log's contract: idempotent, append-only, ordered, and quick to wake readers."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import threading
import time

import pytest
import sqlite_utils

from events import EventLog, types as t


def message(n: int, chat: str = "local:me", text: str | None = None) -> t.MessageReceived:
    return t.MessageReceived(
        chat_jid=chat, message_id=str(n), sender="u1", sender_name="Alice",
        content=text or f"hello {n}", timestamp="2026-01-01T00:00:00.000Z",
    )


def test_appending_a_known_key_returns_the_first_seq_and_stores_nothing(log: EventLog):
    first = log.append(message(1), key="local:me:1")
    again = log.append(message(1, text="redelivered"), key="local:me:1")
    assert first.created and not again.created
    assert again.seq == first.seq
    assert [r.event.content for r in log.read_since(0)] == ["hello 1"]


def test_a_batch_skips_known_keys_and_duplicates_within_itself(log: EventLog):
    log.append(message(1), key="k1")
    results = log.append_many([(message(1), "k1"), (message(2), "k2"), (message(3), "k2"), message(4)])
    assert [r.created for r in results] == [False, True, False, True]
    assert results[2].seq == results[1].seq
    assert [r.event.message_id for r in log.read_since(0)] == ["1", "2", "4"]


def test_seqs_have_no_gaps_after_a_duplicate(log: EventLog):
    log.append(message(1), key="k1")
    log.append(message(1), key="k1")
    log.append_many([(message(1), "k1")])
    assert log.append(message(2)).seq == 2


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE events SET data = '{}' WHERE seq = 1",
        "DELETE FROM events WHERE seq = 1",
        "INSERT OR REPLACE INTO events (seq, at, type, stream, data) VALUES (1, 'x', 'y', 'z', '{}')",
        "REPLACE INTO events (seq, at, type, stream, data) VALUES (1, 'x', 'y', 'z', '{}')",
    ],
)
def test_stored_events_cannot_be_changed_or_removed(log: EventLog, statement: str):
    log.append(message(1))
    with pytest.raises(sqlite3.IntegrityError, match="append-only"):
        log._writer.execute(statement)
    assert log.get(1).event == message(1)


def test_sqlite_utils_cannot_change_events_either(settings, log: EventLog):
    log.append(message(1))
    db = sqlite_utils.Database(settings.db_path)
    with pytest.raises(sqlite3.IntegrityError, match="append-only"):
        db["events"].update(1, {"type": "Other"})
    with pytest.raises(sqlite3.IntegrityError, match="append-only"):
        db["events"].delete(1)
    db.close()


def test_read_since_filters_by_type_and_stream(log: EventLog):
    log.append(message(1, chat="a"))
    log.append(t.SessionCleared(folder="a", reason="x"))
    log.append(message(2, chat="b"))
    assert [r.seq for r in log.read_since(0, types=[t.MessageReceived])] == [1, 3]
    assert [r.seq for r in log.read_since(0, streams=["a"])] == [1, 2]
    assert [r.seq for r in log.read_since(1, types=["MessageReceived"], streams=["a", "b"])] == [3]
    assert [r.seq for r in log.read_since(0, limit=1)] == [1]


def test_follow_wakes_on_an_append_from_another_thread(log: EventLog):
    got: list[tuple[int, float]] = []
    stop = threading.Event()

    def consume():
        for record in log.follow(0, stop=stop, idle_timeout=30):
            got.append((record.seq, time.monotonic()))
            stop.set()

    reader = threading.Thread(target=consume)
    reader.start()
    time.sleep(0.2)
    sent = time.monotonic()
    log.append(message(1))
    reader.join(timeout=5)
    assert got and got[0][0] == 1
    # idle_timeout is 30 s: only a wake-up explains a prompt delivery.
    assert got[0][1] - sent < 1.0


def test_follow_wakes_on_an_append_from_another_process(settings, log: EventLog):
    got: list[float] = []
    stop = threading.Event()

    def consume():
        for _ in log.follow(log.last_seq(), stop=stop, idle_timeout=30):
            got.append(time.monotonic())
            stop.set()

    reader = threading.Thread(target=consume)
    reader.start()
    time.sleep(0.2)
    code = (
        "from events import EventLog; from events import types as t; import time;"
        f"log = EventLog({str(settings.db_path)!r}); t0 = time.monotonic();"
        "log.append(t.SessionCleared(folder='x', reason='other process')); print(t0)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    reader.join(timeout=5)
    assert got, out.stderr
    assert got[0] - float(out.stdout) < 1.0


def test_wait_returns_at_its_timeout_when_nothing_comes(log: EventLog):
    started = time.monotonic()
    assert log.wait(log.last_seq(), timeout=0.2) == 0
    assert 0.15 < time.monotonic() - started < 2


def test_a_failed_transaction_leaves_no_event_and_no_projection_change(log: EventLog):
    with pytest.raises(RuntimeError):
        with log.transaction() as tx:
            tx.append(t.SessionUpdated(folder="main", session_id="s1"))
            raise RuntimeError("crash before commit")
    assert log.last_seq() == 0
    assert log.query("SELECT count(*) FROM sessions")[0][0] == 0
