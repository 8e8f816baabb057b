"""The IPC actions stage over a real log: authorization, effects, snapshots."""

from __future__ import annotations

import json
import os
import re

import pytest
from freezegun import freeze_time
from loguru import logger

from events import consumer, types as t
from events.queries import find_group
from router.actions import ActionsStage
from rules.groups import register_group
from rules.snapshots import (snapshots_dir, write_all_tasks_snapshots, write_groups_snapshot,
                             write_tasks_snapshot)

MAIN, FAMILY, WORK = "local:me", "tg:fam", "tg:work"
STRANGER_JID = "tg:nobody"


@pytest.fixture
def world(settings, log):
    register_group(log, settings, jid=MAIN, name="Me", folder="main", is_main=True)
    register_group(log, settings, jid=FAMILY, name="Family", folder="family")
    register_group(log, settings, jid=WORK, name="Work", folder="work")
    for task_id, folder, jid in (("t-main", "main", MAIN), ("t-fam", "family", FAMILY)):
        log.append(t.TaskScheduled(task_id=task_id, group_folder=folder, chat_jid=jid, prompt=f"{folder} job",
                                   schedule_type="interval", schedule_value="3600000",
                                   next_run="2030-01-01T00:00:00.000Z"))
    return log


@pytest.fixture
def stage(settings):
    return ActionsStage(settings)


_files = iter(range(10**6))


def submit(log, stage, folder: str, payload: dict, kind: str = "tasks") -> tuple[int, list]:
    """Drop one request as the watcher would record it; run the stage; return its seq and effects."""
    name = f"{1700000000000 + next(_files)}-abc.json"
    seq = log.append(t.IpcReceived(folder=folder, kind=kind, file=name, payload=payload),  # type: ignore[arg-type]
                     key=f"ipc:{folder}/{kind}/{name}").seq
    consumer.drain(log, stage)
    return seq, [record.event for record in log.read_since(seq)]


def task(log, task_id: str):
    rows = log.query("SELECT * FROM tasks WHERE id = ?", (task_id,))
    return dict(rows[0]) if rows else None


def message(jid: str, text: str = "hello") -> dict:
    return {"type": "message", "chatJid": jid, "text": text}


def schedule(jid: str, **extra) -> dict:
    return {"type": "schedule_task", "prompt": "check the news", "schedule_type": "interval",
            "schedule_value": "60000", "targetJid": jid, **extra}


def op(kind: str, task_id: str, **extra) -> dict:
    return {"type": kind, "taskId": task_id, **extra}


def register(folder: str, jid: str = "tg:new", **extra) -> dict:
    return {"type": "register_group", "jid": jid, "name": "New Group", "folder": folder,
            "trigger": "@Andy", **extra}


def row(case: str, folder: str, kind: str, payload: dict, effect):
    verdict = "refused" if effect is t.IpcRejected else "allowed"
    return pytest.param(folder, kind, payload, effect, id=f"{folder}:{case}:{verdict}")


def task_rows(kind: str, effect) -> list:
    return [
        row(f"{kind} another group's task", "main", "tasks", op(kind, "t-fam", prompt="new"), effect),
        row(f"{kind} own task", "main", "tasks", op(kind, "t-main", prompt="new"), effect),
        row(f"{kind} own task", "family", "tasks", op(kind, "t-fam", prompt="new"), effect),
        row(f"{kind} main's task", "family", "tasks", op(kind, "t-main", prompt="new"), t.IpcRejected),
        row(f"{kind} another group's task", "work", "tasks", op(kind, "t-fam", prompt="new"), t.IpcRejected),
        row(f"{kind} a missing task", "main", "tasks", op(kind, "t-missing", prompt="new"), t.IpcRejected),
    ]


