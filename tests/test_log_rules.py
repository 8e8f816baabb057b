"""Events that break a rule of the log are refused with their seq named, when appended and when folded."""

from __future__ import annotations

import sqlite3

import pytest

from events import types as t
from events.rules import InvariantError
from nanoclaw import cli
from rules.groups import register_group


def group(folder: str, jid: str, *, main: bool = False) -> t.GroupRegistered:
    return t.GroupRegistered(jid=jid, name=folder, folder=folder, trigger="@Andy", is_main=main)


@pytest.mark.parametrize("event, reason", [
    (group("second", "local:two", main=True), "a second main group (second); main is the main group"),
    (group("../up", "local:up"), "group folder '../up'"),
    (group("errors", "local:err"), "the name is reserved"),
    (group("main", "local:other"), "folder main is already used by local:me"),
    (group("again", "local:me"), "local:me is registered already"),
])
def test_an_append_that_breaks_a_rule_is_refused_and_nothing_is_recorded(settings, log, event, reason):
    register_group(log, settings, jid="local:me", name="Me", folder="main", is_main=True)
    before = log.last_seq()
    with pytest.raises(InvariantError, match=f"event seq {before + 1} breaks a rule of the log") as refused:
        log.append(event)
    assert reason in str(refused.value)
    assert log.last_seq() == before and len(log.query("SELECT * FROM groups")) == 1


def test_a_stored_event_that_breaks_a_rule_names_its_seq_when_the_log_is_checked(settings, log, capsys):
    register_group(log, settings, jid="local:me", name="Me", folder="main", is_main=True)
    log.close()
    raw = sqlite3.connect(settings.db_path)  # as a script or an old bug might have written it
    raw.execute("INSERT INTO events (at, type, stream, data) VALUES (?, ?, ?, ?)",
                ("2026-12-01T00:00:00.000Z", "GroupRegistered", "local:two", t.encode(group("two", "local:two", main=True))))
    raw.commit()
    seq = raw.execute("SELECT max(seq) FROM events").fetchone()[0]
    raw.close()
    assert cli.main(["replay", "--check"]) == 1
    assert f"event seq {seq} breaks a rule of the log: a second main group" in capsys.readouterr().err
