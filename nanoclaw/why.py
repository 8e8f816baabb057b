"""The story of one inbound message, read from the event log, for `nanoclaw why`.

"Why did the assistant not answer?" has its answer scattered over many
events: whether the message woke the agent (judged by the router's own
trigger rules), the runs that took it, their outputs, replies and model
calls, and what still waits. This module gathers them into one typed story.
"""

from __future__ import annotations

import re

import msgspec

from base.config import Settings
from base.timefmt import iso_now, parse_iso
from events import EventLog, Record, types as t
from events.queries import group_busy, is_conversation, outstanding_request
from jobs.message_run import MAX_RETRIES
from nanoclaw.message_runs import Reply, Run, RunTracer, Tokens, conversation, excerpt, run_events
from rules.allowlist import Allowlist, AllowlistFile
from rules.triggers import js_trim, matches_trigger, needs_trigger
from rules.windows import message_wakes

SHOW_OTHER_MATCHES = 20
SEQ_RE = re.compile(r"\d+", re.ASCII)
MAX_SEQ = 2**63 - 1  # SQLite's largest integer
GROUP_EVENTS = (t.GroupRegistered, t.GroupUpdated, t.GroupRemoved)


class WhyError(Exception):
    """A message reference that finds nothing, with what to try instead."""


class Message(msgspec.Struct, kw_only=True):
    seq: int
    at: str
    chat_jid: str
    sender: str
    sender_name: str
    text: str                      # the start of its content
    key: str | None
    channel: str | None = None
    is_from_me: bool = False
    is_bot_message: bool = False


class GroupAt(msgspec.Struct, kw_only=True):
    """The chat's group as it was registered when the message arrived."""

    folder: str
    name: str
    is_main: bool
    trigger: str
    requires_trigger: bool


class Wake(msgspec.Struct, kw_only=True):
    woke: bool
    reason: str                    # in plain words, either way
    woken_by: int | None = None    # context only: the seq of the message that woke its window


class Story(msgspec.Struct, kw_only=True):
    message: Message
    group: GroupAt | None          # None: not a registered group when it arrived
    wake: Wake
    runs: list[Run]
    model: Tokens                  # the runs' model calls together
    outcome: str                   # where it stands now
    waiting: bool                  # something is still due (a run, a retry, a reply)
    matches: int = 1               # a text search: how many messages matched
    other_matches: list[int] = []  # their seqs, newest first (the newest is the story)


# --- finding the message --------------------------------------------------------


def find_message(log: EventLog, reference: str, rules: Allowlist) -> tuple[Record, list[int]]:
    """A seq, a message key, or text (newest match first): the message and the other matches' seqs."""
    ref = reference.strip()
    if not ref:
        raise WhyError("give a message: its seq, its key (such as local:me:...), or some of its text")
    if SEQ_RE.fullmatch(ref):
        record = log.get(int(ref)) if int(ref) <= MAX_SEQ else None
        if record is None:
            raise WhyError(f"no event has seq {ref} (the log ends at seq {log.last_seq()})")
        if not isinstance(record.event, t.MessageReceived):
            raise WhyError(f"seq {ref} is a {record.type} event, not a message; "
                           f"'nanoclaw events --after-seq {int(ref) - 1} --limit 1' shows it")
        return record, []
    if ":" in ref:
        record = log.by_key(ref)
        if record is not None and isinstance(record.event, t.MessageReceived):
            return record, []
    seqs = log.messages_containing(ref)
    if not seqs:
        raise WhyError(_nothing_found(ref, rules))
    return log.get(seqs[0]), seqs[1:]  # type: ignore[return-value]


def _nothing_found(ref: str, rules: Allowlist) -> str:
    text = f"no message has the key or contains the text {ref!r}"
    dropping = [jid for jid, entry in rules.chats.items() if entry.mode == "drop"]
    near = [jid for jid in dropping if ref.startswith(f"{jid}:")]
    if near or dropping or rules.default.mode == "drop":
        where = ", ".join(near or dropping) or "every chat without its own entry"
        text += (f"; the sender allowlist drops messages from senders it does not allow in {where}: "
                 "those are never recorded")
    return text


