"""The runs that handled one inbound message, read from the event log.

A message reaches an agent in a run's window (handed over at its start) or
piped into a run already going; the run answers it in the outputs of that
turn. This module follows one group's run events and keeps, for each run
that held the message, what it did with it: outputs, replies, model calls.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import msgspec

from events import EventLog, Record, types as t
from events.queries import is_conversation, outbound_by_id
from jobs.message_run import MAX_RETRIES

EXCERPT_CHARS = 200
SCAN_PAGE = 1000
RUN_EVENTS = (t.AgentRunStarted, t.MessagesPiped, t.AgentOutput, t.AgentRunFinished, t.AgentRunRequested,
              t.OutboundQueued, t.ModelCalled)


class Output(msgspec.Struct, kw_only=True):
    seq: int
    at: str
    index: int
    status: str                    # success, error
    text: str | None = None
    error: str | None = None


class Reply(msgspec.Struct, kw_only=True):
    outbound_id: str
    queued_seq: int
    queued_at: str
    state: str                     # queued, sent, failed
    attempts: int
    text: str
    done_at: str | None = None
    reason: str | None = None      # the channel's error when it failed


class Tokens(msgspec.Struct, kw_only=True):
    calls: int = 0
    failed: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cache_creation_input_tokens: int = 0
    cache_read_input_tokens: int = 0

    def add(self, call: t.ModelCalled) -> None:
        self.calls += 1
        self.failed += int(call.status >= 400 or call.error is not None)
        for name in ("input_tokens", "output_tokens", "cache_creation_input_tokens", "cache_read_input_tokens"):
            setattr(self, name, getattr(self, name) + (getattr(call, name) or 0))

    def plus(self, other: Tokens) -> Tokens:
        names = self.__struct_fields__
        return Tokens(**{name: getattr(self, name) + getattr(other, name) for name in names})


class Run(msgspec.Struct, kw_only=True):
    run_id: str
    retry: int                     # 0 for the first try, n for the n-th retry
    reached: str                   # window (handed over at the start) or piped (into the running agent)
    via_seq: int                   # the AgentRunStarted or MessagesPiped event that handed it over
    window: tuple[int, int]        # the seqs handed over with it (first, last)
    shown: bool                    # False: newer messages filled the prompt, the agent never saw it
    how: str
    started_at: str
    status: str = "running"        # then ok, error, timeout or interrupted
    finished_at: str | None = None
    error: str | None = None
    duration_ms: int | None = None
    outputs: list[Output] = []     # the outputs that answered it
    replies: list[Reply] = []
    notices: list[Reply] = []      # what the chats were told when it failed (rules/notices.py)
    model: Tokens = msgspec.field(default_factory=Tokens)  # every model call of the run
    then: str | None = None        # what the run's end asked for next


def conversation(log: EventLog, jid: str, after: int, through: int | None = None,
                 enough: int | None = None) -> list[Record]:
    """The chat's messages an agent is shown, after `after` (up to `through`), oldest first; at most `enough`."""
    found: list[Record] = []
    while enough is None or len(found) < enough:
        page = log.read_since(after, types=[t.MessageReceived], streams=[jid],
                              before_seq=None if through is None else through + 1, limit=SCAN_PAGE)
        found += [r for r in page if is_conversation(r.event)]  # type: ignore[arg-type]
        if len(page) < SCAN_PAGE:
            break
        after = page[-1].seq
    return found if enough is None else found[:enough]


def run_events(log: EventLog, seq: int, folder: str, jid: str) -> list[Record]:
    """The group's run events from the run live when the message came until a run starts past it.

    A run that starts with its cursor at or past the message cannot hold it,
    and none after it can: a run's end never rolls the cursor back below
    where that run started. (A model call recorded only after that next start
    is not counted; the gateway records calls as they end, so there are none
    in practice.)
    """
    before = log.read_since(0, types=[t.AgentRunStarted], streams=[folder], before_seq=seq, limit=1, newest=True)
    after = before[0].seq - 1 if before and before[0].event.task_id is None else seq  # type: ignore[attr-defined]
    found: list[Record] = []
    while True:
        page = log.read_since(after, types=RUN_EVENTS, streams=[folder, jid], limit=SCAN_PAGE)
        for record in page:
            ev = record.event
            if isinstance(ev, t.AgentRunStarted) and ev.task_id is None and ev.from_seq >= seq:
                return found
            found.append(record)
        if len(page) < SCAN_PAGE:
            return found
        after = page[-1].seq


@dataclass
class _Tracked:
    """One run of the group while its events are read: its high mark, and how it answers."""

    start: Record
    high: int
    run: Run | None = None
    pipe_file: str | None = None
    first_turn: bool = True
    answering: bool = False


