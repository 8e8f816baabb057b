"""The IPC watcher with a real watchdog observer and a real event log."""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path

import pytest
from watchdog.events import FileSystemEventHandler
from watchdog.observers import Observer

from events import types as t
from router import ipc
from router.ipc import IpcWatcher
from tests.waiting import wait_for

TIMEOUT_S = 10.0

# watchdog's own notice when a new folder's watch is added twice (the mkdir race it documents)
pytestmark = pytest.mark.filterwarnings("ignore:Callback with id:RuntimeWarning")


def make_group(settings, folder: str) -> Path:
    """What the host does before a group's first container starts."""
    base = settings.ipc_dir / folder
    for sub in ("messages", "tasks", "input"):
        (base / sub).mkdir(parents=True, exist_ok=True)
    return base


def drop(directory: Path, name: str, payload) -> Path:
    """An agent's atomic write: a temp file in the same folder, then a rename."""
    target = directory / name
    temp = directory / f"{name}.tmp"
    temp.write_text(json.dumps(payload), encoding="utf-8")
    os.rename(temp, target)
    return target


def received(log) -> list[t.IpcReceived]:
    return [r.event for r in log.read_since(0, types=[t.IpcReceived], limit=None)]  # type: ignore[misc]


def rejected(log) -> list[t.IpcRejected]:
    return [r.event for r in log.read_since(0, types=[t.IpcRejected], limit=None)]  # type: ignore[misc]


@pytest.fixture
def watcher(settings, log):
    make_group(settings, "family")
    watching = IpcWatcher(settings, log)
    watching.start()
    yield watching
    watching.stop()


def settle(watcher: IpcWatcher) -> None:
    """Let late duplicate events arrive, then force one more full pass."""
    time.sleep(0.3)
    watcher.scan()


# --- recording ------------------------------------------------------------------------


def test_a_file_written_atomically_in_the_folder_is_recorded_once(watcher, settings, log):
    drop(settings.ipc_dir / "family" / "messages", "1700000000000-abc.json", {"type": "message", "text": "hi"})
    events = wait_for(lambda: received(log))
    settle(watcher)
    assert received(log) == events
    assert events[0].folder == "family" and events[0].kind == "messages"
    assert events[0].file == "1700000000000-abc.json"
    assert events[0].payload == {"type": "message", "text": "hi"}
    assert log.read_since(0, types=[t.IpcReceived])[0].key.startswith("ipc:family/messages/1700000000000-abc.json@")
    assert os.listdir(settings.ipc_dir / "family" / "messages") == []
    assert os.listdir(settings.ipc_dir / "family" / "processing") == []


def test_a_file_renamed_in_from_outside_is_recorded_once(watcher, settings, log, tmp_path):
    outside = tmp_path / "elsewhere.json"
    outside.write_text(json.dumps({"type": "pause_task", "taskId": "t1"}))
    os.rename(outside, settings.ipc_dir / "family" / "tasks" / "1700000000001-def.json")
    wait_for(lambda: received(log))
    settle(watcher)
    [event] = received(log)
    assert (event.kind, event.file, event.size) == ("tasks", "1700000000001-def.json",
                                                    len(json.dumps({"type": "pause_task", "taskId": "t1"})))


def test_the_folder_not_the_payload_is_the_identity(watcher, settings, log):
    drop(settings.ipc_dir / "family" / "tasks", "1.json", {"type": "pause_task", "groupFolder": "main",
                                                          "isMain": True, "taskId": "x"})
    [event] = wait_for(lambda: received(log))
    assert event.folder == "family"


def test_a_group_folder_created_after_start_is_watched(watcher, settings, log):
    base = make_group(settings, "newcomer")
    drop(base / "messages", "1.json", {"n": 1})
    [event] = wait_for(lambda: received(log), timeout=3)
    assert event.folder == "newcomer"


def test_a_burst_of_200_files_is_recorded_exactly_once_in_name_order(watcher, settings, log):
    make_group(settings, "other")
    for i in range(200):
        folder = "family" if i % 2 else "other"
        drop(settings.ipc_dir / folder / "messages", f"{1700000000000 + i}-x.json", {"i": i})
    wait_for(lambda: len(received(log)) >= 200)
    settle(watcher)
    events = received(log)
    assert len(events) == 200
    for folder in ("family", "other"):
        names = [e.file for e in events if e.folder == folder]
        assert names == sorted(names) and len(set(names)) == 100