# --- the group and the trigger rules ----------------------------------------------


def group_at(log: EventLog, jid: str, seq: int) -> GroupAt | None:
    """The chat's group as registered just before `seq` (None when it was not)."""
    group: GroupAt | None = None
    for record in log.read_since(0, types=GROUP_EVENTS, streams=[jid], before_seq=seq, limit=None):
        ev = record.event
        if isinstance(ev, t.GroupRegistered):
            group = GroupAt(folder=ev.folder, name=ev.name, is_main=ev.is_main, trigger=ev.trigger,
                            requires_trigger=ev.requires_trigger)
        elif isinstance(ev, t.GroupRemoved):
            group = None
        elif group is not None and isinstance(ev, t.GroupUpdated):
            changed = {name: getattr(ev, name) for name in ("name", "trigger", "requires_trigger")
                       if getattr(ev, name) is not t.UNSET}
            group = msgspec.structs.replace(group, **changed)
    return group


def wake_of(event: t.MessageReceived, group: GroupAt | None, default_trigger: str, rules: Allowlist) -> Wake:
    """Whether the message itself wakes the agent, by the trigger stage's rules, and why (not)."""
    if group is None:
        return Wake(woke=False, reason=f"{event.chat_jid} was not a registered group when it arrived: "
                                       "the assistant does not answer it")
    if event.is_bot_message:
        return Wake(woke=False, reason="a bot's message (the assistant's own, or another bot's): it never "
                                       "wakes the agent and is left out of its prompts")
    if not is_conversation(event):
        return Wake(woke=False, reason="an empty message: it is left out of the agent's prompts")
    if not needs_trigger(group.is_main, group.requires_trigger):
        where = "the main group" if group.is_main else "a group that needs no trigger"
        return Wake(woke=True, reason=f"{where}: every message wakes the agent")
    trigger = js_trim(group.trigger) or default_trigger
    if message_wakes(event, trigger=group.trigger, default_trigger=default_trigger, rules=rules):
        return Wake(woke=True, reason=f"it starts with the trigger {trigger}")
    if not matches_trigger(event.content, group.trigger, default_trigger):
        return Wake(woke=False, reason=f"no trigger word: in this group only a message starting with "
                                       f"{trigger} wakes the agent")
    return Wake(woke=False, reason=f"sender {event.sender} ({event.sender_name}) may not trigger the assistant "
                                   "in this chat (the sender allowlist, as it is now)")


def woken_by(window: list[Record], group: GroupAt, default_trigger: str, rules: Allowlist) -> int | None:
    """The first message of a window that wakes the agent: why a message that did not came along."""
    for record in window:
        if message_wakes(record.event, trigger=group.trigger, default_trigger=default_trigger,  # type: ignore[arg-type]
                         rules=rules):
            return record.seq
    return None


# --- the whole story -----------------------------------------------------------------


def tell(log: EventLog, settings: Settings, reference: str, now: str | None = None) -> Story:
    """The story of the message `reference` names (a seq, a key, or text; see `find_message`)."""
    rules = AllowlistFile(settings.sender_allowlist_path).current()
    record, others = find_message(log, reference, rules)
    event: t.MessageReceived = record.event  # type: ignore[assignment]
    group = group_at(log, event.chat_jid, record.seq)
    wake = wake_of(event, group, settings.trigger, rules)
    runs: list[Run] = []
    if group is not None and is_conversation(event):
        tracer = RunTracer(log, record)
        for later in run_events(log, record.seq, group.folder, event.chat_jid):
            tracer.feed(later)
        runs = tracer.runs
        if runs and not wake.woke:
            window = conversation(log, event.chat_jid, runs[0].window[0] - 1, runs[0].window[1])
            by = woken_by(window, group, settings.trigger, rules)
            came = f"seq {by} in the same window woke the agent and brought it along" if by else \
                f"it came along with run {runs[0].run_id}'s messages"
            wake = Wake(woke=False, reason=f"{wake.reason}. Context only: {came}", woken_by=by)
    outcome, waiting = outcome_of(log, settings, record, group, wake, runs, now or iso_now())
    model = Tokens()
    for run in runs:
        model = model.plus(run.model)
    return Story(message=message_of(record), group=group, wake=wake, runs=runs, model=model, outcome=outcome,
                 waiting=waiting, matches=1 + len(others), other_matches=others[:SHOW_OTHER_MATCHES])