# The whole authorization matrix: (source folder, kind, payload, the one event the stage appends).
MATRIX = [
    row("message own chat", "main", "messages", message(MAIN), t.OutboundQueued),
    row("message another group", "main", "messages", message(FAMILY), t.OutboundQueued),
    row("message an unregistered chat", "main", "messages", message(STRANGER_JID), t.OutboundQueued),
    row("message own chat", "family", "messages", message(FAMILY), t.OutboundQueued),
    row("message another group", "family", "messages", message(WORK), t.IpcRejected),
    row("message main's chat", "family", "messages", message(MAIN), t.IpcRejected),
    row("message an unregistered chat", "family", "messages", message(STRANGER_JID), t.IpcRejected),
    row("message as an unregistered folder", "stranger", "messages", message(FAMILY), t.IpcRejected),
    row("schedule for itself", "main", "tasks", schedule(MAIN), t.TaskScheduled),
    row("schedule for another group", "main", "tasks", schedule(FAMILY), t.TaskScheduled),
    row("schedule for an unregistered chat", "main", "tasks", schedule(STRANGER_JID), t.IpcRejected),
    row("schedule for itself", "family", "tasks", schedule(FAMILY), t.TaskScheduled),
    row("schedule for another group", "family", "tasks", schedule(WORK), t.IpcRejected),
    row("schedule for main", "family", "tasks", schedule(MAIN), t.IpcRejected),
    row("schedule for an unregistered chat", "family", "tasks", schedule(STRANGER_JID), t.IpcRejected),
    *task_rows("pause_task", t.TaskPaused),
    *task_rows("resume_task", t.TaskResumed),
    *task_rows("cancel_task", t.TaskCancelled),
    *task_rows("update_task", t.TaskUpdated),
    row("refresh_groups", "main", "tasks", {"type": "refresh_groups"}, None),
    row("refresh_groups", "family", "tasks", {"type": "refresh_groups"}, t.IpcRejected),
    row("register_group", "main", "tasks", register("newgroup"), t.GroupRegistered),
    row("register_group", "family", "tasks", register("newgroup"), t.IpcRejected),
    row("unknown task type", "main", "tasks", {"type": "delete_everything"}, t.IpcRejected),
    row("no type", "main", "tasks", {"no": "type"}, t.IpcRejected),
    row("a message in tasks/", "main", "tasks", message(MAIN), t.IpcRejected),
    row("a task in messages/", "main", "messages", schedule(MAIN), t.IpcRejected),
]


@pytest.mark.parametrize("folder, kind, payload, effect", MATRIX)
def test_authorization_matrix(world, stage, folder, kind, payload, effect):
    seq, events = submit(world, stage, folder, payload, kind)
    assert [type(e) for e in events] == ([] if effect is None else [effect])
    if effect is t.IpcRejected:
        rejection = events[0]
        assert (rejection.folder, rejection.ipc_seq, rejection.kind) == (folder, seq, kind)
        assert rejection.reason


# --- identity ------------------------------------------------------------------------------


@pytest.mark.parametrize("payload", [
    {**message(WORK), "isMain": True, "groupFolder": "main"},
    schedule(WORK, isMain=True, groupFolder="main", createdBy="main"),
    op("pause_task", "t-main", isMain="true", groupFolder="main"),
    op("cancel_task", "t-main", isMain=True, groupFolder="main"),
    register("sneaky", isMain=True, groupFolder="main"),
])
def test_identity_comes_only_from_the_folder(world, stage, payload):
    kind = "messages" if payload["type"] == "message" else "tasks"
    _, events = submit(world, stage, "family", payload, kind)
    assert [type(e) for e in events] == [t.IpcRejected]
    assert task(world, "t-main")["status"] == "active"


def test_every_refusal_is_logged_as_a_warning_with_its_reason(world, stage):
    lines: list[str] = []
    sink = logger.add(lines.append, level="WARNING", format="{message}")
    try:
        _, [rejection] = submit(world, stage, "family", message(WORK), "messages")
    finally:
        logger.remove(sink)
    assert any(rejection.reason in line and "family" in line for line in lines)


@pytest.mark.parametrize("payload, reason", [
    ({"type": "message", "chatJid": 42, "text": "x"}, "Expected `str`"),
    ({"type": "message", "chatJid": FAMILY}, "missing required field `text`"),
    ({"type": "message", "chatJid": FAMILY, "text": ""}, "length >= 1"),
])
def test_malformed_messages_are_rejected_not_raised(world, stage, payload, reason):
    _, [rejection] = submit(world, stage, "family", payload, "messages")
    assert reason in rejection.reason and rejection.request_type == "message"


# --- messages -------------------------------------------------------------------------------


def test_message_text_is_sent_as_written_with_a_deterministic_id(world, stage):
    text = "<internal>thinking</internal>Here you go"
    seq, [queued] = submit(world, stage, "family", {**message(FAMILY, text), "sender": "Researcher"}, "messages")
    assert queued == t.OutboundQueued(outbound_id=f"ipc-{seq}", chat_jid=FAMILY, text=text, origin="ipc",
                                      sender="Researcher")
    assert world.read_since(seq)[0].key == f"out:ipc-{seq}"


def test_a_replayed_stage_does_not_queue_twice(world, stage):
    seq, _ = submit(world, stage, "family", message(FAMILY), "messages")
    consumer.drain(world, ActionsStage(stage.settings))
    assert len(world.read_since(seq, types=[t.OutboundQueued])) == 1


# --- schedule_task --------------------------------------------------------------------------


