"""The `nanoclaw` tools: exact request files, replies and validation.

The tool functions are plain standard-library code, so most checks call
them in-process; one test drives them through the scripted provider to show
both providers reach the same functions.
"""

from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path

import pytest

from tests.agent_stub_api import AGENT_CONTAINER_DIR, RunnerProcess, make_workspace

sys.path.insert(0, str(AGENT_CONTAINER_DIR))
from agent_runner.cron import is_valid_cron  # noqa: E402
from agent_runner.tool_types import ToolContext, ToolReply  # noqa: E402
from agent_runner.tools import TOOLS, call_tool, tools_for  # noqa: E402

ISO = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$")
FILE_NAME = re.compile(r"^\d{13}-[0-9a-z]{6}\.json$")


@pytest.fixture
def ipc(tmp_path: Path) -> Path:
    return tmp_path / "ipc"


@pytest.fixture
def member(ipc: Path) -> ToolContext:
    return ToolContext("family@g.us", "family", False, ipc)


@pytest.fixture
def main(ipc: Path) -> ToolContext:
    return ToolContext("main@g.us", "main", True, ipc)


def only_file(directory: Path) -> dict:
    files = list(directory.iterdir())
    assert len(files) == 1, files
    assert FILE_NAME.match(files[0].name)
    text = files[0].read_text()
    assert text.startswith("{\n  \""), "pretty JSON with a 2-space indent"
    data = json.loads(text)
    assert ISO.match(data.pop("timestamp"))
    return data


def test_send_message_writes_the_message_request(member, ipc):
    reply = call_tool("send_message", member, {"text": "hi <b>there</b>", "sender": "Researcher"})
    assert (reply.text, reply.is_error) == ("Message sent.", False)
    data = only_file(ipc / "messages")
    assert list(data) == ["type", "chatJid", "text", "sender", "groupFolder"]
    assert data == {"type": "message", "chatJid": "family@g.us", "text": "hi <b>there</b>",
                    "sender": "Researcher", "groupFolder": "family"}


def test_send_message_leaves_out_an_empty_sender(member, ipc):
    call_tool("send_message", member, {"text": "x", "sender": ""})
    assert "sender" not in only_file(ipc / "messages")


def test_schedule_task_writes_the_task_request(member, ipc):
    args = {"prompt": "water the plants", "schedule_type": "cron", "schedule_value": "0 9 * * *"}
    reply = call_tool("schedule_task", member, args)
    data = only_file(ipc / "tasks")
    task_id = data.pop("taskId")
    assert re.match(r"^task-\d{13}-[0-9a-z]{6}$", task_id)
    assert reply.text == f"Task {task_id} scheduled: cron - 0 9 * * *" and not reply.is_error
    assert data == {"type": "schedule_task", "prompt": "water the plants", "schedule_type": "cron",
                    "schedule_value": "0 9 * * *", "context_mode": "group", "targetJid": "family@g.us",
                    "createdBy": "family"}


def test_schedule_task_carries_script_and_context_mode(member, ipc):
    args = {"prompt": "p", "schedule_type": "interval", "schedule_value": "300000",
            "context_mode": "isolated", "script": "echo hi"}
    call_tool("schedule_task", member, args)
    data = only_file(ipc / "tasks")
    assert (data["script"], data["context_mode"]) == ("echo hi", "isolated")
    assert list(data)[:4] == ["type", "taskId", "prompt", "script"]


def test_only_main_can_target_another_chat(member, main, ipc):
    args = {"prompt": "p", "schedule_type": "once", "schedule_value": "2026-02-01T15:30:00",
            "target_group_jid": "other@g.us"}
    call_tool("schedule_task", member, args)
    assert only_file(ipc / "tasks")["targetJid"] == "family@g.us"
    for path in (ipc / "tasks").iterdir():
        path.unlink()
    call_tool("schedule_task", main, args)
    assert only_file(ipc / "tasks")["targetJid"] == "other@g.us"


