"""Consumers of the log: handle each event and record it as done, atomically.

A stage's effects (the events it appends) and its checkpoint commit in one
transaction, so a crash either loses both (the event is handled again after
restart) or keeps both (it is never handled twice). Every stage of the
router and the jobs follows this one shape; on start each replays what lies
past its checkpoint before it waits for new events.
"""

from __future__ import annotations

import threading
from typing import Iterable

from base.faults import fault_point
from events import types as t
from events.log import EventLog, Record, Transaction


class Stage:
    """Subclass and set `name` (the checkpoint key), `types`, and `handle`."""

    name: str = ""
    types: Iterable[type[t.Event]] | None = None

    def handle(self, tx: Transaction, record: Record) -> None:
        raise NotImplementedError

    def handle_batch(self, tx: Transaction, records: list[Record]) -> None:
        """Handle records read together; override to decide over the whole batch."""
        for record in records:
            self.handle(tx, record)
            fault_point(f"stage-{self.name}-handled")


def drain(log: EventLog, stage: Stage, *, batch: int = 200) -> int:
    """Handle every event past the stage's checkpoint; returns how many were handled."""
    handled = 0
    types = None if stage.types is None else list(stage.types)
    while True:
        high = log.last_seq()
        start = log.checkpoint(stage.name)
        if start >= high:
            return handled
        records = log.read_since(start, types=types, limit=batch, before_seq=high + 1)
        with log.transaction() as tx:
            if tx.checkpoint(stage.name) != start:
                continue  # another drain of this stage got there first
            stage.handle_batch(tx, records)
            done = records[-1].seq if len(records) == batch else high
            tx.set_checkpoint(stage.name, done)
        handled += len(records)


def run(log: EventLog, stage: Stage, stop: threading.Event, *, idle_timeout: float = 1.0) -> None:
    """Replay what is pending, then handle new events as they are committed, until `stop`."""
    while not stop.is_set():
        drain(log, stage)
        if stop.is_set():  # set while draining: the wake-up append may already be consumed
            return
        log.wait(log.checkpoint(stage.name), idle_timeout)