@freeze_time("2026-01-15T10:00:00Z")
def test_schedule_task_records_the_task_with_its_first_run(world, settings):
    stage = ActionsStage(settings)
    _, [event] = submit(world, stage, "main", schedule(FAMILY, schedule_type="cron", schedule_value="0 9 * * *",
                                                       context_mode="group", script="echo hi"))
    assert re.fullmatch(r"task-\d{13}-[0-9a-z]{6}", event.task_id)
    assert (event.group_folder, event.chat_jid, event.context_mode, event.script, event.created_by) == \
        ("family", FAMILY, "group", "echo hi", "ipc:main")
    assert event.next_run == "2026-01-16T09:00:00.000Z"  # TZ is UTC in tests
    assert task(world, event.task_id)["status"] == "active"


def test_schedule_task_in_the_tasks_own_time_zone(world, stage):
    _, [event] = submit(world, stage, "family", schedule(FAMILY, schedule_type="once",
                                                         schedule_value="2030-06-01T09:00",
                                                         timezone="Europe/Berlin"))
    assert (event.next_run, event.timezone) == ("2030-06-01T07:00:00.000Z", "Europe/Berlin")


@pytest.mark.parametrize("given, expected", [("group", "group"), ("isolated", "isolated"),
                                             ("shared", "isolated"), (None, "isolated")])
def test_context_mode_is_given_or_isolated(world, stage, given, expected):
    payload = schedule(FAMILY) if given is None else schedule(FAMILY, context_mode=given)
    _, [event] = submit(world, stage, "family", payload)
    assert event.context_mode == expected


def test_a_given_unused_task_id_is_kept(world, stage):
    _, [event] = submit(world, stage, "family", schedule(FAMILY, taskId="task-1-abcdef"))
    assert event.task_id == "task-1-abcdef"


def test_a_duplicate_task_id_is_rejected_not_raised(world, stage):
    _, [rejection] = submit(world, stage, "main", schedule(MAIN, taskId="t-fam"))
    assert "already exists" in rejection.reason
    assert task(world, "t-fam")["group_folder"] == "family"


@pytest.mark.parametrize("schedule_type, value", [
    ("cron", "every morning"), ("cron", "*/5 * * * * *"), ("interval", "5m"), ("interval", "0"),
    ("once", "next tuesday"), ("once", "2026-06-01"), ("weekly", "1"),
])
def test_an_invalid_schedule_is_rejected_and_nothing_is_created(world, stage, schedule_type, value):
    _, events = submit(world, stage, "family", schedule(FAMILY, schedule_type=schedule_type, schedule_value=value))
    assert [type(e) for e in events] == [t.IpcRejected]
    assert world.query("SELECT count(*) FROM tasks")[0][0] == 2


def test_missing_fields_are_rejected(world, stage):
    payload = schedule(FAMILY)
    del payload["targetJid"]
    _, [rejection] = submit(world, stage, "family", payload)
    assert "targetJid" in rejection.reason


# --- pause / resume / cancel / update ---------------------------------------------------------


def test_pause_resume_cancel_change_the_task(world, stage):
    submit(world, stage, "family", op("pause_task", "t-fam"))
    assert task(world, "t-fam")["status"] == "paused"
    submit(world, stage, "family", op("resume_task", "t-fam"))
    assert task(world, "t-fam")["status"] == "active"
    assert task(world, "t-fam")["next_run"] == "2030-01-01T00:00:00.000Z"  # resume does not recompute
    submit(world, stage, "family", op("cancel_task", "t-fam"))
    assert task(world, "t-fam") is None


@freeze_time("2026-01-15T10:00:00Z")
@pytest.mark.parametrize("change, next_run", [
    ({"schedule_type": "cron", "schedule_value": "30 12 * * *"}, "2026-01-15T12:30:00.000Z"),
    ({"schedule_value": "120000"}, "2026-01-15T10:02:00.000Z"),
    ({"schedule_type": "once", "schedule_value": "2027-02-03T04:05"}, "2027-02-03T04:05:00.000Z"),
    ({"timezone": "Asia/Tokyo", "schedule_type": "cron", "schedule_value": "0 9 * * *"},
     "2026-01-16T00:00:00.000Z"),
])
def test_update_task_recomputes_next_run(world, settings, change, next_run):
    _, [event] = submit(world, ActionsStage(settings), "family", op("update_task", "t-fam", **change))
    assert event.next_run == next_run and task(world, "t-fam")["next_run"] == next_run


