"""File names an agent can give its IPC files that a host reading them might trip over.

The agent names its files freely: a newline, bytes that are not UTF-8, a
name that looks like a path or a log line. The real watcher must leave each
such file out of the log, and out of the journal but as one printable line
(a newline in a name forged a log line), without stopping: the next good
file, of this group or another, is still recorded.
"""

from __future__ import annotations

import json
import os

import pytest

from router.ipc import IpcWatcher
from tests.test_ipc_watcher import received, rejected
from tests.waiting import wait_for

pytestmark = pytest.mark.filterwarnings("ignore:Callback with id:RuntimeWarning")

ODD_NAMES = [b"a\nb.json", b"\xff\xfe.json", b"line\r\n2026-01-01 | INFO | forged.json", b"-rf .json",
             b"\x1b[2J.json", b" .json", b"..json"]


@pytest.fixture
def watcher(settings, log):
    for folder in ("family", "work"):
        for sub in ("messages", "tasks", "input"):
            (settings.ipc_dir / folder / sub).mkdir(parents=True, exist_ok=True)
    watching = IpcWatcher(settings, log)
    watching.start()
    yield watching
    watching.stop()


@pytest.mark.parametrize("name", ODD_NAMES, ids=repr)
def test_an_oddly_named_file_is_shown_on_one_printable_line_and_the_next_file_is_still_recorded(
        watcher, settings, log, name):
    messages = os.fsencode(settings.ipc_dir / "family" / "messages")
    payload = json.dumps({"type": "message", "chatJid": "local:family", "text": "odd"}).encode()
    with open(os.path.join(messages, name), "wb") as odd:
        odd.write(payload)
    good = settings.ipc_dir / "work" / "messages" / "2.json"
    good.write_text(json.dumps({"type": "message", "chatJid": "local:work", "text": "good"}))
    wait_for(lambda: any(e.folder == "work" for e in received(log)), 10, "the good file to be recorded")
    watcher.scan()
    for event in [*received(log), *rejected(log)]:
        assert event.file.isprintable() and event.file.encode("utf-8")
    odd_recorded = [e for e in received(log) if e.folder == "family"]
    assert odd_recorded == [] or name.decode("utf-8", "replace").isprintable()