def test_temp_files_other_names_and_other_folders_are_left_alone(watcher, settings, log):
    base = settings.ipc_dir / "family"
    (base / "messages" / "half-written.json.tmp").write_text("{")
    (base / "messages" / "notes.txt").write_text("x")
    (base / "input" / "1.json").write_text('{"type": "message"}')
    (base / "current_tasks.json").write_text("[]")
    drop(base / "tasks", "2.json", {"type": "refresh_groups"})
    wait_for(lambda: received(log))
    settle(watcher)
    assert [e.file for e in received(log)] == ["2.json"]
    assert sorted(os.listdir(base / "messages")) == ["half-written.json.tmp", "notes.txt"]
    assert os.listdir(base / "input") == ["1.json"]
    assert (base / "current_tasks.json").exists()
    assert rejected(log) == []


# --- start and rescan -------------------------------------------------------------------


def test_files_present_before_start_are_recorded_in_name_order(settings, log):
    messages = make_group(settings, "family") / "messages"
    for i in reversed(range(30)):
        drop(messages, f"{1700000000000 + i}-r.json", {"i": i})
    watching = IpcWatcher(settings, log)
    watching.start()
    try:
        wait_for(lambda: len(received(log)) == 30)
    finally:
        watching.stop()
    assert [e.payload["i"] for e in received(log)] == list(range(30))


def test_a_file_left_in_processing_by_a_crash_is_recorded_at_start(settings, log):
    processing = make_group(settings, "family") / "processing"
    processing.mkdir()
    (processing / "tasks-1700000000000-z.json").write_text('{"type": "refresh_groups"}')
    watching = IpcWatcher(settings, log)
    watching.start()
    try:
        [event] = wait_for(lambda: received(log))
    finally:
        watching.stop()
    assert (event.kind, event.file) == ("tasks", "1700000000000-z.json")
    assert os.listdir(processing) == []


def test_a_file_recorded_before_a_crash_is_not_recorded_twice(settings, log):
    processing = make_group(settings, "family") / "processing"
    processing.mkdir()
    leftover = processing / "messages-1.json"
    leftover.write_text('{"a": 1}')
    info = leftover.stat()
    log.append(t.IpcReceived(folder="family", kind="messages", file="1.json", payload={"a": 1}),
               key=ipc.request_key("family", "messages", "1.json", f"{info.st_ino}-{info.st_mtime_ns}"))
    watching = IpcWatcher(settings, log)
    assert watching.scan() == 1
    assert len(received(log)) == 1 and os.listdir(processing) == []


def test_the_rescan_picks_up_a_file_whose_event_was_missed(settings, log, monkeypatch):
    monkeypatch.setattr(ipc, "RESCAN_S", 0.2)
    messages = make_group(settings, "family") / "messages"
    watching = IpcWatcher(settings, log)
    watching.start()
    try:
        watching._observer.stop()  # inotify overflowed: no event will come for the next file
        watching._observer.join()
        drop(messages, "1.json", {"missed": True})
        [event] = wait_for(lambda: received(log), timeout=3)
    finally:
        watching.stop()
    assert event.payload == {"missed": True}


def test_stop_is_clean_and_nothing_is_taken_afterwards(settings, log):
    messages = make_group(settings, "family") / "messages"
    before = {thread.ident for thread in threading.enumerate()}
    watching = IpcWatcher(settings, log)
    watching.start()
    drop(messages, "1.json", {"n": 1})
    wait_for(lambda: received(log))
    watching.stop()
    watching.stop()  # a second stop is harmless
    assert {thread.ident for thread in threading.enumerate()} <= before
    drop(messages, "2.json", {"n": 2})
    time.sleep(0.3)
    assert len(received(log)) == 1 and os.listdir(messages) == ["2.json"]


# --- refusals -----------------------------------------------------------------------------