@freeze_time("2026-01-15T10:00:00Z")
def test_update_of_a_once_tasks_time_moves_its_next_run(world, settings):
    """Moving a once task's time moves its next run too (v1 left next_run where it was)."""
    stage = ActionsStage(settings)
    _, [created] = submit(world, stage, "family", schedule(FAMILY, schedule_type="once",
                                                           schedule_value="2026-03-01T10:00"))
    submit(world, stage, "family", op("update_task", created.task_id, schedule_value="2026-04-01T10:00"))
    assert task(world, created.task_id)["next_run"] == "2026-04-01T10:00:00.000Z"


@pytest.mark.parametrize("change", [{"schedule_value": "5m"}, {"schedule_type": "cron", "schedule_value": "x"},
                                    {"schedule_type": "hourly"}, {"timezone": "Nowhere/Special"}])
def test_an_invalid_update_changes_nothing(world, stage, change):
    _, events = submit(world, stage, "family", op("update_task", "t-fam", prompt="changed", **change))
    assert [type(e) for e in events] == [t.IpcRejected]
    assert (task(world, "t-fam")["prompt"], task(world, "t-fam")["schedule_value"]) == ("family job", "3600000")


def test_update_task_applies_prompt_and_empty_script_removes_it(world, stage):
    submit(world, stage, "family", op("update_task", "t-fam", script="echo 1"))
    assert task(world, "t-fam")["script"] == "echo 1"
    _, [event] = submit(world, stage, "family", op("update_task", "t-fam", prompt="new prompt", script=""))
    assert event.next_run is t.UNSET  # no schedule field given: next_run untouched
    assert (task(world, "t-fam")["prompt"], task(world, "t-fam")["script"]) == ("new prompt", None)


def test_an_update_naming_nothing_is_rejected(world, stage):
    _, [rejection] = submit(world, stage, "family", op("update_task", "t-fam", isMain="false"))
    assert "nothing to change" in rejection.reason


# --- groups -------------------------------------------------------------------------------------


def test_register_group_by_main_creates_the_folder_and_memory(world, settings, stage):
    _, [event] = submit(world, stage, "main", register("tg_friends", jid="tg:friends", isMain=True))
    assert (event.folder, event.is_main, event.requires_trigger, event.registered_by) == \
        ("tg_friends", False, True, "ipc:main")
    group = find_group(world, "tg:friends")
    assert group is not None and not group.is_main
    assert (settings.groups_dir / "tg_friends" / "CLAUDE.md").is_file()


def test_register_group_honours_requires_trigger_and_container_config(world, stage):
    config = {"additionalMounts": [{"hostPath": "~/projects", "readonly": False}], "timeout": 60000}
    _, [event] = submit(world, stage, "main", register("quiet", requiresTrigger=False, containerConfig=config))
    assert event.requires_trigger is False
    assert event.container_config == t.ContainerConfig(
        additional_mounts=[t.MountRequest(host_path="~/projects", readonly=False)], timeout_ms=60000)


def test_an_agent_cannot_choose_a_groups_egress_policy_when_it_registers_one(world, stage):
    """Only the owner's CLI sets egress: an egress field in the agent's request is not carried over."""
    config = {"timeout": 60000, "egress": "open", "network": "host"}
    _, [event] = submit(world, stage, "main", register("sneaky", containerConfig=config))
    assert event.container_config == t.ContainerConfig(timeout_ms=60000)
    assert event.container_config.egress is None


@pytest.mark.parametrize("payload, reason", [
    (register("family", jid="tg:other"), "already used"),
    (register("newgroup", jid=FAMILY), "already registered"),
    (register("../escape"), "invalid folder"),
    (register("errors"), "reserved"),
    ({"type": "register_group", "jid": "tg:x", "name": "X", "folder": "x"}, "trigger"),
    (register("x", requiresTrigger="no"), "Expected `bool`"),
    (register("x", containerConfig={"timeout": 5}), "timeout"),
])
def test_bad_registrations_are_rejected(world, settings, stage, payload, reason):
    _, [rejection] = submit(world, stage, "main", payload)
    assert reason in rejection.reason
    assert not (settings.groups_dir / "escape").exists()


def test_non_main_group_cannot_register_and_nothing_is_created(world, settings, stage):
    _, [rejection] = submit(world, stage, "family", register("newgroup"))
    assert "only the main group" in rejection.reason
    assert find_group(world, "tg:new") is None and not (settings.groups_dir / "newgroup").exists()


def test_refresh_groups_calls_back_for_main_only(world, settings):
    calls: list[str] = []
    stage = ActionsStage(settings, on_refresh_groups=calls.append)
    submit(world, stage, "main", {"type": "refresh_groups"})
    submit(world, stage, "family", {"type": "refresh_groups"})
    assert calls == ["main"]


