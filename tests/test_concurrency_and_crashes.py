"""Many writers at once lose nothing; a consumer killed mid-way resumes exactly once."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from collections import defaultdict
from pathlib import Path

from events import EventLog, consumer, types as t
from tests._writers import EchoStage, write_batches

REPO = Path(__file__).resolve().parents[1]
BATCHES, SIZE = 25, 20


def _spawn(*args: str, env: dict | None = None) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "tests._writers", *args], cwd=REPO,
                            env={**os.environ, **(env or {})}, stderr=subprocess.PIPE, text=True)


def test_eight_threads_and_two_processes_lose_nothing_and_keep_batches_contiguous(settings, log):
    db = str(settings.db_path)
    procs = [_spawn("write", db, f"p{i}", str(BATCHES), str(SIZE)) for i in range(2)]
    threads = [threading.Thread(target=write_batches, args=(db, f"t{i}", BATCHES, SIZE)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for proc in procs:
        assert proc.wait(timeout=120) == 0, proc.stderr.read()

    records = log.read_since(0, limit=None)
    assert len(records) == 10 * BATCHES * SIZE
    assert [r.seq for r in records] == list(range(1, len(records) + 1))
    batches: dict[tuple[str, str], list[tuple[int, int]]] = defaultdict(list)
    for record in records:
        writer, batch, index = record.event.content.split(":")
        batches[(writer, batch)].append((record.seq, int(index)))
    assert len(batches) == 10 * BATCHES
    for members in batches.values():
        seqs = [seq for seq, _ in members]
        assert seqs == list(range(seqs[0], seqs[0] + SIZE)), "a batch was interleaved"
        assert [index for _, index in members] == list(range(SIZE))


def _append_messages(log: EventLog, count: int) -> None:
    log.append_many(
        t.MessageReceived(chat_jid="local:me", message_id=str(i), sender="u", sender_name="U",
                          content=f"m{i}", timestamp="2026-01-01T00:00:00.000Z")
        for i in range(count)
    )


def _replies(log: EventLog) -> list[str]:
    return [r.event.outbound_id for r in log.read_since(0, types=[t.OutboundQueued], limit=None)]


def test_a_consumer_killed_mid_batch_resumes_from_its_checkpoint_exactly_once(settings, log):
    _append_messages(log, 100)
    # SIGKILL at the 80th event handled: the first batch of 50 committed, the second did not.
    crashed = _spawn("echo", str(settings.db_path), "50",
                     env={"NANOCLAW_FAULT": "stage-echo-handled@80"})
    assert crashed.wait(timeout=60) == -signal.SIGKILL
    assert log.checkpoint("echo") == 50
    assert len(_replies(log)) == 50

    restarted = _spawn("echo", str(settings.db_path), "50")
    assert restarted.wait(timeout=60) == 0, restarted.stderr.read()
    replies = _replies(log)
    assert sorted(replies) == sorted(f"echo:{seq}" for seq in range(1, 101))
    assert log.checkpoint("echo") == log.last_seq()


def test_drain_hands_each_event_to_a_stage_once_even_when_run_again(log):
    _append_messages(log, 10)
    stage = EchoStage()
    assert consumer.drain(log, stage) == 10
    assert consumer.drain(log, stage) == 0
    assert len(_replies(log)) == 10


def test_a_running_stage_handles_new_events_as_they_come(log):
    stop = threading.Event()
    worker = threading.Thread(target=consumer.run, args=(log, EchoStage(), stop), kwargs={"idle_timeout": 30})
    worker.start()
    try:
        _append_messages(log, 3)
        deadline = 50
        while len(_replies(log)) < 3 and deadline:
            log.wait(log.last_seq(), 0.1)
            deadline -= 1
        assert len(_replies(log)) == 3
    finally:
        stop.set()
        log.append(t.SessionCleared(folder="x", reason="wake the stage so it sees stop"))
        worker.join(timeout=5)
    assert not worker.is_alive()
