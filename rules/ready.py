"""Ready agents: which groups get an agent started ahead of their next message, and when one may start.

A person's first message to a group with no container waits for a
container, the runner, the SDK and the CLI to start (about 2 s with the
real CLI); a follow-up into a running one does not. A ready agent is a
message run started with no messages (`AgentRunStarted.ready`, its window
empty): its container, runner and CLI come up, its session resumed, and it
waits. The trigger stage then pipes the group's next message into it as
into any running agent, and the run goes on as a message run.

One is asked for (`AgentRunRequested(reason="ready")`) at service start for
the main group and after a group's message run ends well with nothing left
waiting. `READY_AGENTS` bounds how many run at once (0: none), the most
recently asked for kept; `READY_AGENT_TTL` is how long one waits for its
first message before it retires, and how long a request for one stays
good; `READY_AGENTS_MEMORY_MB` bounds the memory they hold together
(measured by the worker, jobs/ready_agents.py). They hold slots of
`MAX_CONCURRENT_CONTAINERS` and give them up first to real work.
"""

from __future__ import annotations

from datetime import datetime, timezone

from base.config import Settings
from base.timefmt import parse_iso
from events import Record, Transaction, types as t
from events.queries import Group, group_busy, main_group, outstanding_request, ready_runs, running_runs
from rules.budgets import reached_cap


def is_ready_request(request: Record | None) -> bool:
    return request is not None and request.event.reason == "ready"  # type: ignore[attr-defined]


def expired(settings: Settings, request: Record, now: datetime | None = None) -> bool:
    """A request for a ready agent older than READY_AGENT_TTL: no longer worth a container."""
    now = now or datetime.now(timezone.utc)
    return (now - parse_iso(request.at)).total_seconds() > settings.ready_agent_ttl_s


def slot_free(tx: Transaction, settings: Settings) -> bool:
    """Fewer runs than MAX_CONCURRENT_CONTAINERS: a ready agent may take a slot only then."""
    return len(running_runs(tx)) < settings.max_concurrent_containers


def request_ready(tx: Transaction, settings: Settings, group: Group) -> bool:
    """Ask for a ready agent for the group, unless they are off or the group has a run or a live request."""
    if settings.ready_agents <= 0 or group_busy(tx, group.folder):
        return False
    request = outstanding_request(tx, group.folder)
    if request is not None and not (is_ready_request(request) and expired(settings, request)):
        return False
    tx.append(t.AgentRunRequested(folder=group.folder, chat_jid=group.jid, reason="ready"))
    return True


def request_ready_at_start(tx: Transaction, settings: Settings) -> bool:
    """At service start: a ready agent for the main group, the one its owner talks to."""
    group = main_group(tx)
    return group is not None and request_ready(tx, settings, group)


def ready_refusal(tx: Transaction, settings: Settings, group: Group, request: Record,
                  now: datetime | None = None) -> str | None:
    """Why a ready agent asked for by `request` does not start now, or None when it may.

    Never a notice: nobody is waiting for it. A cap reached, no free slot
    or an expired request simply means the next message starts cold.
    """
    if settings.ready_agents <= 0:
        return "ready agents are off (READY_AGENTS=0)"
    now = now or datetime.now(timezone.utc)
    if expired(settings, request, now):
        return "the request for a ready agent expired"
    if not slot_free(tx, settings):
        return "no free slot for a ready agent"
    if reached_cap(tx, settings, group, now) is not None:
        return "budget reached: no ready agent"
    return None


def ready_to_retire(tx: Transaction, settings: Settings) -> list[str]:
    """Folders of the oldest ready agents that must go so one more fits under READY_AGENTS."""
    ready = ready_runs(tx)
    excess = len(ready) + 1 - settings.ready_agents
    return [row["folder"] for row in ready[:max(excess, 0)]]