@dataclass
class RunTracer:
    """Folds a group's run events into the runs that handled one message."""

    log: EventLog
    message: Record
    tracked: dict[str, _Tracked] = field(default_factory=dict)
    runs: list[Run] = field(default_factory=list)
    just_finished: Run | None = None

    def feed(self, record: Record) -> None:
        ev = record.event
        handler = getattr(self, f"_{type(ev).__name__}")
        handler(record, ev, self.tracked.get(getattr(ev, "run_id", None) or ""))

    def _AgentRunStarted(self, record: Record, ev: t.AgentRunStarted, _: _Tracked | None) -> None:
        self.just_finished = None
        if ev.task_id is not None:
            return
        tracked = self.tracked[ev.run_id] = _Tracked(start=record, high=ev.through_seq)
        if ev.from_seq < self.message.seq <= ev.through_seq:
            tracked.run = self._covered(record, ev.run_id, ev.attempt, "window", (ev.from_seq, ev.through_seq),
                                        ev.message_count, f"part of run {ev.run_id}'s window")

    def _MessagesPiped(self, record: Record, ev: t.MessagesPiped, tracked: _Tracked | None) -> None:
        if tracked is None:
            return
        low, tracked.high = tracked.high, max(tracked.high, ev.through_seq)
        if tracked.run is None and low < self.message.seq <= ev.through_seq:
            attempt = tracked.start.event.attempt  # type: ignore[attr-defined]
            tracked.run = self._covered(tracked.start, ev.run_id, attempt, "piped", (low, ev.through_seq),
                                        ev.message_count, f"piped into run {ev.run_id} at seq {record.seq}",
                                        via=record.seq)
            tracked.pipe_file = ev.file

    def _covered(self, started: Record, run_id: str, attempt: int, reached: str, span: tuple[int, int],
                 count: int, how: str, via: int | None = None) -> Run:
        """The run that took the message over `span` (after its first seq, through its last)."""
        messages = conversation(self.log, self.message.stream, *span)
        window = (messages[0].seq, messages[-1].seq) if messages else (self.message.seq, self.message.seq)
        how += f", {len(messages)} message(s) from seq {window[0]} to {window[1]}"
        shown = not count or sum(r.seq > self.message.seq for r in messages) < count  # 0: not recorded
        if not shown:
            how += f"; not shown to the agent: the prompt held only the newest {count}"
        run = Run(run_id=run_id, retry=attempt, reached=reached, via_seq=via or started.seq, window=window,
                  shown=shown, how=how, started_at=started.at)
        self.runs.append(run)
        return run

    def _AgentOutput(self, record: Record, ev: t.AgentOutput, tracked: _Tracked | None) -> None:
        if tracked is None:
            return
        if tracked.pipe_file is not None:
            answers = tracked.pipe_file in ev.inputs
        else:
            answers = tracked.first_turn and not (ev.index > 0 and ev.inputs)
            tracked.first_turn = answers
        tracked.answering = answers and tracked.run is not None and tracked.run.shown
        if tracked.answering:
            tracked.run.outputs.append(Output(  # type: ignore[union-attr]
                seq=record.seq, at=record.at, index=ev.index, status=ev.status,
                text=excerpt(ev.result) if ev.result else None, error=ev.error))

    def _OutboundQueued(self, record: Record, ev: t.OutboundQueued, tracked: _Tracked | None) -> None:
        if ev.origin == "notice":
            if tracked is not None and tracked.run is not None and ev.run_id == tracked.run.run_id:
                tracked.run.notices.append(reply_of(self.log, record))
            return
        if tracked is not None and tracked.answering:
            tracked.run.replies.append(reply_of(self.log, record))  # type: ignore[union-attr]

    def _ModelCalled(self, record: Record, ev: t.ModelCalled, tracked: _Tracked | None) -> None:
        if tracked is not None and tracked.run is not None:
            tracked.run.model.add(ev)

    def _AgentRunFinished(self, record: Record, ev: t.AgentRunFinished, tracked: _Tracked | None) -> None:
        if tracked is None or tracked.run is None:
            self.just_finished = None  # another run's end: a request after it is not this message's
            return
        run = tracked.run
        run.status, run.error, run.finished_at, run.duration_ms = ev.status, ev.error, record.at, ev.duration_ms
        if ev.status != "ok" and not ev.had_output and run.retry >= MAX_RETRIES:
            run.then = f"no retry: all {MAX_RETRIES} retries are used up"
        self.just_finished = run

    def _AgentRunRequested(self, record: Record, ev: t.AgentRunRequested, _: _Tracked | None) -> None:
        """The first request after a run's end is its own when its end asks for one (same transaction)."""
        run, self.just_finished = self.just_finished, None
        if run is None:
            return
        if ev.reason == "retry":
            run.then = f"retry {ev.attempt} of {MAX_RETRIES}" + (f" at {ev.not_before}" if ev.not_before else "")
        elif ev.reason == "drain" or (ev.reason == "recovery" and run.status == "interrupted"):
            run.then = f"another run was asked for ({ev.reason}, seq {record.seq})"


def reply_of(log: EventLog, record: Record) -> Reply:
    """A queued reply and what delivery did with it, from the `outbound` projection."""
    ev: t.OutboundQueued = record.event  # type: ignore[assignment]
    row = outbound_by_id(log, ev.outbound_id) or {"state": "queued", "attempts": 0, "reason": None, "done_at": None}
    return Reply(outbound_id=ev.outbound_id, queued_seq=record.seq, queued_at=record.at, state=row["state"],
                 attempts=row["attempts"], text=excerpt(ev.text), done_at=row["done_at"], reason=row["reason"])


def excerpt(text: str) -> str:
    return text if len(text) <= EXCERPT_CHARS else text[: EXCERPT_CHARS - 1] + "…"


