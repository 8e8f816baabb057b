"""The actions stage: authorizes each IPC request and applies it as events.

Who asks is the folder the file appeared in, never a field inside it. Main may
act for any group, others only for themselves; every refusal
is an `IpcRejected`, committed with the checkpoint like every effect.
"""

from __future__ import annotations

import random
import re
import sqlite3
import string
import time
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Annotated, Any, Callable, Iterator, get_args

import msgspec
from loguru import logger

from base.config import MAX_TIMEOUT_MS, MIN_TIMEOUT_MS, Settings
from base.faults import fault_point
from events import Record, Transaction, types as t
from events.consumer import Stage
from events.queries import group_by_jid, main_group, queued_file_bytes, reply_thread, task_by_id
from rules.groups import GroupError, group_dir, register_group
from rules.outbox import FileRefused, take_file
from rules.schedule import ScheduleError, first_run

TASK_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$")
_BASE36 = string.digits + string.ascii_lowercase
_DONE = {t.TaskPaused: "paused", t.TaskResumed: "resumed", t.TaskCancelled: "cancelled"}

Text = Annotated[str, msgspec.Meta(min_length=1)]
MAX_CAPTION_CHARS = 1024  # Telegram's caption limit; a longer text is a message of its own


# --- requests as containers write them (extra fields such as isMain are ignored) ---


class MessageRequest(msgspec.Struct, rename={"chat_jid": "chatJid"}):
    chat_jid: Text
    text: Text
    sender: str | None = None


class FileRequest(msgspec.Struct, rename={"chat_jid": "chatJid"}):
    chat_jid: Text
    path: Text
    caption: str = ""


class ScheduleRequest(msgspec.Struct, rename={"target_jid": "targetJid", "task_id": "taskId"}):
    prompt: Text
    schedule_type: Text
    schedule_value: Text
    target_jid: Text
    task_id: str | None = None
    context_mode: str | None = None
    script: str | None = None
    timezone: str | None = None


class TaskRequest(msgspec.Struct, rename={"task_id": "taskId"}):
    task_id: Text


class UpdateRequest(msgspec.Struct, rename={"task_id": "taskId"}):
    task_id: Text
    prompt: Text | t.UnsetType = t.UNSET
    script: str | None | t.UnsetType = t.UNSET
    schedule_type: Text | t.UnsetType = t.UNSET
    schedule_value: Text | t.UnsetType = t.UNSET
    timezone: str | None | t.UnsetType = t.UNSET


class MountSpec(msgspec.Struct, rename="camel"):
    host_path: Text
    container_path: str | None = None
    readonly: bool = True


class ContainerSpec(msgspec.Struct, rename="camel"):
    additional_mounts: list[MountSpec] = []
    timeout: int | None = None


class RegisterRequest(msgspec.Struct, rename={"requires_trigger": "requiresTrigger",
                                              "container_config": "containerConfig"}):
    jid: Text
    name: Text
    folder: Text
    trigger: Text
    requires_trigger: bool = True  # absent means "needs the trigger", as at the CLI
    container_config: ContainerSpec | None = None


class Refusal(Exception):
    """A request that is not carried out; the message is the reason recorded."""


@dataclass(frozen=True)
class Request:
    """One IPC request with the identity the host trusts."""

    tx: Transaction
    seq: int
    folder: str
    kind: str
    file: str
    type: str
    payload: dict[str, Any]
    is_main: bool

    @property
    def by(self) -> str:
        return f"ipc:{self.folder}"


def convert(request: Request, shape: type) -> Any:
    """The payload as `shape`, types checked strictly; Refusal names what is wrong."""
    try:
        return msgspec.convert(request.payload, shape)
    except msgspec.ValidationError as exc:
        raise Refusal(f"malformed {request.type} request: {exc}") from exc


def new_task_id() -> str:
    """`task-<epoch ms>-<6 base36>`, v1's shape."""
    return f"task-{int(time.time() * 1000)}-{''.join(random.choices(_BASE36, k=6))}"


class _InTransaction:
    """Lets rules.groups.register_group run inside the stage's own transaction."""

    def __init__(self, tx: Transaction):
        self.tx = tx

    @contextmanager
    def transaction(self) -> Iterator[Transaction]:
        yield self.tx

    def query(self, sql: str, params: Any = ()) -> list:
        return self.tx.query(sql, params)


