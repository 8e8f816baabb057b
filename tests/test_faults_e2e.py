"""kill -9 of the whole service at each dangerous point, then a restart: nothing lost, nothing doubled.

`nanoclaw run` (router plus its worker child) leads a process group of its
own; a fault point (NANOCLAW_FAULT, scope `group`) kills that whole group,
the way systemd kills a unit's control group. Two users talk meanwhile, in
the main group and with `@Andy` in a trigger group, through real scripted
agent containers. After a restart without the fault, every message is
answered exactly once, every reply was recorded as sent once and shown
once, the projections equal a fresh fold of the log, and no container of
this install is left (tests/service_audit.py).
"""

from __future__ import annotations

import signal
from datetime import datetime, timedelta, timezone

import pytest

from base.timefmt import to_iso
from events import types as t
from rules.groups import register_group
from tests.observe import of_type
from tests.service_audit import audit, our_containers, transcript_replies, unanswered
from tests.service_harness import ChatUser, start_service
from tests.waiting import eventually

pytestmark = pytest.mark.docker

SETTLE_TIMEOUT_S = 120


@pytest.fixture
def world(settings, log, agent_image, monkeypatch):
    for key, value in dict(CONTAINER_IMAGE=agent_image, CONTAINER_NETWORK="none", AGENT_PROVIDER="scripted",
                           IDLE_TIMEOUT="2000").items():
        monkeypatch.setenv(key, value)
    register_group(log, settings, jid="local:me", name="Me", folder="main", is_main=True)
    register_group(log, settings, jid="local:fam", name="Family", folder="family")
    return settings, log


def not_sent(log) -> set[str]:
    return {e.outbound_id for e in of_type(log, t.OutboundQueued)} - {e.outbound_id for e in of_type(log, t.OutboundSent)}


def delivered(settings) -> set[str]:
    return {r["id"] for jid in ("local:me", "local:fam") for r in transcript_replies(settings, jid)}


def has(log, cls) -> bool:
    return bool(of_type(log, cls))


# What the log (and Docker) show at the moment of death: proof that the fault hit where it is named.
KILLED_AT = {
    "inbound-recorded": lambda s, log: has(log, t.MessageReceived) and not has(log, t.AgentRunRequested),
    "triggers-before-request": lambda s, log: has(log, t.MessageReceived) and not has(log, t.AgentRunRequested),
    "stage-dispatcher-handled": lambda s, log: has(log, t.AgentRunRequested) and not has(log, t.AgentOutput),
    "agent-run-started": lambda s, log: has(log, t.AgentRunStarted) and not has(log, t.AgentOutput),
    "container-started": lambda s, log: bool(our_containers(s)) and not has(log, t.AgentOutput),
    "agent-output-queued": lambda s, log: has(log, t.OutboundQueued) and not has(log, t.AgentRunFinished),
    "delivery-before-send": lambda s, log: bool(not_sent(log)) and not delivered(s),
    "delivery-after-send": lambda s, log: bool(not_sent(log) & delivered(s)),
}


def settle_and_stop(settings, service, users: list[ChatUser]) -> None:
    """Wait until every message is answered, take the pushed replies, stop the service gracefully."""
    sent = {u.jid: u.sent for u in users}
    settled = eventually(lambda: unanswered(settings, sent) == 0, SETTLE_TIMEOUT_S, interval=0.2)
    for user in users:
        user.collect(0.5)
        user.detach()
    assert service.stop(timeout=90) == 0, service.stderr()
    assert settled, f"{unanswered(settings, sent)} message(s) never answered\n{service.stderr()}"


@pytest.mark.parametrize("point", list(KILLED_AT))
def test_the_service_killed_at_a_fault_point_answers_every_message_once_after_a_restart(world, point):
    settings, log = world
    me, fam = ChatUser("local:me"), ChatUser("local:fam")
    crashed = start_service(settings, fault=point)
    me.attach(crashed), fam.attach(crashed)
    me.send("first question")
    fam.send("we need milk")
    fam.send("@Andy add it to the list")
    assert crashed.wait_group_gone(timeout=120) == -signal.SIGKILL, crashed.stderr()
    assert KILLED_AT[point](settings, log), f"not killed where {point} says\n{crashed.stderr()}"

    service = start_service(settings)
    me.attach(service), fam.attach(service)  # and sends again what was never acknowledged
    me.send("second question")
    settle_and_stop(settings, service, [me, fam])

    verdict = audit(settings, log, {u.jid: u.sent for u in (me, fam)})
    assert verdict.ok, "\n".join(verdict.problems) + "\n" + service.stderr()
    assert me.pushed_twice() == [] and fam.pushed_twice() == []
    texts = [r["text"] for r in transcript_replies(settings, "local:me")]
    first = next(i for i, text in enumerate(texts) if ">first question</message>" in text)
    second = next(i for i, text in enumerate(texts) if ">second question</message>" in text)
    assert first <= second  # replies in the order of the questions
    family = transcript_replies(settings, "local:fam")
    assert len(family) == 1 and ">we need milk</message>" in family[0]["text"]  # the context, with the trigger
    if point == "delivery-after-send":
        assert "was already delivered; not writing it twice" in service.stderr()


def test_the_service_killed_while_a_scheduled_task_runs_runs_it_once_after_a_restart(world):
    settings, log = world
    log.append(t.TaskScheduled(task_id="brief", group_folder="main", chat_jid="local:me",
                               prompt="Summarise my day.", schedule_type="once", schedule_value="2026-01-01T09:00:00",
                               next_run=to_iso(datetime.now(timezone.utc) - timedelta(seconds=1))))
    crashed = start_service(settings, fault="container-started")
    assert crashed.wait_group_gone(timeout=120) == -signal.SIGKILL, crashed.stderr()
    started = of_type(log, t.AgentRunStarted)
    assert [s.task_id for s in started] == ["brief"] and our_containers(settings)

    service = start_service(settings)
    me = ChatUser("local:me").attach(service)
    me.send("are you there?")
    # the interrupted task is still due: it runs before the group's messages (or in the 60 s pass)
    ran = eventually(lambda: of_type(log, t.TaskRunFinished), SETTLE_TIMEOUT_S, interval=0.2)
    settle_and_stop(settings, service, [me])

    assert ran, service.stderr()
    verdict = audit(settings, log, {"local:me": me.sent})
    assert verdict.ok, "\n".join(verdict.problems) + "\n" + service.stderr()
    assert [f.status for f in of_type(log, t.TaskRunFinished)] == ["success"]
    task_replies = [e for e in of_type(log, t.OutboundQueued) if e.origin == "task"]
    assert len(task_replies) == 1 and "Summarise my day." in task_replies[0].text
    assert log.query("SELECT status FROM tasks WHERE id = 'brief'")[0][0] == "completed"
    assert [f.status for f in of_type(log, t.AgentRunFinished) if f.run_id == started[0].run_id] == ["interrupted"]
