"""Pieces of the agent runner checked in-process: inbox, task script, archive.

These parts are standard-library code, so their edge cases (timeouts, output
caps, inotify fallback, transcript formats) are cheaper to pin down here
than through a subprocess.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from datetime import datetime
from pathlib import Path

import pytest

from tests.agent_stub_api import AGENT_CONTAINER_DIR, pipe_message, request_close

sys.path.insert(0, str(AGENT_CONTAINER_DIR))
from agent_runner import task_script  # noqa: E402
from agent_runner import inbox as inbox_module  # noqa: E402
from agent_runner.inbox import Inbox  # noqa: E402
from agent_runner.protocol import Emitter, InputError, parse_input  # noqa: E402
from agent_runner.providers.transcript_archive import archive_transcript  # noqa: E402

# --- inbox ----------------------------------------------------------------------

@pytest.fixture
def inbox(tmp_path: Path):
    box = Inbox(tmp_path / "ipc" / "input")
    box.open()
    yield box
    box.close()


def test_the_inbox_is_event_driven_on_linux(inbox):
    assert inbox.event_driven


def test_a_blocked_wait_wakes_within_milliseconds_of_a_rename(inbox, tmp_path):
    got: list = []
    waiter = threading.Thread(target=lambda: got.append((inbox.next_messages(), time.monotonic())))
    waiter.start()
    time.sleep(0.3)
    sent = time.monotonic()
    pipe_message(tmp_path / "ipc", "ping")
    waiter.join(5)
    [(messages, received)] = got
    assert messages == ["ping"]
    assert received - sent < 0.1


def test_close_wins_over_waiting_messages_and_is_consumed(inbox, tmp_path):
    pipe_message(tmp_path / "ipc", "queued")
    request_close(tmp_path / "ipc")
    assert inbox.next_messages() is None
    assert not (tmp_path / "ipc" / "input" / "_close").exists()
    assert inbox.next_messages() == ["queued"]


def test_each_output_names_the_piped_files_read_since_the_one_before(inbox, tmp_path):
    import io

    stream = io.BytesIO()
    out = Emitter(stream, inputs=inbox.take_consumed)
    first = pipe_message(tmp_path / "ipc", "one")
    second = pipe_message(tmp_path / "ipc", "two")
    assert inbox.drain() == ["one", "two"]
    out.success("answer to both")
    out.success("a second thought")
    frames = [json.loads(line) for line in stream.getvalue().decode().splitlines() if line.startswith("{")]
    assert frames[0]["inputs"] == [first.name, second.name]
    assert "inputs" not in frames[1]  # nothing new was read in between


def test_without_inotify_the_inbox_polls(tmp_path, monkeypatch):
    def broken(directory):
        raise OSError(38, "inotify not implemented")

    monkeypatch.setattr(inbox_module, "_Inotify", broken)
    box = Inbox(tmp_path / "input")
    box.open()
    assert not box.event_driven
    threading.Timer(0.2, lambda: pipe_message(tmp_path, "polled")).start()
    started = time.monotonic()
    assert box.next_messages() == ["polled"]
    assert time.monotonic() - started < 1.0


def test_the_async_wait_sees_a_rename(inbox, tmp_path):
    import asyncio

    async def scenario():
        asyncio.get_running_loop().call_later(0.2, pipe_message, tmp_path / "ipc", "async ping")
        return await asyncio.wait_for(inbox.next_messages_async(), 5)

    assert asyncio.run(scenario()) == ["async ping"]


# --- task script ----------------------------------------------------------------

@pytest.fixture
def script_path(tmp_path: Path) -> Path:
    return tmp_path / "task-script.sh"


def test_a_script_that_runs_too_long_is_killed_and_does_not_wake(script_path, monkeypatch):
    monkeypatch.setattr(task_script, "SCRIPT_TIMEOUT_S", 0.5)
    started = time.monotonic()
    outcome = task_script.run_task_script("sleep 30; echo '{\"wakeAgent\": true}'", script_path)
    assert not outcome.wake
    assert time.monotonic() - started < 5


def test_too_much_output_does_not_wake(script_path, monkeypatch):
    monkeypatch.setattr(task_script, "SCRIPT_MAX_OUTPUT_BYTES", 1000)
    outcome = task_script.run_task_script(
        "head -c 5000 /dev/zero | tr '\\0' x; echo; echo '{\"wakeAgent\": true}'", script_path
    )
    assert not outcome.wake


def test_a_background_child_does_not_hold_the_verdict_back(script_path, monkeypatch):
    monkeypatch.setattr(task_script, "READER_GRACE_S", 0.2)
    started = time.monotonic()
    outcome = task_script.run_task_script("sleep 30 & echo '{\"wakeAgent\": true, \"data\": 1}'", script_path)
    assert (outcome.wake, outcome.data) == (True, 1)
    assert time.monotonic() - started < 5


def test_the_verdict_is_the_last_line_and_data_is_optional():
    assert task_script.parse_verdict('noise\n{"wakeAgent": true}\n\n') == task_script.ScriptOutcome(True, None)
    assert task_script.parse_verdict('{"wakeAgent": true}\nlast') == task_script.ScriptOutcome(False)
    assert "null" in task_script.wake_prompt(None, "do it")


# --- request parsing ------------------------------------------------------------

GATEWAY = {"token": "tok-1234", "socketDir": "/run/nanoclaw", "apiPort": 3129, "proxyPort": 3128}


def test_the_gateway_field_gives_the_socket_folder_ports_and_a_token_kept_out_of_repr():
    raw = {"prompt": "p", "groupFolder": "g", "chatJid": "c", "isMain": True, "gateway": GATEWAY}
    parsed = parse_input(json.dumps(raw).encode())
    assert parsed.gateway.api_url == "http://127.0.0.1:3129" and parsed.gateway.proxy_port == 3128
    assert parsed.gateway.token == "tok-1234" and "tok-1234" not in repr(parsed)


@pytest.mark.parametrize("broken", [{"token": ""}, {"socketDir": "relative"}, {"apiPort": 0},
                                    {"proxyPort": "3128"}, {"apiPort": True}])
def test_a_malformed_gateway_field_is_an_input_error(broken):
    raw = {"prompt": "p", "groupFolder": "g", "chatJid": "c", "isMain": True, "gateway": {**GATEWAY, **broken}}
    with pytest.raises(InputError, match="gateway"):
        parse_input(json.dumps(raw).encode())


def test_a_null_session_id_means_a_new_session():
    raw = {"prompt": "p", "groupFolder": "g", "chatJid": "c", "isMain": False, "sessionId": None}
    assert parse_input(json.dumps(raw).encode()).session_id is None
    with pytest.raises(InputError):
        parse_input(json.dumps({**raw, "isMain": "yes"}).encode())


# --- transcript archive ------------------------------------------------

def write_transcript(directory: Path, session: str) -> Path:
    entries = [
        {"type": "summary", "summary": "ignored"},
        {"type": "user", "message": {"role": "user", "content": "What is on today?"}},
        {"type": "assistant", "message": {"content": [
            {"type": "thinking", "thinking": "hmm"},
            {"type": "text", "text": "Checking"},
            {"type": "tool_use", "name": "Bash", "input": {}},
            {"type": "text", "text": " now."},
        ]}},
        {"type": "user", "message": {"content": [{"type": "tool_result", "content": "ok"}]}},
        {"type": "assistant", "message": {"content": [{"type": "text", "text": "x" * 2100}]}},
    ]
    path = directory / f"{session}.jsonl"
    path.write_text("\n".join(json.dumps(e) for e in entries) + "\nnot json\n")
    return path


def test_the_archive_is_named_after_the_session_summary(tmp_path):
    transcript = write_transcript(tmp_path, "s-1")
    index = {"entries": [{"sessionId": "s-1", "summary": "Planning the Trip: Day 1!"}]}
    (tmp_path / "sessions-index.json").write_text(json.dumps(index))
    group = tmp_path / "group"
    path = archive_transcript(transcript_path=str(transcript), session_id="s-1", group_dir=group,
                              assistant_name="Andy", now=datetime(2026, 1, 5, 15, 4))
    assert path == group / "conversations" / "2026-01-05-planning-the-trip-day-1.md"
    assert path.read_text() == "\n".join([
        "# Planning the Trip: Day 1!", "", "Archived: Jan 5, 3:04 PM", "", "---", "",
        "**User**: What is on today?", "",
        "**Andy**: Checking now.", "",
        f"**Andy**: {'x' * 2000}...", "",
    ])


def test_without_a_summary_the_archive_uses_the_time(tmp_path):
    transcript = write_transcript(tmp_path, "s-2")
    path = archive_transcript(transcript_path=str(transcript), session_id="s-2", group_dir=tmp_path / "g",
                              assistant_name="", now=datetime(2026, 1, 5, 0, 7))
    assert path.name == "2026-01-05-conversation-0007.md"
    text = path.read_text()
    assert text.startswith("# Conversation\n\nArchived: Jan 5, 12:07 AM\n")
    assert "**Assistant**: Checking now." in text


def test_an_empty_or_missing_transcript_writes_nothing(tmp_path):
    empty = tmp_path / "e.jsonl"
    empty.write_text('{"type": "user", "message": {"content": []}}\n')
    for path in (str(empty), str(tmp_path / "missing.jsonl"), ""):
        assert archive_transcript(transcript_path=path, session_id="s", group_dir=tmp_path / "g",
                                  assistant_name="Andy") is None
    assert not (tmp_path / "g").exists()
