"""After a service has been crashed and restarted: do the log, the projections and the chat agree?

One verdict shared by the fault tests, the Docker outage test and the soak:
every message the user sent is in the log once and in exactly one reply the
user got (the scripted agent echoes its prompt), every queued reply was sent
once, no run is left open, the projections equal a fresh fold of the log, and
no container of this install is left.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field

from base.config import Settings
from events import EventLog, replay, types as t
from router.channels.local import jid_name
from rules.prompt import escape_xml
from tests.observe import our_containers


@dataclass
class Audit:
    """What was found; `problems` empty means everything agrees."""

    messages: int = 0
    replies: int = 0
    runs: int = 0
    interrupted: int = 0
    failed_runs: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def transcript_replies(settings: Settings, jid: str) -> list[dict]:
    """The replies the local chat delivered to `jid`, as its transcript keeps them."""
    path = settings.data_dir / "local" / f"{jid_name(jid)}.jsonl"
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        return []
    entries = []
    for line in lines:
        try:
            entries.append(json.loads(line))
        except json.JSONDecodeError:
            continue  # a line cut by a kill mid-write
    return [e for e in entries if e.get("kind") == "reply"]


def times_answered(text: str, replies: list[dict]) -> int:
    """In how many distinct replies the echoing agent quoted this message."""
    needle = f">{escape_xml(text)}</message>"
    return sum(needle in reply["text"] for reply in {r["id"]: r for r in replies}.values())


def unanswered(settings: Settings, sent: dict[str, list[str]]) -> int:
    """How many sent messages no delivered reply quotes yet (cheap enough to poll)."""
    missing = 0
    for jid, texts in sent.items():
        replies = transcript_replies(settings, jid)
        missing += sum(times_answered(text, replies) == 0 for text in texts)
    return missing


def audit(settings: Settings, log: EventLog, sent: dict[str, list[str]], *, containers: bool = True) -> Audit:
    """Check every agreement; `sent` maps each chat to the texts its user sent (each unique)."""
    result = Audit()
    _check_messages(log, sent, result)
    _check_replies(settings, log, sent, result)
    _check_runs(log, result)
    diffs = replay.check(log)
    if diffs:
        result.problems.append(f"projections differ from a fresh fold of the log: {diffs}")
    if containers:
        left = our_containers(settings)
        if left:
            result.problems.append(f"containers left behind: {[c.name for c in left]}")
    return result


def _check_messages(log: EventLog, sent: dict[str, list[str]], result: Audit) -> None:
    received = [r.event for r in log.read_since(0, types=[t.MessageReceived], limit=None)]
    result.messages = len(received)
    for jid, texts in sent.items():
        counts = Counter(e.content for e in received if e.chat_jid == jid)
        for text in texts:
            if counts[text] != 1:
                result.problems.append(f"{jid}: {text!r} is in the log {counts[text]} time(s)")


def _check_replies(settings: Settings, log: EventLog, sent: dict[str, list[str]], result: Audit) -> None:
    queued = {r.event.outbound_id: r.event.chat_jid for r in log.read_since(0, types=[t.OutboundQueued], limit=None)}
    sends = Counter(r.event.outbound_id for r in log.read_since(0, types=[t.OutboundSent], limit=None))
    failed = [r.event.outbound_id for r in log.read_since(0, types=[t.OutboundFailed], limit=None)]
    if failed:
        result.problems.append(f"replies that failed to send: {failed}")
    for outbound_id in queued:
        if sends[outbound_id] != 1:
            result.problems.append(f"reply {outbound_id} was recorded as sent {sends[outbound_id]} time(s)")
    for jid, texts in sent.items():
        replies = transcript_replies(settings, jid)
        ids = Counter(r["id"] for r in replies)
        result.replies += len(ids)
        doubled = [i for i, n in ids.items() if n > 1]
        if doubled:
            result.problems.append(f"{jid}: the user got replies {doubled} more than once")
        expected = {i for i, chat in queued.items() if chat == jid}
        if set(ids) != expected:
            result.problems.append(f"{jid}: delivered {sorted(set(ids) - expected)} not queued, "
                                   f"queued {sorted(expected - set(ids))} not delivered")
        for text in texts:
            answers = times_answered(text, replies)
            if answers != 1:
                result.problems.append(f"{jid}: {text!r} was answered {answers} time(s)")


def _check_runs(log: EventLog, result: Audit) -> None:
    started = {r.event.run_id for r in log.read_since(0, types=[t.AgentRunStarted], limit=None)}
    finished = [r.event for r in log.read_since(0, types=[t.AgentRunFinished], limit=None)]
    result.runs = len(started)
    result.interrupted = sum(f.status == "interrupted" for f in finished)
    result.failed_runs = sum(f.status in ("error", "timeout") for f in finished)
    ends = Counter(f.run_id for f in finished)
    open_runs = sorted(started - set(ends))
    if open_runs:
        result.problems.append(f"runs started and never finished: {open_runs}")
    twice = [run for run, n in ends.items() if n > 1]
    if twice:
        result.problems.append(f"runs finished more than once: {twice}")
    running = log.query("SELECT run_id FROM runs WHERE state = 'running'")
    if running:
        result.problems.append(f"runs still holding their group's lease: {[r[0] for r in running]}")