# --- tasks-changed callback and snapshots ---------------------------------------------------------


def test_tasks_changed_is_called_once_per_batch_inside_the_transaction(world, settings):
    seen: list[int] = []
    stage = ActionsStage(settings, on_tasks_changed=lambda tx: seen.append(
        tx.query("SELECT count(*) FROM tasks")[0][0]))
    for jid in (FAMILY, FAMILY):
        world.append(t.IpcReceived(folder="family", kind="tasks", file="x.json", payload=schedule(jid)))
    world.append(t.IpcReceived(folder="family", kind="messages", file="y.json", payload=message(FAMILY)))
    consumer.drain(world, stage)
    assert seen == [4]
    submit(world, stage, "family", message(FAMILY), "messages")
    assert seen == [4]  # a message changes no task


def test_a_failing_callback_does_not_stop_the_stage(world, settings):
    def broken(tx):
        raise OSError("disk full")

    seq, [event] = submit(world, ActionsStage(settings, on_tasks_changed=broken), "family", schedule(FAMILY))
    assert isinstance(event, t.TaskScheduled) and world.checkpoint("actions") >= seq


def test_task_snapshots_show_main_everything_and_others_their_own(world, settings):
    stage = ActionsStage(settings, on_tasks_changed=lambda tx: write_all_tasks_snapshots(settings, tx))
    submit(world, stage, "family", schedule(FAMILY, taskId="t-new"))
    main_view = json.loads((snapshots_dir(settings, "main") / "current_tasks.json").read_text())
    family_view = json.loads((snapshots_dir(settings, "family") / "current_tasks.json").read_text())
    work_view = json.loads((snapshots_dir(settings, "work") / "current_tasks.json").read_text())
    assert [entry["id"] for entry in main_view] == ["t-new", "t-fam", "t-main"]
    assert [entry["id"] for entry in family_view] == ["t-new", "t-fam"]
    assert work_view == []
    assert family_view[0] == {"id": "t-new", "groupFolder": "family", "prompt": "check the news", "script": None,
                              "schedule_type": "interval", "schedule_value": "60000", "status": "active",
                              "next_run": family_view[0]["next_run"]}
    raw = (snapshots_dir(settings, "family") / "current_tasks.json").read_text()
    assert raw.startswith("[\n  {")  # pretty, as v1 writes it
    assert (snapshots_dir(settings, "family") / "current_tasks.json").stat().st_mode & 0o777 == 0o644


def test_groups_snapshot_lists_group_chats_for_main_only(world, settings):
    chats = [("tg:fam", "Family", "2026-01-02T00:00:00.000Z", True),
             ("tg:club", "Book club", "2026-01-03T00:00:00.000Z", True),
             ("tg:alice", "Alice", "2026-01-04T00:00:00.000Z", False),
             ("__group_sync__", "__group_sync__", "2026-01-05T00:00:00.000Z", True)]
    for jid, name, when, is_group in chats:
        world.append(t.ChatSeen(chat_jid=jid, timestamp=when, name=name, is_group=is_group))
    path = write_groups_snapshot(settings, world, "main", True)
    snapshot = json.loads(path.read_text())
    assert snapshot["groups"] == [
        {"jid": "tg:club", "name": "Book club", "lastActivity": "2026-01-03T00:00:00.000Z", "isRegistered": False},
        {"jid": "tg:fam", "name": "Family", "lastActivity": "2026-01-02T00:00:00.000Z", "isRegistered": True},
    ]
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", snapshot["lastSync"])
    assert json.loads(write_groups_snapshot(settings, world, "family", False).read_text())["groups"] == []


def test_a_snapshot_replaces_a_planted_symlink_instead_of_writing_through_it(world, settings, tmp_path):
    victim = tmp_path / "victim.txt"
    victim.write_text("untouched")
    folder = snapshots_dir(settings, "family")
    folder.mkdir(parents=True)
    (folder / "current_tasks.json").symlink_to(victim)
    write_tasks_snapshot(settings, world, "family", False)
    assert victim.read_text() == "untouched"
    assert not (folder / "current_tasks.json").is_symlink()


def test_a_snapshots_folder_planted_as_a_link_is_replaced_not_written_through(world, settings, tmp_path):
    victim = tmp_path / "victim"
    victim.mkdir()
    (settings.ipc_dir / "family").mkdir(parents=True)
    snapshots_dir(settings, "family").symlink_to(victim)  # what an agent could leave from the old layout
    path = write_tasks_snapshot(settings, world, "family", False)
    assert os.listdir(victim) == []
    assert path.parent.is_dir() and not path.parent.is_symlink() and path.is_file()
