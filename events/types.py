"""Every event the log can hold, as msgspec Structs in one tagged union.

The class name is the event's `type` (the tag in its JSON and the `type`
column of the log). Each class names the field that gives its `stream`: the
chat JID or group folder the event concerns. Fields are only ever added with
defaults, so rows written by older code still decode; unknown fields are
tolerated for the same reason (untrusted input is validated elsewhere,
strictly, before it becomes an event).
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

import msgspec
from msgspec import UNSET, UnsetType

__all__ = ["UNSET", "UnsetType"]


class Event(msgspec.Struct, tag_field="type", tag=True, frozen=True, kw_only=True):
    """Base of every event; `STREAM` names the field that is its stream."""

    STREAM: ClassVar[str] = ""

    @property
    def stream(self) -> str:
        return getattr(self, self.STREAM)


class MountRequest(msgspec.Struct, frozen=True, kw_only=True):
    """An extra host folder a group asks for (validated by rules/mounts.py)."""

    host_path: str
    container_path: str | None = None
    readonly: bool = True


class ContainerConfig(msgspec.Struct, frozen=True, kw_only=True):
    """Per-group run settings: extra mounts, a hard timeout, the egress policy, spending caps.

    `egress` is the policy's text (`model-only`, `allow:<hosts>`, `open`);
    None means the default of rules/egress.py. The budgets are USD per UTC
    day and month for this group's model calls; None means no cap.
    `keep_browser_session` keeps the browser's cookies and local storage in
    the group's folder from one container to the next.
    """

    additional_mounts: list[MountRequest] = []
    timeout_ms: int | None = None
    egress: str | None = None
    daily_budget_usd: float | None = None
    monthly_budget_usd: float | None = None
    keep_browser_session: bool = False


# --- chats and messages -----------------------------------------------------


class MessageReceived(Event):
    """A chat message arrived on a channel (key: the channel's message id)."""

    STREAM: ClassVar[str] = "chat_jid"
    chat_jid: str
    message_id: str
    sender: str
    sender_name: str
    content: str
    timestamp: str
    channel: str | None = None
    is_from_me: bool = False
    is_bot_message: bool = False
    reply_to_message_id: str | None = None
    reply_to_message_content: str | None = None
    reply_to_sender_name: str | None = None
    thread_id: str | None = None


class ChatSeen(Event):
    """A channel saw a chat (registered or not) and reports its metadata."""

    STREAM: ClassVar[str] = "chat_jid"
    chat_jid: str
    timestamp: str
    name: str | None = None
    channel: str | None = None
    is_group: bool | None = None


# --- groups ----------------------------------------------------------------


class GroupRegistered(Event):
    """A chat became a group the assistant serves, with its own folder."""

    STREAM: ClassVar[str] = "jid"
    jid: str
    name: str
    folder: str
    trigger: str
    requires_trigger: bool = True
    is_main: bool = False
    container_config: ContainerConfig | None = None
    registered_by: str = "cli"


class GroupUpdated(Event):
    """Some settings of a registered group changed; UNSET fields did not."""

    STREAM: ClassVar[str] = "jid"
    jid: str
    name: str | UnsetType = UNSET
    trigger: str | UnsetType = UNSET
    requires_trigger: bool | UnsetType = UNSET
    container_config: ContainerConfig | None | UnsetType = UNSET
    updated_by: str = "cli"


class GroupRemoved(Event):
    """A group is no longer served; its folder and history stay on disk."""

    STREAM: ClassVar[str] = "jid"
    jid: str
    folder: str
    removed_by: str = "cli"


# --- agent runs ------------------------------------------------------------


RunReason = Literal["messages", "retry", "recovery", "drain", "task", "preempted", "ready"]


class AgentRunRequested(Event):
    """The router (or recovery, or the scheduler) wants an agent run for a group."""

    STREAM: ClassVar[str] = "folder"
    folder: str
    chat_jid: str
    reason: RunReason = "messages"
    task_id: str | None = None
    due_at: str | None = None
    attempt: int = 0
    not_before: str | None = None


class AgentRunStarted(Event):
    """A worker took the group's lease and started its container.

    The group's agent cursor moves to `through_seq`: the messages up to it
    are handed to this run. `from_seq` is where the cursor was, so a failed
    run with no output can put it back. A ready agent (`ready`) is handed no
    messages (`from_seq == through_seq`): it starts ahead of need and waits
    for the first one to be piped in.
    """

    STREAM: ClassVar[str] = "folder"
    run_id: str
    folder: str
    chat_jid: str
    container: str
    from_seq: int = 0
    through_seq: int = 0
    message_count: int = 0
    task_id: str | None = None
    session_id: str | None = None
    attempt: int = 0
    request_seq: int | None = None
    worker: str | None = None  # the worker process running it (jobs/liveness.py)
    ready: bool = False


class MessagesPiped(Event):
    """Follow-up messages were written into a running container's input."""

    STREAM: ClassVar[str] = "folder"
    run_id: str
    folder: str
    chat_jid: str
    through_seq: int
    message_count: int
    file: str


class AgentOutput(Event):
    """One result the agent printed between the output markers."""

    STREAM: ClassVar[str] = "folder"
    run_id: str
    folder: str
    index: int
    status: Literal["success", "error"]
    result: str | None = None
    new_session_id: str | None = None
    error: str | None = None
    inputs: list[str] = []  # piped input files the agent read in the turn this output ends


class AgentRunFinished(Event):
    """A run's container is gone; how it ended and whether the cursor rolls back."""

    STREAM: ClassVar[str] = "folder"
    run_id: str
    folder: str
    chat_jid: str
    status: Literal["ok", "error", "timeout", "interrupted"]
    error: str | None = None
    exit_code: int | None = None
    duration_ms: int = 0
    had_output: bool = False
    cursor_rollback_to: int | None = None
    error_kind: str | None = None   # rules/failures.py's kind: credentials, rate_limit, api_error, ...
    log_file: str | None = None     # the run's log, under logs/ (`runs/<folder>/container-....log`)


# --- outbound --------------------------------------------------------------


class OutboundFile(msgspec.Struct, frozen=True, kw_only=True):
    """A file a reply carries: the host's own copy, under the data folder, taken when it was asked for.

    `path` is relative to the data folder (`outbox/<outbound id>/<name>`);
    `media_type` is what the file's content is (not its name's claim).
    """

    name: str
    path: str
    size: int
    media_type: str


class OutboundQueued(Event):
    """A reply is due to a chat; delivery sends it (key: the outbound id).

    With `file`, the reply is that file and `text` its caption (may be empty).
    `thread_id` is the thread (a Telegram forum topic) it goes to: that of the
    chat's newest message when it was queued; None for the chat itself.
    """

    STREAM: ClassVar[str] = "chat_jid"
    outbound_id: str
    chat_jid: str
    text: str
    origin: Literal["agent", "ipc", "task", "system", "notice"] = "agent"
    run_id: str | None = None
    sender: str | None = None
    file: OutboundFile | None = None
    thread_id: str | None = None


class OutboundPartSent(Event):
    """The owning channel accepted part `part` (from 1) of a reply split into `parts` (key: `part:<id>:<n>`).

    Recorded after each part of a reply its channel splits, so delivery after
    a restart resumes at the first part not yet accepted.
    """

    STREAM: ClassVar[str] = "chat_jid"
    outbound_id: str
    chat_jid: str
    part: int
    parts: int


class OutboundSent(Event):
    """The owning channel accepted a queued reply."""

    STREAM: ClassVar[str] = "chat_jid"
    outbound_id: str
    chat_jid: str
    attempts: int = 1
    channel: str | None = None


class OutboundFailed(Event):
    """Delivery gave up on a queued reply after its retries."""

    STREAM: ClassVar[str] = "chat_jid"
    outbound_id: str
    chat_jid: str
    attempts: int
    reason: str


# --- IPC -------------------------------------------------------------------


class IpcReceived(Event):
    """A complete JSON file appeared in a group's IPC folder (key: its path).

    `folder` comes from the directory the file was in: the only identity
    the host trusts. `payload` is the parsed JSON, not yet authorized.
    """

    STREAM: ClassVar[str] = "folder"
    folder: str
    kind: Literal["messages", "tasks"]
    file: str
    payload: dict[str, Any]
    size: int = 0


class IpcRejected(Event):
    """An IPC file or request was refused, with the reason."""

    STREAM: ClassVar[str] = "folder"
    folder: str
    file: str
    reason: str
    kind: str | None = None
    request_type: str | None = None
    ipc_seq: int | None = None
    quarantined_to: str | None = None


# --- scheduled tasks -------------------------------------------------------


ScheduleType = Literal["cron", "interval", "once"]
ContextMode = Literal["group", "isolated"]


class TaskScheduled(Event):
    """A scheduled task was created, with its first due time."""

    STREAM: ClassVar[str] = "group_folder"
    task_id: str
    group_folder: str
    chat_jid: str
    prompt: str
    schedule_type: ScheduleType
    schedule_value: str
    context_mode: ContextMode = "isolated"
    script: str | None = None
    timezone: str | None = None
    next_run: str | None = None
    created_by: str = "cli"


class TaskUpdated(Event):
    """Some fields of a task changed; UNSET fields did not."""

    STREAM: ClassVar[str] = "group_folder"
    task_id: str
    group_folder: str
    prompt: str | UnsetType = UNSET
    script: str | None | UnsetType = UNSET
    schedule_type: ScheduleType | UnsetType = UNSET
    schedule_value: str | UnsetType = UNSET
    timezone: str | None | UnsetType = UNSET
    next_run: str | None | UnsetType = UNSET
    updated_by: str = "cli"


class TaskPaused(Event):
    """A task stops being run until it is resumed."""

    STREAM: ClassVar[str] = "group_folder"
    task_id: str
    group_folder: str
    by: str = "cli"


class TaskResumed(Event):
    """A paused task is active again (its next run is not recomputed)."""

    STREAM: ClassVar[str] = "group_folder"
    task_id: str
    group_folder: str
    by: str = "cli"


class TaskCancelled(Event):
    """A task is gone for good; its run history stays in the log."""

    STREAM: ClassVar[str] = "group_folder"
    task_id: str
    group_folder: str
    by: str = "cli"


class TaskRunFinished(Event):
    """One run of a task ended; `next_run` is when it is due again (None: never)."""

    STREAM: ClassVar[str] = "group_folder"
    task_id: str
    group_folder: str
    status: Literal["success", "error"]
    duration_ms: int = 0
    run_id: str | None = None
    result: str | None = None
    error: str | None = None
    next_run: str | None = None


class TaskRunRequested(Event):
    """A task should run now (or at `not_before`): a run of its group ended while it was due.

    The dispatcher turns it into the task's job; the job itself checks that
    the task is still active and due, so a stale request does nothing.
    """

    STREAM: ClassVar[str] = "group_folder"
    task_id: str
    group_folder: str
    reason: Literal["due"] = "due"
    not_before: str | None = None


# --- sessions --------------------------------------------------------------


class SessionUpdated(Event):
    """The agent reported a (new) conversation session id for a group."""

    STREAM: ClassVar[str] = "folder"
    folder: str
    session_id: str
    run_id: str | None = None


class SessionCleared(Event):
    """A group's session was dropped (stale, or cleared by a person)."""

    STREAM: ClassVar[str] = "folder"
    folder: str
    reason: str


# --- containment -----------------------------------------------------------


class ModelCalled(Event):
    """One model API call an agent made through the credential gateway.

    Tokens are what the API reported (None when it reported none, e.g. a
    refused call); `status` is the HTTP status the agent received.
    """

    STREAM: ClassVar[str] = "folder"
    run_id: str
    folder: str
    method: str
    path: str
    status: int
    duration_ms: float
    first_byte_ms: float | None = None
    model: str | None = None
    streamed: bool = False
    input_tokens: int | None = None
    output_tokens: int | None = None
    cache_creation_input_tokens: int | None = None
    cache_read_input_tokens: int | None = None
    error: str | None = None


class EgressChecked(Event):
    """An agent asked the gateway's proxy for a destination (once per run and destination)."""

    STREAM: ClassVar[str] = "folder"
    run_id: str
    folder: str
    host: str
    port: int
    allowed: bool
    policy: str
    address: str | None = None
    reason: str | None = None
class BudgetReached(Event):
    """A spending cap stopped a group's runs until `until` (key: the cap and its period, so once each)."""

    STREAM: ClassVar[str] = "folder"
    folder: str
    scope: Literal["group", "all"]      # this group's own cap, or the one for every group together
    period: Literal["day", "month"]
    limit_usd: float
    spent_usd: float
    until: str                          # when the period ends (UTC)


# --- the host's own safety ---------------------------------------------------


class HostPathRefused(Event):
    """The host would not act on a path an agent could have planted (a link, a hard link, a folder).

    `operation` is what the host was doing, `reason` what it found; it carried
    on without that step.
    """

    STREAM: ClassVar[str] = "folder"
    folder: str
    path: str
    operation: str
    reason: str


AnyEvent = (
    MessageReceived
    | ChatSeen
    | GroupRegistered
    | GroupUpdated
    | GroupRemoved
    | AgentRunRequested
    | AgentRunStarted
    | MessagesPiped
    | AgentOutput
    | AgentRunFinished
    | OutboundQueued
    | OutboundPartSent
    | OutboundSent
    | OutboundFailed
    | IpcReceived
    | IpcRejected
    | TaskScheduled
    | TaskUpdated
    | TaskPaused
    | TaskResumed
    | TaskCancelled
    | TaskRunFinished
    | TaskRunRequested
    | SessionUpdated
    | SessionCleared
    | ModelCalled
    | EgressChecked
    | BudgetReached
    | HostPathRefused
)

EVENT_TYPES: dict[str, type[Event]] = {cls.__name__: cls for cls in AnyEvent.__args__}

_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(AnyEvent)


def encode(event: Event) -> str:
    """The event as compact JSON text, its `type` tag included."""
    return _encoder.encode(event).decode()


def decode(data: str | bytes) -> Event:
    """Parse and validate one event's JSON; raises msgspec.DecodeError."""
    return _decoder.decode(data)
