"""The worker's watch over its ready agents: retired when what they were started with changed.

A ready agent (rules/ready.py) may wait half an hour before anyone writes.
Whatever it was started with must still hold when the message comes, or the
message would be answered by a stale agent: its session (cleared since),
its group's container settings (mounts, egress, timeout changed, or the
group removed), the agent image (rebuilt under the same tag) and the
model credential its gateway adds (a `claude` login refreshed or changed).
When one of them changed, the agent is asked to finish and, once it ended,
a fresh one is asked for in its place. The watch also measures what the
ready agents' containers hold and retires the oldest while they hold more
than `READY_AGENTS_MEMORY_MB`. A ready agent handed a message is no longer
watched: it is a run like any other.

The worker's monitor thread calls `check` every quarter second; the log is
read each time (two indexed reads per ready agent), Docker and the
credential files only every `SLOW_CHECK_S`.
"""

from __future__ import annotations

import time

import msgspec
from docker.errors import DockerException
from loguru import logger
from requests.exceptions import RequestException

from base.config import Settings
from events import EventLog, types as t
from events.queries import group_by_folder, piped_since
from jobs.containers import ContainerRunner
from jobs.credentials import upstream_auth
from jobs.run_state import RUNS, Idle, WorkerRuns
from rules.ipc_folder import request_close

SLOW_CHECK_S = 5.0
MB = 1024 * 1024


class ReadyWatch:
    """Retires this worker's ready agents whose start no longer holds, and keeps them in their memory budget."""

    def __init__(self, settings: Settings, log: EventLog, runner: ContainerRunner, runs: WorkerRuns = RUNS):
        self.settings, self.log, self.runner, self.runs = settings, log, runner, runs
        self._next_slow = 0.0

    def check(self) -> list[tuple[str, str]]:
        """One pass; returns (folder, reason) of each ready agent retired."""
        ready = self.runs.ready()
        if not ready:
            return []
        slow = time.monotonic() >= self._next_slow
        if slow:
            self._next_slow = time.monotonic() + SLOW_CHECK_S
        retired = []
        for run_id, idle in ready.items():
            if piped_since(self.log, run_id, idle.folder, idle.after_seq):
                self.runs.mark_busy(run_id)  # handed a message: a message run now
                continue
            reason = self._changed(idle) or (self._changed_outside(run_id, idle.container) if slow else None)
            if reason is not None and self._retire(run_id, idle, reason, replace=True):
                retired.append((idle.folder, reason))
        if slow:
            retired += self._keep_to_budget()
        return retired

    def _changed(self, idle: Idle) -> str | None:
        """What the log says changed since the agent started."""
        if self.log.read_since(idle.after_seq, types=[t.SessionCleared], streams=[idle.folder], limit=1):
            return "its session was cleared"
        group = group_by_folder(self.log, idle.folder)
        if group is None:
            return "its group was removed"
        for record in self.log.read_since(idle.after_seq, types=[t.GroupUpdated], streams=[group.jid], limit=None):
            if record.event.container_config is not msgspec.UNSET:  # type: ignore[attr-defined]
                return "its group's container settings changed"
        return None

    def _changed_outside(self, run_id: str, container_name: str) -> str | None:
        """What changed outside the log: the image behind the tag, the credential."""
        try:
            opened_with = self.runner.gateway.auth_of(run_id)
        except KeyError:
            return None  # its gateway is not open yet, or closed already: nothing to compare
        if opened_with != upstream_auth(self.settings):
            return "the model credential changed"
        try:
            engine = self.runner.docker()
            container = engine.containers.get(container_name)
            current = engine.images.get(self.settings.container_image).id
        except (DockerException, RequestException, LookupError):
            return None  # Docker cannot say now; the next pass asks again
        started_from = container.attrs.get("Image") or ""
        # Podman before 4.3 answers the image's name here, not its id: nothing to compare then
        if started_from.startswith("sha256:") and started_from != current:
            return "the agent image was rebuilt"
        return None

    def _keep_to_budget(self) -> list[tuple[str, str]]:
        """Measure each waiting ready agent; retire the oldest while together they hold too much."""
        for run_id, idle in self.runs.ready().items():
            megabytes = self._memory_mb(idle.container)
            if megabytes is not None:
                self.runs.set_memory(run_id, megabytes)
        retired = []
        budget = self.settings.ready_agents_memory_mb
        for run_id, idle in self.runs.ready().items():  # oldest first
            if self.runs.ready_memory_mb() <= budget:
                break
            reason = f"the ready agents hold more than READY_AGENTS_MEMORY_MB={budget}"
            if self._retire(run_id, idle, reason, replace=False):
                retired.append((idle.folder, reason))
        return retired

    def _memory_mb(self, container_name: str) -> float | None:
        try:
            return container_memory_mb(self.runner.docker(), container_name)
        except LookupError:  # no Docker client could be made now
            return None

    def _retire(self, run_id: str, idle: Idle, reason: str, *, replace: bool) -> bool:
        if self.runs.retire(run_id, replace=replace) is None:
            return False  # preempted or handed work meanwhile
        logger.info("{}: the ready agent retires: {}", idle.folder, reason)
        request_close(self.settings, idle.folder)
        return True


def container_memory_mb(engine, name: str) -> float | None:
    """What a container's cgroup holds, less the page cache it can drop (as `docker stats` shows it)."""
    try:
        stats = engine.api.stats(name, stream=False, one_shot=True)
    except (DockerException, RequestException):
        return None
    memory = stats.get("memory_stats") or {}
    usage = memory.get("usage")
    if usage is None:
        return None
    inactive = (memory.get("stats") or {}).get("inactive_file", 0)
    return max(usage - inactive, 0) / MB
