"""A reply produced while the disk is full is not lost: the turn fails, and the messages run again later.

The install's `store/` is a tiny tmpfs of its own; the test fills it while
the agent thinks, so recording the agent's output fails for real (SQLite:
database or disk is full). Once space returns, recovery finishes the run
and the messages are answered, once.
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import threading
import time

import pytest
from loguru import logger

from base.config import load_settings
from events import EventLog, types as t
from jobs.message_run import MessageRun
from jobs.recovery import reconcile
from router.channels.base import InboundMessage
from router.inbound import Inbound
from rules.allowlist import AllowlistFile
from rules.groups import register_group
from tests.observe import of_type

pytestmark = pytest.mark.docker
TMPFS = "size=6m,mode=0755"


@pytest.fixture
def small_store(root, agent_image, monkeypatch):
    if os.geteuid() != 0:
        pytest.fail("mounting a tmpfs needs root: run the suite as root, as scripts/test.sh and CI do")
    for key, value in dict(CONTAINER_IMAGE=agent_image, AGENT_PROVIDER="scripted", IDLE_TIMEOUT="1000").items():
        monkeypatch.setenv(key, value)
    settings = load_settings()
    settings.store_dir.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", TMPFS, "tmpfs", str(settings.store_dir)], check=True)
    try:
        settings.ensure_dirs()
        yield settings
    finally:
        subprocess.run(["umount", "-l", str(settings.store_dir)], check=False)


def fill(path) -> None:
    """Write until the file system is full."""
    with open(path, "wb") as handle:
        try:
            while True:
                handle.write(b"\0" * 65536)
                handle.flush()
        except OSError:
            pass


def test_a_reply_made_while_the_disk_is_full_is_answered_again_once_space_returns(small_store, monkeypatch):
    settings = small_store
    scripts = settings.root / "scripts.json"
    scripts.write_text('{"main": {"turns": [[{"sleep": 1.5}, {"reply_size": 300000}]]}}')
    monkeypatch.setenv("SCRIPTED_AGENT_FILE", str(scripts))
    settings = load_settings()
    log = EventLog(settings.db_path)
    register_group(log, settings, jid="local:me", name="Me", folder="main", is_main=True)
    Inbound(log, AllowlistFile(settings.sender_allowlist_path)).message(
        "test", InboundMessage(chat_jid="local:me", message_id="m1", sender="alice", sender_name="Alice",
                               content="a long answer please", timestamp="2026-01-01T10:00:00.000Z"))
    filler = settings.store_dir / "filler"
    threading.Timer(0.8, fill, args=(filler,)).start()  # while the agent thinks
    lines: list[str] = []
    sink = logger.add(lines.append, level="ERROR", format="{message}")
    try:
        with pytest.raises(sqlite3.OperationalError, match="disk is full"):
            MessageRun(settings, log).run("main")  # neither the output nor the run's end can be written
    finally:
        logger.remove(sink)
    assert any("could not be recorded" in line and "will run again" in line for line in lines), lines
    assert of_type(log, t.OutboundQueued) == [] and of_type(log, t.AgentOutput) == []  # nothing half-recorded
    filler.unlink()  # space returns
    time.sleep(0.2)
    reconcile(settings, log)  # the 60 s pass: the run is finished as interrupted, its messages asked for again
    [interrupted] = of_type(log, t.AgentRunFinished)
    assert (interrupted.status, interrupted.cursor_rollback_to) == ("interrupted", 0)
    scripts.write_text('{"main": {"turns": [[{"reply": "here it is"}]]}}')
    assert MessageRun(load_settings(), log).run("main") == "success: ok"
    assert [o.text for o in of_type(log, t.OutboundQueued) if o.origin == "agent"] == ["here it is"]
    log.close()