def message_of(record: Record) -> Message:
    ev: t.MessageReceived = record.event  # type: ignore[assignment]
    return Message(seq=record.seq, at=record.at, chat_jid=ev.chat_jid, sender=ev.sender, sender_name=ev.sender_name,
                   text=excerpt(ev.content), key=record.key, channel=ev.channel, is_from_me=ev.is_from_me,
                   is_bot_message=ev.is_bot_message)


def outcome_of(log: EventLog, settings: Settings, record: Record, group: GroupAt | None, wake: Wake,
               runs: list[Run], now: str) -> tuple[str, bool]:
    """Where the message stands now, in one line, and whether anything about it is still due."""
    event: t.MessageReceived = record.event  # type: ignore[assignment]
    if group is None or not is_conversation(event):
        return f"not answered: {wake.reason}", False
    if any(output.status == "success" for run in runs for output in run.outputs):
        return _answered([reply for run in runs for reply in run.replies])
    if runs and not any(run.shown for run in runs):
        return "not answered: newer messages filled the agent's prompt, so it never saw it", False
    if runs and runs[-1].status == "running":
        return f"in progress: run {runs[-1].run_id} has it (started {runs[-1].started_at})", True
    due = _due(log, group.folder, now)
    if runs:
        if due:
            return due, True
        last = runs[-1]
        ended = f"not answered: run {last.run_id} ended {last.status}" + (f" ({last.error})" if last.error else "")
        return ended + (f"; {last.then}" if last.then else ""), False
    return _not_taken(log, settings, record, wake, due)


def _not_taken(log: EventLog, settings: Settings, record: Record, wake: Wake, due: str | None) -> tuple[str, bool]:
    """No run has had the message yet: will one, and will it be shown?"""
    room = settings.max_messages_per_prompt
    if len(conversation(log, record.stream, record.seq, enough=room)) >= room:
        return (f"not answered, and never to be shown: {room} newer messages came after it and a prompt holds "
                f"only the newest {room}"), False
    if wake.woke:
        return due or ("waiting: no run has taken it yet (while the service runs, recovery asks for one "
                       "within a minute)"), True
    if due:
        return f"{due}; it comes along as context", True
    return "not answered: it waits as context for the next message that wakes the agent", False


def _answered(replies: list[Reply]) -> tuple[str, bool]:
    failed = [reply for reply in replies if reply.state == "failed"]
    queued = [reply for reply in replies if reply.state == "queued"]
    if failed:
        return (f"answered, but {len(failed)} of {len(replies)} repl(ies) could not be sent: "
                f"{failed[-1].reason}"), False
    if queued:
        return f"answered; {len(queued)} repl(ies) wait to be sent", True
    if replies:
        return f"answered: {len(replies)} repl(ies) sent", False
    return ("answered without a reply of its own (the agent's answer was empty or internal; "
            "it may have used its send_message tool)"), False


def _due(log: EventLog, folder: str, now: str) -> str | None:
    """What the group is waiting for: a requested run, a retry at its time, or a run in progress."""
    request = outstanding_request(log, folder)
    if request is not None:
        ev: t.AgentRunRequested = request.event  # type: ignore[assignment]
        if ev.reason != "retry":
            return f"waiting: no run has taken it yet (a run was asked for at seq {request.seq}, {ev.reason})"
        if ev.not_before and parse_iso(ev.not_before) > parse_iso(now):
            return f"waiting: retry {ev.attempt} of {MAX_RETRIES} at {ev.not_before}"
        return f"waiting: retry {ev.attempt} of {MAX_RETRIES} was due at {ev.not_before}; no run has taken it yet"
    if group_busy(log, folder):
        return "waiting: another run of the group is in progress; it is handed over when that run ends"
    return None
