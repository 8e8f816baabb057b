"""The soak: many messages across many groups while the whole service is killed again and again.

A sender thread plays every group's user (paced, resending what a dying
router never acknowledged, with the same message id); the main thread kills
the service's process group with SIGKILL at random intervals and restarts
it. When every message is sent, the service settles without kills, stops,
and the audit (tests/service_audit.py) compares the log, the projections
(a fresh fold, then a rebuild) and the replies. Used by tests/test_soak.py
(small) and bench/soak.py (5,000 messages across 50 groups).
"""

from __future__ import annotations

import os
import random
import threading
import time
from dataclasses import dataclass, field, fields

from base.config import Settings
from events import EventLog, replay
from router.channels.local_client import ChatClientError
from rules.groups import register_group
from tests.router_process import RouterProcess
from tests.service_audit import Audit, audit, unanswered
from tests.service_harness import ChatUser, start_service
from tests.waiting import eventually


@dataclass
class SoakConfig:
    messages: int = 400
    groups: int = 8
    rate: float = 10.0              # messages per second, all groups together
    kill_min_s: float = 2.0         # a kill every kill_min_s to kill_max_s while messages are sent
    kill_max_s: float = 5.0
    max_containers: int = 3
    idle_timeout_ms: int = 1000
    settle_timeout_s: float = 300.0
    seed: int = 1
    ready_agents: int = 0           # READY_AGENTS: with them on, kills also hit agents waiting for a first message

    @classmethod
    def from_env(cls, **defaults) -> "SoakConfig":
        """Defaults, overridden by SOAK_MESSAGES, SOAK_GROUPS, SOAK_RATE, SOAK_KILL_MIN_S, ... (upper-case names)."""
        config = cls(**defaults)
        for f in fields(cls):
            raw = os.environ.get(f"SOAK_{f.name.upper()}")
            if raw is not None:
                try:
                    setattr(config, f.name, type(getattr(config, f.name))(raw))
                except ValueError as exc:
                    raise ValueError(f"SOAK_{f.name.upper()} must be a number, not {raw!r}") from exc
        if config.groups < 1 or config.messages < 1 or config.rate <= 0 or config.kill_min_s > config.kill_max_s:
            raise ValueError(f"a soak needs groups, messages, a positive rate and kill_min_s <= kill_max_s: {config}")
        return config

    def service_env(self) -> dict[str, str]:
        # a window as large as any backlog: no message falls out of the prompt
        return dict(MAX_CONCURRENT_CONTAINERS=str(self.max_containers), IDLE_TIMEOUT=str(self.idle_timeout_ms),
                    MAX_MESSAGES_PER_PROMPT="1000", READY_AGENTS=str(self.ready_agents))


@dataclass
class SoakReport:
    config: SoakConfig
    sent: int = 0
    kills: int = 0
    restarts: int = 0
    seconds: float = 0.0
    settled: bool = False
    rebuild_equal: bool = False
    audit: Audit = field(default_factory=Audit)

    @property
    def agreement(self) -> bool:
        return self.settled and self.rebuild_equal and self.audit.ok

    def summary(self) -> str:
        a = self.audit
        lines = [f"messages sent:    {self.sent} across {self.config.groups} groups (in the log: {a.messages})",
                 f"replies:          {a.replies} delivered, from {a.runs} agent runs "
                 f"({a.interrupted} interrupted by kills, {a.failed_runs} failed)",
                 f"kills, restarts:  {self.kills}, {self.restarts} (SIGKILL of router and worker together)",
                 f"duration:         {self.seconds:.1f} s",
                 f"agreement:        {'yes' if self.agreement else 'NO'} (every message answered once, every reply "
                 f"sent once, projections == fresh fold == rebuild, no container left)"]
        if not self.settled:
            lines.append("  not every message was answered before the settle timeout")
        if not self.rebuild_equal:
            lines.append("  replay --rebuild changed the projections")
        lines += [f"  {problem}" for problem in a.problems[:20]]
        return "\n".join(lines)


def register_soak_groups(settings: Settings, log: EventLog, count: int) -> list[str]:
    """Group 0 is main; odd groups need the trigger, even ones answer everything. Returns the chats."""
    jids = []
    for g in range(count):
        jid = f"local:soak{g}"
        register_group(log, settings, jid=jid, name=f"Soak {g}", folder=f"soak{g}", is_main=g == 0,
                       requires_trigger=g % 2 == 1)
        jids.append(jid)
    return jids


class _Sender(threading.Thread):
    """Plays every group's user: paced sends, re-attaching to whichever service is up."""

    def __init__(self, users: list[ChatUser], config: SoakConfig, current: "_Current"):
        super().__init__(name="soak-sender", daemon=True)
        self.users, self.config, self.current = users, config, current
        self.rng = random.Random(config.seed)
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            started = time.monotonic()
            for n in range(self.config.messages):
                g = self.rng.randrange(len(self.users))
                user = self.users[g]
                self._ensure_attached(user)
                user.send(f"{'@Andy ' if g % 2 else ''}soak {g}.{n}.", timeout=5)
                time.sleep(max(0.0, started + (n + 1) / self.config.rate - time.monotonic()))
            while any(u.unacked for u in self.users):
                for user in (u for u in self.users if u.unacked):
                    self._ensure_attached(user)
                time.sleep(0.1)
        except BaseException as exc:  # reported by the main thread
            self.error = exc

    def _ensure_attached(self, user: ChatUser) -> None:
        if user.client is not None:
            user.collect()
        if user.client is None:
            try:
                user.attach(self.current.service)
            except (ChatClientError, OSError):
                pass  # the service is down or starting: the message waits in `unacked`


class _Current:
    """The service that is up now (replaced at every restart)."""

    def __init__(self, service: RouterProcess):
        self.service = service


def run_soak(settings: Settings, log: EventLog, config: SoakConfig) -> SoakReport:
    """Run the whole soak in this install (CONTAINER_IMAGE and the rest already in the environment)."""
    report = SoakReport(config)
    users = [ChatUser(jid) for jid in register_soak_groups(settings, log, config.groups)]
    rng = random.Random(config.seed + 1)
    env = config.service_env()
    started = time.monotonic()
    current = _Current(start_service(settings, **env))
    sender = _Sender(users, config, current)
    sender.start()
    while sender.is_alive():
        sender.join(rng.uniform(config.kill_min_s, config.kill_max_s))
        if sender.is_alive():
            current.service.kill_group()
            report.kills += 1
            current.service = start_service(settings, **env)
            report.restarts += 1
    if sender.error:
        raise sender.error
    sent = {u.jid: u.sent for u in users}
    report.sent = sum(len(texts) for texts in sent.values())
    report.settled = eventually(lambda: unanswered(settings, sent) == 0, config.settle_timeout_s, interval=1.0)
    for user in users:
        user.collect(0.1)
        user.detach()
    current.service.stop(timeout=120)
    report.seconds = time.monotonic() - started
    report.audit = audit(settings, log, sent)
    report.audit.problems += [f"{u.jid}: shown replies {u.pushed_twice()} twice" for u in users if u.pushed_twice()]
    before = replay.snapshot(log)
    replay.rebuild(log)
    report.rebuild_equal = replay.snapshot(log) == before
    return report