class ActionsStage(Stage):
    """Turns each `IpcReceived` into its effect, or an `IpcRejected` with the reason."""

    name = "actions"
    types = (t.IpcReceived,)

    def __init__(
        self,
        settings: Settings,
        on_refresh_groups: Callable[[str], None] | None = None,
        on_tasks_changed: Callable[[Transaction], None] | None = None,
    ):
        self.settings = settings
        self.on_refresh_groups = on_refresh_groups
        self.on_tasks_changed = on_tasks_changed
        self._handlers: dict[tuple[str, str], Callable[[Request], bool]] = {
            ("messages", "message"): self._message,
            ("messages", "file"): self._file,
            ("tasks", "schedule_task"): self._schedule_task,
            ("tasks", "pause_task"): lambda r: self._task_state(r, t.TaskPaused),
            ("tasks", "resume_task"): lambda r: self._task_state(r, t.TaskResumed),
            ("tasks", "cancel_task"): lambda r: self._task_state(r, t.TaskCancelled),
            ("tasks", "update_task"): self._update_task,
            ("tasks", "refresh_groups"): self._refresh_groups,
            ("tasks", "register_group"): self._register_group,
        }

    def handle_batch(self, tx: Transaction, records: list[Record]) -> None:
        """Apply each request; tell `on_tasks_changed` once if any task changed."""
        changed = False
        for record in records:
            changed = self.apply(tx, record) or changed
            fault_point(f"stage-{self.name}-handled")
        if changed and self.on_tasks_changed is not None:
            self._notify("on_tasks_changed", self.on_tasks_changed, tx)

    def handle(self, tx: Transaction, record: Record) -> None:
        self.handle_batch(tx, [record])

    def apply(self, tx: Transaction, record: Record) -> bool:
        """Carry out one request; True when it changed a task."""
        event: t.IpcReceived = record.event  # type: ignore[assignment]
        kind_of = event.payload.get("type")
        request = Request(tx=tx, seq=record.seq, folder=event.folder, kind=event.kind, file=event.file,
                          type=kind_of if isinstance(kind_of, str) else "", payload=event.payload,
                          is_main=self._is_main(tx, event.folder))
        try:
            handler = self._handlers.get((event.kind, request.type))
            if handler is None:
                raise Refusal(self._unknown(request, kind_of))
            return handler(request)
        except Refusal as refusal:
            self._reject(request, str(refusal))
            return False
        except sqlite3.Error:
            raise  # the log itself failed: the stage stops here and takes the request again
        except Exception as exc:  # one odd request must never stop every group's IPC
            logger.opt(exception=exc).error("{}: IPC {} request {} failed", request.folder, request.type,
                                            request.file)
            self._reject(request, f"the host could not carry out the request ({type(exc).__name__}: {exc})")
            return False

    # --- identity and refusals --------------------------------------------------------

    @staticmethod
    def _is_main(tx: Transaction, folder: str) -> bool:
        main = main_group(tx)
        return main is not None and main.folder == folder

    @staticmethod
    def _unknown(request: Request, kind_of: object) -> str:
        if not isinstance(kind_of, str) or not kind_of:
            return "the request has no \"type\" (a string)"
        if request.kind == "messages":
            return f"unknown message type {kind_of!r} (messages/ takes \"message\" and \"file\")"
        return f"unknown IPC task type {kind_of!r}"

    def _reject(self, request: Request, reason: str) -> None:
        request.tx.append(
            t.IpcRejected(folder=request.folder, file=request.file, reason=reason, kind=request.kind,
                          request_type=request.type or None, ipc_seq=request.seq),
            key=f"ipc-rejected:{request.seq}",
        )
        logger.warning("{}: IPC {} request {} refused: {}", request.folder, request.type or "(untyped)",
                       request.file, reason)

    @staticmethod
    def _notify(name: str, callback: Callable[[Any], None], argument: Any) -> None:
        """Callbacks refresh views; their failure must not stop the stage."""
        try:
            callback(argument)
        except Exception:
            logger.exception("IPC actions: {} failed; the requests themselves are recorded", name)

    def _group_folder(self, tx: Transaction, jid: str) -> str | None:
        group = group_by_jid(tx, jid)
        return group.folder if group else None

    # --- messages ----------------------------------------------------------------------

    def _message(self, request: Request) -> bool:
        """Main may message any chat; others only their own (text is sent as written)."""
        message: MessageRequest = convert(request, MessageRequest)
        if not request.is_main and self._group_folder(request.tx, message.chat_jid) != request.folder:
            raise Refusal(f"{request.folder} may only message its own chat, not {message.chat_jid}")
        outbound_id = f"ipc-{request.seq}"
        request.tx.append(
            t.OutboundQueued(outbound_id=outbound_id, chat_jid=message.chat_jid, text=message.text,
                             origin="ipc", sender=message.sender or None,
                             thread_id=reply_thread(request.tx, message.chat_jid)),
            key=f"out:{outbound_id}",
        )
        logger.info("{}: IPC message queued for {}", request.folder, message.chat_jid)
        return False

    def _file(self, request: Request) -> bool:
        """A file of the requester's own folder to a chat it may message; copied into the outbox first."""
        spec: FileRequest = convert(request, FileRequest)
        if not request.is_main and self._group_folder(request.tx, spec.chat_jid) != request.folder:
            raise Refusal(f"{request.folder} may only send files to its own chat, not {spec.chat_jid}")
        if len(spec.caption) > MAX_CAPTION_CHARS:
            raise Refusal(f"a file's caption is at most {MAX_CAPTION_CHARS} characters, not {len(spec.caption)}")
        outbound_id = f"ipc-{request.seq}"
        try:
            file = take_file(self.settings, request.folder, spec.path, outbound_id,
                             queued_bytes=queued_file_bytes(request.tx, spec.chat_jid))
        except (FileRefused, GroupError) as exc:
            raise Refusal(f"file not sent: {exc}") from exc
        request.tx.append(
            t.OutboundQueued(outbound_id=outbound_id, chat_jid=spec.chat_jid, text=spec.caption, origin="ipc",
                             file=file, thread_id=reply_thread(request.tx, spec.chat_jid)),
            key=f"out:{outbound_id}",
        )
        logger.info("{}: IPC file {} ({} bytes, {}) queued for {}", request.folder, file.name, file.size,
                    file.media_type, spec.chat_jid)
        return False

    # --- tasks -------------------------------------------------------------------------

    def _schedule_task(self, request: Request) -> bool:
        spec: ScheduleRequest = convert(request, ScheduleRequest)
        target_folder = self._group_folder(request.tx, spec.target_jid)
        if target_folder is None:
            raise Refusal(f"target chat {spec.target_jid} is not a registered group")
        if not request.is_main and target_folder != request.folder:
            raise Refusal(f"{request.folder} may only schedule tasks for itself, not for {target_folder}")
        next_run = self._first_run(spec.schedule_type, spec.schedule_value, spec.timezone)
        task_id = self._task_id(request.tx, spec.task_id)
        mode = spec.context_mode if spec.context_mode in get_args(t.ContextMode) else "isolated"
        request.tx.append(t.TaskScheduled(
            task_id=task_id, group_folder=target_folder, chat_jid=spec.target_jid, prompt=spec.prompt,
            schedule_type=spec.schedule_type, schedule_value=spec.schedule_value,  # type: ignore[arg-type]
            context_mode=mode, script=spec.script or None, timezone=spec.timezone, next_run=next_run,  # type: ignore[arg-type]
            created_by=request.by,
        ))
        logger.info("{}: task {} scheduled for {} ({} {}), next run {}", request.folder, task_id,
                    target_folder, spec.schedule_type, spec.schedule_value, next_run)
        return True

    def _first_run(self, schedule_type: str, value: str, zone: str | None) -> str | None:
        try:
            return first_run(schedule_type, value, tz=zone or self.settings.timezone)
        except ScheduleError as exc:
            raise Refusal(str(exc)) from exc

    @staticmethod
    def _task_id(tx: Transaction, wanted: str | None) -> str:
        """The container's taskId if well-formed and unused, else a new one."""
        if wanted:
            if not TASK_ID_RE.match(wanted):
                raise Refusal(f"invalid taskId {wanted!r}: letters, digits, '.', '_', ':' or '-', up to 128")
            if task_by_id(tx, wanted) is not None:
                raise Refusal(f"task {wanted} already exists")
            return wanted
        while task_by_id(tx, task_id := new_task_id()) is not None:
            pass
        return task_id

    def _owned_task(self, request: Request, task_id: str) -> Any:
        """The task row, if it exists and the requester is main or its owner."""
        task = task_by_id(request.tx, task_id)
        if task is None:
            raise Refusal(f"task {task_id} not found")
        if not request.is_main and task["group_folder"] != request.folder:
            raise Refusal(f"task {task_id} belongs to {task['group_folder']}, not {request.folder}")
        return task

    def _task_state(self, request: Request, event_type: type[t.Event]) -> bool:
        """Pause, resume or cancel (resume keeps next_run: an overdue task runs at once)."""
        spec: TaskRequest = convert(request, TaskRequest)
        task = self._owned_task(request, spec.task_id)
        request.tx.append(event_type(task_id=task["id"], group_folder=task["group_folder"], by=request.by))  # type: ignore[call-arg]
        logger.info("{}: task {} {}", request.folder, task["id"], _DONE[event_type])
        return True

    def _update_task(self, request: Request) -> bool:
        """Change some fields; a schedule change recomputes next_run (invalid: nothing changes)."""
        spec: UpdateRequest = convert(request, UpdateRequest)
        task = self._owned_task(request, spec.task_id)
        changes: dict[str, Any] = {}
        if spec.prompt is not t.UNSET:
            changes["prompt"] = spec.prompt
        if spec.script is not t.UNSET:
            changes["script"] = spec.script or None
        for name in ("schedule_type", "schedule_value", "timezone"):
            if getattr(spec, name) is not t.UNSET:
                changes[name] = getattr(spec, name)
        if {"schedule_type", "schedule_value", "timezone"} & changes.keys():
            merged = {**dict(task), **changes}
            changes["next_run"] = self._first_run(merged["schedule_type"], merged["schedule_value"],
                                                  merged["timezone"])
        if not changes:
            raise Refusal("update_task names nothing to change")
        request.tx.append(t.TaskUpdated(task_id=task["id"], group_folder=task["group_folder"],
                                        updated_by=request.by, **changes))
        logger.info("{}: task {} updated ({})", request.folder, task["id"], ", ".join(sorted(changes)))
        return True

    # --- groups ------------------------------------------------------------------------

    def _refresh_groups(self, request: Request) -> bool:
        if not request.is_main:
            raise Refusal("only the main group may refresh the group list")
        if self.on_refresh_groups is not None:
            self._notify("on_refresh_groups", self.on_refresh_groups, request.folder)
        logger.info("{}: group list refresh requested", request.folder)
        return False

    def _register_group(self, request: Request) -> bool:
        """Main only; never makes a main group (that is the CLI's alone)."""
        if not request.is_main:
            raise Refusal("only the main group may register groups")
        spec: RegisterRequest = convert(request, RegisterRequest)
        config = self._container_config(spec.container_config)
        try:
            group_dir(self.settings, spec.folder)  # refuse before anything is recorded
            register_group(_InTransaction(request.tx), self.settings, jid=spec.jid,  # type: ignore[arg-type]
                           name=spec.name, folder=spec.folder, trigger=spec.trigger,
                           requires_trigger=spec.requires_trigger, is_main=False,
                           container_config=config, by=request.by)
        except GroupError as exc:
            raise Refusal(str(exc)) from exc
        except OSError as exc:  # registered; the folder is created again before its first run
            logger.error("{}: group {} registered but its folder could not be made: {}",
                         request.folder, spec.folder, exc)
        logger.info("{}: registered group {} ({}) in folder {}", request.folder, spec.name, spec.jid,
                    spec.folder)
        return False

    @staticmethod
    def _container_config(spec: ContainerSpec | None) -> t.ContainerConfig | None:
        if spec is None:
            return None
        if spec.timeout is not None and not MIN_TIMEOUT_MS <= spec.timeout <= MAX_TIMEOUT_MS:
            raise Refusal(f"invalid containerConfig.timeout {spec.timeout}: from 1 second to 7 days, in ms")
        mounts = [t.MountRequest(**msgspec.structs.asdict(m)) for m in spec.additional_mounts]
        return t.ContainerConfig(additional_mounts=mounts, timeout_ms=spec.timeout)
