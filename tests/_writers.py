"""Helpers run as separate processes by the concurrency and crash tests."""

from __future__ import annotations

import sys

from events import EventLog, consumer, types as t


def write_batches(db: str, writer: str, batches: int, size: int) -> None:
    """Append `batches` batches of `size` messages tagged writer:batch:index."""
    log = EventLog(db)
    for b in range(batches):
        log.append_many(
            (t.MessageReceived(chat_jid=f"local:{writer}", message_id=f"{writer}:{b}:{i}", sender=writer,
                               sender_name=writer, content=f"{writer}:{b}:{i}",
                               timestamp="2026-01-01T00:00:00.000Z"), f"{writer}:{b}:{i}")
            for i in range(size)
        )
    log.close()


class EchoStage(consumer.Stage):
    """Answers every message with one queued reply: effects plus checkpoint, atomically."""

    name = "echo"
    types = (t.MessageReceived,)

    def handle(self, tx, record):
        tx.append(t.OutboundQueued(outbound_id=f"echo:{record.seq}", chat_jid=record.event.chat_jid,
                                   text=record.event.content))


def echo(db: str) -> None:
    log = EventLog(db)
    consumer.drain(log, EchoStage(), batch=int(sys.argv[3]) if len(sys.argv) > 3 else 200)
    log.close()


if __name__ == "__main__":
    if sys.argv[1] == "write":
        write_batches(sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5]))
    elif sys.argv[1] == "echo":
        echo(sys.argv[2])