@pytest.mark.parametrize("kind, value, message", [
    ("cron", "every day", 'Invalid cron: "every day". Use format like "0 9 * * *" (daily 9am) '
                          'or "*/5 * * * *" (every 5 min).'),
    ("interval", "0", 'Invalid interval: "0". Must be positive milliseconds (e.g., 300000 for 5 min).'),
    ("interval", "5m", 'Invalid interval: "5m". Must be positive milliseconds (e.g., 300000 for 5 min).'),
    ("interval", "-10", 'Invalid interval: "-10". Must be positive milliseconds (e.g., 300000 for 5 min).'),
    ("once", "2026-02-01T15:30:00Z", 'Timestamp must be local time without timezone suffix. '
                                     'Got "2026-02-01T15:30:00Z" - use format like "2026-02-01T15:30:00".'),
    ("once", "2026-02-01T15:30:00+02:00", 'Timestamp must be local time without timezone suffix. '
                                          'Got "2026-02-01T15:30:00+02:00" - use format like "2026-02-01T15:30:00".'),
    ("once", "next tuesday", 'Invalid timestamp: "next tuesday". Use local time format like "2026-02-01T15:30:00".'),
])
def test_schedule_task_refuses_bad_schedules(member, ipc, kind, value, message):
    reply = call_tool("schedule_task", member, {"prompt": "p", "schedule_type": kind, "schedule_value": value})
    assert (reply.text, reply.is_error) == (message, True)
    assert not (ipc / "tasks").exists()


def test_schedule_task_refuses_an_unknown_schedule_type(member):
    reply = call_tool("schedule_task", member, {"prompt": "p", "schedule_type": "weekly", "schedule_value": "1"})
    assert reply.is_error and "schedule_type" in reply.text


TASKS = [
    {"id": "t1", "groupFolder": "family", "prompt": "A" * 60, "schedule_type": "cron",
     "schedule_value": "0 9 * * *", "status": "active", "next_run": "2026-01-01T09:00:00.000Z"},
    {"id": "t2", "groupFolder": "work", "prompt": "short", "schedule_type": "once",
     "schedule_value": "2026-01-01T10:00:00", "status": "paused", "next_run": None},
]


def test_list_tasks_shows_a_group_its_own_tasks(member, ipc):
    (ipc / "snapshots").mkdir(parents=True)
    (ipc / "snapshots" / "current_tasks.json").write_text(json.dumps(TASKS))
    reply = call_tool("list_tasks", member, {})
    assert reply.text == ("Scheduled tasks:\n"
                          f"- [t1] {'A' * 50}... (cron: 0 9 * * *) - active, next: 2026-01-01T09:00:00.000Z")


def test_list_tasks_shows_main_every_task(main, ipc):
    (ipc / "snapshots").mkdir(parents=True)
    (ipc / "snapshots" / "current_tasks.json").write_text(json.dumps(TASKS))
    lines = call_tool("list_tasks", main, {}).text.splitlines()
    assert lines[2] == "- [t2] short... (once: 2026-01-01T10:00:00) - paused, next: N/A"


def test_list_tasks_without_tasks(member, ipc):
    assert call_tool("list_tasks", member, {}).text == "No scheduled tasks found."
    (ipc / "snapshots").mkdir(parents=True)
    (ipc / "snapshots" / "current_tasks.json").write_text(json.dumps(TASKS[1:]))
    assert call_tool("list_tasks", member, {}).text == "No scheduled tasks found."


def test_list_tasks_reports_an_unreadable_snapshot_as_text(member, ipc):
    (ipc / "snapshots").mkdir(parents=True)
    (ipc / "snapshots" / "current_tasks.json").write_text("{broken")
    reply = call_tool("list_tasks", member, {})
    assert reply.text.startswith("Error reading tasks: ") and not reply.is_error


@pytest.mark.parametrize("tool, reply", [
    ("pause_task", "Task t-9 pause requested."),
    ("resume_task", "Task t-9 resume requested."),
    ("cancel_task", "Task t-9 cancellation requested."),
])
def test_task_actions_write_their_request(member, ipc, tool, reply):
    assert call_tool(tool, member, {"task_id": "t-9"}).text == reply
    assert only_file(ipc / "tasks") == {"type": tool, "taskId": "t-9", "groupFolder": "family", "isMain": False}


