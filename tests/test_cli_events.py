"""`nanoclaw events` and `nanoclaw replay` as a person and a script use them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from datetime import datetime, timezone

import pytest

from events import types as t
from nanoclaw.cli import main
from nanoclaw.cli_events import UsageError, parse_since
from rules.groups import register_group


def _message(n: int, chat: str) -> t.MessageReceived:
    return t.MessageReceived(chat_jid=chat, message_id=str(n), sender="u", sender_name="Alice",
                             content=f"hello {n}", timestamp="2026-01-01T00:00:00.000Z")


@pytest.fixture
def populated(settings, log):
    register_group(log, settings, jid="local:me", name="Me", folder="main", is_main=True)
    for n in range(30):
        log.append(_message(n, "local:me" if n % 2 else "local:other"))
    log.append(t.SessionUpdated(folder="main", session_id="s1"))
    return log


def _json_lines(capsys) -> list[dict]:
    return [json.loads(line) for line in capsys.readouterr().out.splitlines()]


def test_without_filters_it_shows_the_newest_events_oldest_first(populated, capsys):
    assert main(["events", "--json", "--limit", "5"]) == 0
    assert [e["seq"] for e in _json_lines(capsys)] == [28, 29, 30, 31, 32]


def test_filters_by_type_and_group(populated, capsys):
    assert main(["events", "--json", "--group", "main", "--limit", "100"]) == 0
    rows = _json_lines(capsys)
    assert {r["stream"] for r in rows} == {"local:me", "main"}
    assert len(rows) == 1 + 15 + 1
    assert main(["events", "--json", "--type", "SessionUpdated"]) == 0
    assert [(r["type"], r["data"]["session_id"]) for r in _json_lines(capsys)] == [("SessionUpdated", "s1")]


def test_after_seq_and_limit_page_forward(populated, capsys):
    assert main(["events", "--json", "--after-seq", "10", "--limit", "3"]) == 0
    assert [e["seq"] for e in _json_lines(capsys)] == [11, 12, 13]


def test_since_selects_by_time(populated, capsys):
    assert main(["events", "--json", "--since", "1h", "--limit", "1000"]) == 0
    assert len(_json_lines(capsys)) == 32
    assert main(["events", "--json", "--since", "2999-01-01"]) == 0
    assert _json_lines(capsys) == []


def test_the_table_is_readable(populated, capsys):
    assert main(["events", "--limit", "2"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["SEQ", "AT", "TYPE", "STREAM", "WHAT"]
    assert "SessionUpdated" in lines[2] and "session_id=s1" in lines[2]
    assert "Alice: hello 29" in lines[1]


def test_an_unknown_type_is_a_usage_error(populated, capsys):
    assert main(["events", "--type", "Nope"]) == 2
    assert "unknown event type 'Nope'" in capsys.readouterr().err


def test_parse_since_understands_relative_and_local_times():
    now = datetime(2026, 11, 25, 12, 0, tzinfo=timezone.utc)
    assert parse_since("90m", "UTC", now) == "2026-11-25T10:30:00.000Z"
    assert parse_since("2026-11-25T09:00", "Europe/Berlin", now) == "2026-11-25T08:00:00.000Z"
    with pytest.raises(UsageError):
        parse_since("yesterday", "UTC", now)


def test_replay_check_and_rebuild(populated, capsys):
    assert main(["replay", "--check"]) == 0
    assert "projections match the log (32 events)" in capsys.readouterr().out
    populated._writer.execute("DELETE FROM sessions")
    assert main(["replay", "--check"]) == 1
    assert "sessions: 0 rows only live, 1 rows only in the rebuild" in capsys.readouterr().err
    assert main(["replay", "--rebuild"]) == 0
    assert "projections match the log" in capsys.readouterr().out


def test_replay_without_flags_is_a_dry_run_listing_pending_work(populated, capsys):
    populated.set_checkpoint("delivery", 20)
    assert main(["replay"]) == 0
    out = capsys.readouterr().out
    assert "delivery" in out and "12" in out and "dry run" in out
    assert populated.checkpoint("delivery") == 20


def test_follow_prints_events_appended_by_another_process(populated, settings):
    proc = subprocess.Popen([sys.executable, "-m", "nanoclaw.cli", "events", "--follow", "--json", "--limit", "1"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=os.environ.copy())
    try:
        first = json.loads(proc.stdout.readline())
        assert first["seq"] == 32
        time.sleep(0.3)
        populated.append(t.SessionCleared(folder="main", reason="by the test"))
        line = proc.stdout.readline()
        assert json.loads(line)["data"]["reason"] == "by the test"
    finally:
        proc.terminate()
        proc.wait(timeout=5)
    assert proc.returncode == 0, proc.stderr.read()
