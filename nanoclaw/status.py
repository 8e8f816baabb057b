"""What the install is doing right now, gathered for `nanoclaw status`.

Read-only and safe while the service runs or is down, and while Docker is
down: the service's own heartbeat file says whether it lives, the event
log and its projections say what happened, Docker says which containers
exist, huey's file says how much work waits. Nothing here changes anything.
"""

from __future__ import annotations

import os
import sqlite3
import time
from pathlib import Path

import msgspec
from docker.errors import DockerException
from huey.storage import SqliteStorage
from requests.exceptions import RequestException

from base.config import QUEUE_NAME, Settings
from base.timefmt import iso_now, parse_iso
from events import EventLog, types as t
from events.queries import list_groups, running_runs, upcoming_tasks, waits_ready
from jobs.credentials import upstream_auth, upstream_url
from jobs.gateway import runs_dir
from jobs.runtime import LABEL_GROUP, LABEL_RUN, RuntimeUnavailable, client, engine_name, install_label
from router.heartbeat import HEARTBEAT_INTERVAL_S, read_beat, status_path
from rules.egress import DEFAULT_EGRESS, policy_of
from rules.prices import PriceTable
from rules.usage import Spend, spend

STALE_BEAT_S = max(30.0, 10 * HEARTBEAT_INTERVAL_S)
DOCKER_TIMEOUT_S = 5
ERROR_TYPES = (t.AgentOutput, t.AgentRunFinished, t.OutboundFailed, t.IpcRejected, t.HostPathRefused,
               t.BudgetReached)
ERROR_PAGE = 200
ERROR_PAGES = 10
SHOW_ERRORS = 5
SHOW_TASKS = 5


class ServiceInfo(msgspec.Struct, kw_only=True):
    state: str                     # up, starting, stopping, unresponsive, down
    detail: str
    pid: int | None = None
    started_at: str | None = None
    updated_at: str | None = None
    worker_pid: int | None = None
    channels: list[str] = []
    channel_problems: dict[str, str] = {}


class DockerInfo(msgspec.Struct, kw_only=True):
    reachable: bool
    detail: str


class GroupInfo(msgspec.Struct, kw_only=True):
    folder: str
    name: str
    jid: str
    is_main: bool
    last_activity_at: str | None
    last_activity: str | None      # the type of the newest event about the group
    last_activity_seq: int | None
    egress: str = DEFAULT_EGRESS   # the policy the gateway's proxy applies to its agents


class ContainmentInfo(msgspec.Struct, kw_only=True):
    network: str                   # `none` unless the owner opted out (CONTAINER_NETWORK)
    model_api: str                 # where the gateway sends model calls
    credential: str | None         # which setting the gateway's key comes from (never its value)
    open_run_sockets: int          # runs whose gateway sockets exist now
    chat_socket: str               # the local chat's socket, outside every mount


class ContainerInfo(msgspec.Struct, kw_only=True):
    name: str
    folder: str
    run_id: str | None
    state: str                     # busy, idle, ready, starting, orphan, exited
    started_at: str | None
    age_s: float | None
    idle_since: str | None = None
    docker_state: str | None = None  # None: Docker was not asked (down)


class QueueInfo(msgspec.Struct, kw_only=True):
    pending: int
    scheduled: int


class TaskInfo(msgspec.Struct, kw_only=True):
    id: str
    group_folder: str
    schedule: str
    next_run: str
    prompt: str


class ErrorInfo(msgspec.Struct, kw_only=True):
    seq: int
    at: str
    type: str
    where: str
    message: str


class Status(msgspec.Struct, kw_only=True):
    root: str
    generated_at: str
    service: ServiceInfo
    docker: DockerInfo
    queue: QueueInfo
    groups: list[GroupInfo]
    containers: list[ContainerInfo]
    next_tasks: list[TaskInfo]
    errors: list[ErrorInfo]
    containment: ContainmentInfo | None = None
    usage: Spend | None = None
    channel_notes: dict[str, str] = {}  # a channel's own state when it needs saying (WhatsApp's linked device)


# --- the service ---------------------------------------------------------------