def test_update_task_sends_only_the_given_fields_and_ismain_as_text(main, ipc):
    reply = call_tool("update_task", main, {"task_id": "t-1", "prompt": "new", "script": ""})
    assert reply.text == "Task t-1 update requested."
    assert only_file(ipc / "tasks") == {"type": "update_task", "taskId": "t-1", "groupFolder": "main",
                                        "isMain": "true", "prompt": "new", "script": ""}


@pytest.mark.parametrize("args, message", [
    ({"schedule_value": "300000"}, 'Invalid cron: "300000".'),
    ({"schedule_type": "cron", "schedule_value": "61 * * * *"}, 'Invalid cron: "61 * * * *".'),
    ({"schedule_type": "interval", "schedule_value": "soon"}, 'Invalid interval: "soon".'),
])
def test_update_task_validates_like_v1(member, ipc, args, message):
    reply = call_tool("update_task", member, {"task_id": "t-1", **args})
    assert (reply.text, reply.is_error) == (message, True)
    assert not (ipc / "tasks").exists()


def test_update_task_accepts_a_new_interval_with_its_type(member, ipc):
    call_tool("update_task", member, {"task_id": "t-1", "schedule_type": "interval", "schedule_value": "60000"})
    data = only_file(ipc / "tasks")
    assert (data["isMain"], data["schedule_type"], data["schedule_value"]) == ("false", "interval", "60000")


def test_register_group_is_refused_outside_main(member, ipc):
    args = {"jid": "x@g.us", "name": "X", "folder": "x", "trigger": "@Andy"}
    reply = call_tool("register_group", member, args)
    assert (reply.text, reply.is_error) == ("Only the main group can register new groups.", True)
    assert not (ipc / "tasks").exists()


def test_register_group_from_main_writes_the_request(main, ipc):
    args = {"jid": "x@g.us", "name": "Book Club", "folder": "whatsapp_books", "trigger": "@Andy"}
    reply = call_tool("register_group", main, args)
    assert reply.text == 'Group "Book Club" registered. It will start receiving messages immediately.'
    assert only_file(ipc / "tasks") == {"type": "register_group", "jid": "x@g.us", "name": "Book Club",
                                        "folder": "whatsapp_books", "trigger": "@Andy", "requiresTrigger": False}


def test_register_group_is_offered_only_to_main():
    assert "register_group" in [spec.name for spec in tools_for(True)]
    assert "register_group" not in [spec.name for spec in tools_for(False)]


def test_the_browser_tools_are_offered_only_where_there_is_a_browser():
    browser_tools = {name for name in TOOLS if name.startswith("browser_")}
    assert browser_tools == {"browser_open", "browser_read", "browser_click", "browser_type", "browser_fill",
                             "browser_wait", "browser_screenshot", "browser_pdf"}
    assert not browser_tools & {spec.name for spec in tools_for(True)}
    assert browser_tools <= {spec.name for spec in tools_for(False, has_browser=True)}
    assert len(TOOLS) == 9 + len(browser_tools)


def test_a_browser_tool_without_a_browser_says_which_image_has_one(member):
    reply = call_tool("browser_open", member, {"url": "https://example.com"})
    assert reply.is_error and "no browser" in reply.text and "nanoclaw image build" in reply.text


@pytest.fixture
def group(tmp_path: Path) -> Path:
    folder = tmp_path / "group"
    (folder / "browser").mkdir(parents=True)
    (folder / "browser" / "shot.png").write_bytes(b"\x89PNG\r\n\x1a\n...")
    return folder


@pytest.mark.parametrize("given", ["browser/shot.png", "GROUP/browser/shot.png", "./browser/../browser/shot.png"])
def test_send_file_asks_the_host_for_a_file_of_the_group(ipc, group, given):
    ctx = ToolContext("family@g.us", "family", False, ipc, group_dir=group)
    reply = call_tool("send_file", ctx, {"path": given.replace("GROUP", str(group)), "caption": "the page"})
    assert not reply.is_error, reply.text
    assert only_file(ipc / "messages") == {"type": "file", "chatJid": "family@g.us", "path": "browser/shot.png",
                                           "caption": "the page", "groupFolder": "family"}