def assert_quarantined(settings, log, folder: str, name: str, reason_part: str) -> t.IpcRejected:
    [event] = wait_for(lambda: rejected(log))
    assert (event.folder, event.file) == (folder, name)
    assert reason_part in event.reason
    quarantined = settings.ipc_dir / "errors" / f"{folder}-{name}"
    assert event.quarantined_to == f"data/ipc/errors/{folder}-{name}"
    assert os.path.lexists(quarantined)
    assert reason_part in (settings.ipc_dir / "errors" / f"{folder}-{name}.reason").read_text()
    assert received(log) == []
    return event


@pytest.mark.parametrize("content, reason", [
    (b'{"type": "message", "text": ', "not valid JSON"),
    (b"[1, 2, 3]", "not a JSON object"),
    (b'"just a string"', "not a JSON object"),
    (b'{"text": "\xff\xfe"}', "not valid JSON"),
])
def test_bad_content_is_quarantined_with_a_reason(watcher, settings, log, tmp_path, content, reason):
    outside = tmp_path / "bad.json"
    outside.write_bytes(content)
    os.rename(outside, settings.ipc_dir / "family" / "tasks" / "bad.json")
    event = assert_quarantined(settings, log, "family", "bad.json", reason)
    assert event.kind == "tasks"
    assert not (settings.ipc_dir / "family" / "tasks" / "bad.json").exists()


def test_a_20_mb_file_is_quarantined_without_being_read(watcher, settings, log, tmp_path):
    big = tmp_path / "big.json"
    with big.open("wb") as handle:
        handle.truncate(20 * 1024 * 1024)  # sparse: only its size says how big it is
    os.rename(big, settings.ipc_dir / "family" / "messages" / "big.json")
    assert_quarantined(settings, log, "family", "big.json", "over the 1048576-byte limit")


class _Opens(FileSystemEventHandler):
    def __init__(self, path: str):
        self.path, self.seen = path, []

    def on_any_event(self, event):
        if event.src_path == self.path and event.event_type in ("opened", "closed", "closed_no_write"):
            self.seen.append(event.event_type)


def test_a_planted_symlink_is_quarantined_and_its_target_never_opened(watcher, settings, log, tmp_path):
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    secret = secrets / "token.json"
    secret.write_text('{"token": "s3cret"}')
    opens = _Opens(str(secret))
    spy = Observer()
    spy.schedule(opens, str(secrets), recursive=False)
    spy.start()
    try:
        os.symlink(secret, settings.ipc_dir / "family" / "messages" / "1.json")
        assert_quarantined(settings, log, "family", "1.json", "symbolic link")
        time.sleep(0.3)
        assert opens.seen == []  # the watcher never opened the target
        secret.read_text()  # the spy does see an open: the check above means something
        wait_for(lambda: opens.seen)
    finally:
        spy.stop()
        spy.join()
    assert os.path.islink(settings.ipc_dir / "errors" / "family-1.json")
    assert "s3cret" not in json.dumps([r["data"] for r in log.query("SELECT data FROM events")])


def test_a_fifo_does_not_hang_the_watcher(watcher, settings, log):
    os.mkfifo(settings.ipc_dir / "family" / "messages" / "pipe.json")
    assert_quarantined(settings, log, "family", "pipe.json", "not a regular file")


def test_a_symlinked_messages_folder_is_not_followed(settings, log, tmp_path):
    outside = tmp_path / "host-files"
    outside.mkdir()
    (outside / "credentials.json").write_text('{"key": "do-not-send"}')
    base = settings.ipc_dir / "family"
    base.mkdir(parents=True)
    os.symlink(outside, base / "messages")
    IpcWatcher(settings, log).scan()
    assert (outside / "credentials.json").exists()
    event = assert_quarantined(settings, log, "family", "messages", "symbolic link")
    assert event.kind == "messages"


def test_a_planted_processing_link_is_quarantined_and_nothing_lands_outside(settings, log, tmp_path):
    outside = tmp_path / "autostart"
    outside.mkdir()
    base = make_group(settings, "family")
    os.symlink(outside, base / "processing")
    drop(base / "messages", "1.json", {"n": 1})
    IpcWatcher(settings, log).scan()
    assert os.listdir(outside) == []
    assert [e.file for e in received(log)] == ["1.json"]
    [event] = rejected(log)
    assert (event.file, event.kind) == ("processing", "processing") and "not a real directory" in event.reason
    assert (base / "processing").is_dir() and not (base / "processing").is_symlink()