def _pid_alive(pid: int) -> bool:
    """Alive and a nanoclaw process (a reused pid of another program does not count)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return True  # no /proc to ask: trust the signal
    return b"nanoclaw" in cmdline


def service_info(settings: Settings, now: float | None = None) -> ServiceInfo:
    """Up, down or stuck, from `data/service.json` and the pid it names."""
    try:
        beat = read_beat(status_path(settings))
    except ValueError as exc:
        return ServiceInfo(state="down", detail=str(exc))
    if beat is None:
        return ServiceInfo(state="down", detail="not running (no status file; it stopped cleanly or never ran)")
    info = ServiceInfo(state="down", detail="", pid=beat.pid, started_at=beat.started_at,
                       updated_at=beat.updated_at, worker_pid=beat.worker_pid, channels=beat.channels,
                       channel_problems=beat.channel_problems)
    if not _pid_alive(beat.pid):
        info.detail = f"not running: pid {beat.pid} is gone (last seen {beat.updated_at}; it did not stop cleanly)"
        info.worker_pid, info.channels, info.channel_problems = None, [], {}
        return info
    silent = (now or time.time()) - parse_iso(beat.updated_at).timestamp()
    if silent > STALE_BEAT_S:
        info.state, info.detail = "unresponsive", f"pid {beat.pid} lives but wrote no heartbeat for {silent:.0f} s"
    else:
        info.state = {"live": "up"}.get(beat.state, beat.state)
        info.detail = f"pid {beat.pid}" + ("" if beat.state == "live" else f" ({beat.state})")
    return info


# --- the log -------------------------------------------------------------------

def groups_info(log: EventLog) -> list[GroupInfo]:
    """Every registered group with its newest event, most recently active first."""
    groups = []
    for group in list_groups(log):
        newest = [r for stream in (group.jid, group.folder)
                  for r in log.read_since(0, streams=[stream], limit=1, newest=True)]
        last = max(newest, key=lambda r: r.seq, default=None)
        groups.append(GroupInfo(folder=group.folder, name=group.name, jid=group.jid, is_main=group.is_main,
                                last_activity_at=last.at if last else None, last_activity=last.type if last else None,
                                last_activity_seq=last.seq if last else None,
                                egress=policy_of(group.container_config)))
    groups.sort(key=lambda g: (-(g.last_activity_seq or 0), g.folder))
    return groups


def _spend(log: EventLog, settings: Settings) -> Spend:
    found = spend(log, PriceTable.load_or_defaults(settings.config_dir))
    found.daily_budget_usd, found.monthly_budget_usd = settings.daily_budget_usd, settings.monthly_budget_usd
    return found


def containment_info(settings: Settings) -> ContainmentInfo:
    """How agents are boxed in: their network, the gateway's upstream and credential, live run sockets."""
    base = runs_dir(settings)
    sockets = sum(1 for entry in base.iterdir() if entry.is_dir()) if base.is_dir() else 0
    auth = upstream_auth(settings)
    return ContainmentInfo(network=settings.container_network, model_api=upstream_url(settings),
                           credential=auth.key if auth else None, open_run_sockets=sockets,
                           chat_socket=str(settings.local_chat_socket))


def run_state(log: EventLog, run: sqlite3.Row) -> tuple[str, str | None]:
    """('busy', 'idle' or 'ready', since when).

    Ready: a ready agent handed no message yet, waiting since its start;
    idle once the agent answered and no newer input was piped.
    """
    if waits_ready(run):
        return "ready", run["started_at"]
    newest = log.read_since(run["started_seq"], types=[t.AgentOutput, t.MessagesPiped],
                            streams=[run["folder"]], limit=1, newest=True)
    if newest and isinstance(newest[0].event, t.AgentOutput) and newest[0].event.run_id == run["run_id"] \
            and newest[0].event.status == "success":
        return "idle", newest[0].at
    return "busy", None


def _error_of(record) -> ErrorInfo | None:
    event = record.event
    if isinstance(event, t.AgentOutput):  # shown while the run still goes on, not only once it ended
        if event.status != "error":
            return None
        message, where = f"agent error (run {event.run_id}): {event.error or 'no detail'}", event.folder
    elif isinstance(event, t.AgentRunFinished):
        if event.status == "ok":
            return None
        kind = f" ({event.error_kind})" if event.error_kind else ""
        message, where = f"{event.status}{kind}: {event.error or 'no detail'}", event.folder
    elif isinstance(event, t.OutboundFailed):
        message, where = f"reply not delivered after {event.attempts} attempt(s): {event.reason}", event.chat_jid
    elif isinstance(event, t.BudgetReached):
        whose = "its own" if event.scope == "group" else "every group's"
        message, where = (f"{whose} {event.period} budget of ${event.limit_usd:.2f} is used up "
                          f"(${event.spent_usd:.2f}); no runs until {event.until}"), event.folder
    elif isinstance(event, t.HostPathRefused):
        message, where = f"refused to {event.operation} {event.path}: {event.reason}", event.folder
    else:
        message, where = f"IPC request refused: {event.reason}", event.folder
    return ErrorInfo(seq=record.seq, at=record.at, type=record.type, where=where, message=message)


