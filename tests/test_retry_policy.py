"""Retries after a failed run with no reply: 5 s, doubling, five times, then wait for new messages."""

from __future__ import annotations

from freezegun import freeze_time

from events import types as t
from jobs.message_run import MessageRun
from jobs.run_lifecycle import Claim
from rules.groups import register_group


def plan_for(group, attempt: int) -> Claim:
    return Claim(run_id=f"r{attempt}", group=group, reply_to=group.jid, container="c", from_seq=0, through_seq=1,
                 prompt="p", session_id=None, attempt=attempt)


@freeze_time("2026-11-25 12:00:00")
def test_the_backoff_doubles_from_five_seconds_and_stops_after_five_retries(settings, log):
    group = register_group(log, settings, jid="local:me", name="Me", folder="main", is_main=True)
    job = MessageRun(settings, log)
    for attempt in range(6):
        with log.transaction() as tx:
            job._retry(tx, plan_for(group, attempt), "internal")
    requests = [r.event for r in log.read_since(0, types=[t.AgentRunRequested])]
    assert [(r.reason, r.attempt) for r in requests] == [("retry", n) for n in range(1, 6)]
    assert [r.not_before for r in requests] == [
        "2026-11-25T12:00:05.000Z", "2026-11-25T12:00:10.000Z", "2026-11-25T12:00:20.000Z",
        "2026-11-25T12:00:40.000Z", "2026-11-25T12:01:20.000Z",
    ]


def test_refused_credentials_are_never_retried(settings, log):
    group = register_group(log, settings, jid="local:me", name="Me", folder="main", is_main=True)
    with log.transaction() as tx:
        assert MessageRun(settings, log)._retry(tx, plan_for(group, 0), "credentials") is None
    assert log.read_since(0, types=[t.AgentRunRequested]) == []