def test_an_overlong_file_name_is_quarantined(settings, log):
    tasks = make_group(settings, "family") / "tasks"
    name = "x" * 240 + ".json"
    (tasks / name).write_text("{}")
    IpcWatcher(settings, log).scan()
    [event] = rejected(log)
    assert event.reason == "the file name is too long" and os.listdir(tasks) == []


@pytest.mark.parametrize("folder", ["errors", "global", ".hidden", "bad name", "x..y", "-dash", "a" * 65])
def test_files_in_an_invalid_or_reserved_folder_are_quarantined(watcher, settings, log, folder):
    drop(make_group(settings, folder) / "tasks", "1.json", {"type": "register_group"})
    event = assert_quarantined(settings, log, folder, "1.json", "invalid or reserved")
    assert event.kind == "tasks"
    assert not (settings.ipc_dir / folder / "processing").exists()


def test_a_second_refusal_of_the_same_name_keeps_the_first(settings, log):
    tasks = make_group(settings, "family") / "tasks"
    watching = IpcWatcher(settings, log)
    settled = time.time() - 2 * ipc.SETTLE_S  # written a while ago: broken for good, not still being written
    (tasks / "1.json").write_text("not json")
    os.utime(tasks / "1.json", (settled, settled))
    watching.scan()
    (tasks / "1.json").write_text("[]")
    os.utime(tasks / "1.json", (settled, settled))
    watching.scan()
    errors = settings.ipc_dir / "errors"
    assert (errors / "family-1.json").read_text() == "not json"
    assert (errors / "family-1.json.1").read_text() == "[]"
    assert "not a JSON object" in (errors / "family-1.json.1.reason").read_text()
    assert [e.quarantined_to for e in rejected(log)] == ["data/ipc/errors/family-1.json",
                                                         "data/ipc/errors/family-1.json.1"]


def test_a_file_name_the_agent_uses_again_is_a_new_request(watcher, settings, log):
    messages = settings.ipc_dir / "family" / "messages"
    drop(messages, "reply.json", {"n": 1})
    wait_for(lambda: len(received(log)) == 1)
    wait_for(lambda: not (messages / "reply.json").exists())
    drop(messages, "reply.json", {"n": 2})
    wait_for(lambda: len(received(log)) == 2)
    settle(watcher)
    assert [e.payload for e in received(log)] == [{"n": 1}, {"n": 2}] and rejected(log) == []


def test_a_file_written_in_place_in_several_steps_is_recorded_whole_not_quarantined(watcher, settings, log):
    path = settings.ipc_dir / "family" / "tasks" / "slow.json"
    with path.open("w") as handle:  # no temp file and rename: the watcher sees it half written
        handle.write('{"type": "schedule_task", ')
        handle.flush()
        time.sleep(0.6)
        handle.write('"prompt": "water the plants"}')
    [event] = wait_for(lambda: received(log), timeout=TIMEOUT_S)
    assert event.payload == {"type": "schedule_task", "prompt": "water the plants"}
    assert rejected(log) == []


def test_a_broken_file_is_still_quarantined_once_it_has_settled(watcher, settings, log):
    path = settings.ipc_dir / "family" / "tasks" / "broken.json"
    path.write_text('{"type": "schedule_task", ')
    started = time.monotonic()
    [event] = wait_for(lambda: rejected(log), timeout=TIMEOUT_S)
    assert "not valid JSON" in event.reason and time.monotonic() - started >= ipc.SETTLE_S * 0.9


def test_a_broken_file_dated_in_the_future_is_quarantined_not_looked_at_forever(watcher, settings, log):
    """An agent can set any modification time; one far ahead must not keep the file 'still being written'."""
    path = settings.ipc_dir / "family" / "tasks" / "future.json"
    path.write_text('{"type": "schedule_task", ')
    ahead = time.time() + 3600
    os.utime(path, (ahead, ahead))
    [event] = wait_for(lambda: rejected(log), timeout=TIMEOUT_S)
    assert "not valid JSON" in event.reason and not path.exists()