def recent_errors(log: EventLog, count: int = SHOW_ERRORS) -> list[ErrorInfo]:
    """The newest failures (runs not ok, undelivered replies, refused IPC, planted paths), newest first."""
    found: list[ErrorInfo] = []
    before = None
    for _ in range(ERROR_PAGES):
        page = log.read_since(0, types=ERROR_TYPES, limit=ERROR_PAGE, newest=True, before_seq=before)
        for record in reversed(page):
            if (error := _error_of(record)) is not None:
                found.append(error)
                if len(found) == count:
                    return found
        if len(page) < ERROR_PAGE:
            break
        before = page[0].seq
    return found


def next_tasks(log: EventLog, count: int = SHOW_TASKS) -> list[TaskInfo]:
    rows = upcoming_tasks(log, count)
    return [TaskInfo(id=r["id"], group_folder=r["group_folder"], schedule=f"{r['schedule_type']} {r['schedule_value']}",
                     next_run=r["next_run"], prompt=r["prompt"]) for r in rows]


# --- queue and containers --------------------------------------------------------

def queue_info(settings: Settings) -> QueueInfo:
    """Jobs waiting in huey's file (none when the file or its tables do not exist yet)."""
    if not settings.queue_path.exists():
        return QueueInfo(pending=0, scheduled=0)
    storage = SqliteStorage(QUEUE_NAME, filename=str(settings.queue_path), create_tables=False)
    try:
        return QueueInfo(pending=storage.queue_size(), scheduled=storage.schedule_size())
    except sqlite3.OperationalError:
        return QueueInfo(pending=0, scheduled=0)
    finally:
        storage.close()


def docker_containers(settings: Settings) -> tuple[DockerInfo, list[dict] | None]:
    """This install's containers as Docker lists them, or None with the reason when Docker is down."""
    try:
        engine = client(settings, timeout=DOCKER_TIMEOUT_S)
        try:
            found = engine.api.containers(all=True, filters={"label": install_label(settings)})
            version = engine.version().get("Version", "unknown")
        finally:
            engine.close()
    except (RuntimeUnavailable, DockerException, RequestException) as exc:
        return DockerInfo(reachable=False, detail=f"not reachable ({exc})"), None
    return DockerInfo(reachable=True, detail=f"{engine_name(settings)} {version}"), found


def containers_info(log: EventLog, listed: list[dict] | None, now: float) -> list[ContainerInfo]:
    """Running runs from the log, matched with Docker's containers by run label."""
    runs = running_runs(log)
    by_run = {(c.get("Labels") or {}).get(LABEL_RUN): c for c in listed or []}
    result = []
    for run in runs:
        listing = by_run.pop(run["run_id"], None)
        state, idle_since = run_state(log, run)
        docker_state = listing.get("State") if listing else None
        if listed is not None and listing is None:
            state = "starting"
        elif docker_state not in (None, "running"):
            state = "exited"
        started = parse_iso(run["started_at"]).timestamp()
        result.append(ContainerInfo(name=run["container"], folder=run["folder"], run_id=run["run_id"], state=state,
                                    started_at=run["started_at"], age_s=round(now - started, 1),
                                    idle_since=idle_since, docker_state=docker_state))
    for listing in by_run.values():
        created, labels = listing.get("Created"), listing.get("Labels") or {}
        result.append(ContainerInfo(
            name=(listing.get("Names") or ["?"])[0].lstrip("/"), folder=labels.get(LABEL_GROUP, "?"),
            run_id=labels.get(LABEL_RUN), state="orphan", started_at=None,
            age_s=round(now - created, 1) if isinstance(created, (int, float)) else None,
            docker_state=listing.get("State")))
    return result


def channel_notes(settings: Settings) -> dict[str, str]:
    """What a channel's own files say about it: WhatsApp's device linked, or logged out and how to link it."""
    from router.channels import whatsapp_link

    found = whatsapp_link.describe(settings)
    if found is None:
        return {}
    level, detail, fix = found
    return {"whatsapp": detail if level == "ok" else f"NOT LINKED: {detail}; {fix}"}


def gather(settings: Settings) -> Status:
    """Everything `nanoclaw status` shows, from files and Docker only."""
    now = time.time()
    docker, listed = docker_containers(settings)
    log = EventLog(settings.db_path, sync=settings.event_log_sync)
    try:
        return Status(root=str(settings.root), generated_at=iso_now(), service=service_info(settings, now),
                      docker=docker, queue=queue_info(settings), groups=groups_info(log),
                      containers=containers_info(log, listed, now), next_tasks=next_tasks(log),
                      errors=recent_errors(log), containment=containment_info(settings),
                      usage=_spend(log, settings), channel_notes=channel_notes(settings))
    finally:
        log.close()