@pytest.mark.parametrize("given, words", [
    ("../secret.txt", "Only files in the group's folder"),
    ("/etc/passwd", "Only files in the group's folder"),
    ("browser/missing.png", "there is no such file"),
    ("browser", "not a regular file"),
    ("link.png", "symbolic link"),
    ("hard.png", "2 hard links"),
    ("empty.png", "it is empty"),
    ("big.bin", "over 20,971,520 bytes"),
])
def test_send_file_tells_the_agent_at_once_what_the_host_would_refuse(ipc, group, given, words):
    (group.parent / "secret.txt").write_text("no")
    (group / "link.png").symlink_to(group / "browser" / "shot.png")
    os.link(group / "browser" / "shot.png", group / "hard.png")
    (group / "empty.png").write_bytes(b"")
    with open(group / "big.bin", "wb") as big:
        big.truncate(20 * 1024 * 1024 + 1)
    ctx = ToolContext("family@g.us", "family", False, ipc, group_dir=group)
    reply = call_tool("send_file", ctx, {"path": given})
    assert reply.is_error and words in reply.text
    assert not (ipc / "messages").exists()


@pytest.mark.parametrize("value, ok", [(5, True), (2.5, True), (True, False), ("5", False)])
def test_number_arguments_take_numbers_and_not_booleans(member, value, ok):
    reply = call_tool("browser_wait", member, {"timeout_s": value})
    assert ("must be a number" in reply.text) is not ok


@pytest.mark.parametrize("name, args, message", [
    ("send_message", {}, "Missing required argument: text"),
    ("send_message", {"text": 5}, "Argument text must be a string"),
    ("pause_task", {"task_id": None}, "Argument task_id must be a string"),
    ("no_such_tool", {}, "Unknown tool: no_such_tool"),
])
def test_bad_arguments_are_error_replies(member, name, args, message):
    assert call_tool(name, member, args) == ToolReply(message, is_error=True)


def test_the_scripted_provider_calls_the_same_tools(tmp_path):
    workspace = make_workspace(tmp_path / "ws")
    steps = [{"tool": "send_message", "args": {"text": "via script"}},
             {"tool": "register_group", "args": {"jid": "j", "name": "n", "folder": "f", "trigger": "t"}}]
    request = {"prompt": "p", "groupFolder": "family", "chatJid": "family@g.us", "isMain": False,
               "provider": "scripted", "scripted": {"turns": [steps]}}
    runner = RunnerProcess(workspace, request)
    assert runner.next_output()["result"] is None
    runner.close()
    assert runner.wait() == 0
    [path] = (workspace / "ipc" / "messages").glob("*.json")
    assert json.loads(path.read_text())["text"] == "via script"
    assert not list((workspace / "ipc" / "tasks").glob("*.json"))
    assert "tool send_message: Message sent." in runner.stderr
    assert "tool register_group error: Only the main group can register new groups." in runner.stderr


# --- the cron check -------------------------------------------------------------

@pytest.mark.parametrize("expression", [
    "0 9 * * *", "*/5 * * * *", "0 9 * * 1-5", "30 8 * * MON-FRI", "0 0 1 jan,jul *",
    "0 0 * * 7", "5/15 * * * *", "0-30/10 1,2,3 * * *", "59 23 31 12 6", "  0  9 * * *  ",
])
def test_valid_cron_expressions(expression):
    assert is_valid_cron(expression)


@pytest.mark.parametrize("expression", [
    "", "* * * *", "* * * * * *", "60 * * * *", "* 24 * * *", "* * 0 * *", "* * * 13 *",
    "* * * * 8", "*/0 * * * *", "a * * * *", "5-1 * * * *", "1,,2 * * * *", "*/x * * * *",
    "² * * * *", "@daily",
])
def test_invalid_cron_expressions(expression):
    assert not is_valid_cron(expression)
