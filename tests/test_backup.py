"""A damaged event log stops everything early and clearly; backups are checked copies; restore puts one back."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading

import pytest

from base.config import load_settings
from events import EventLog, types as t
from events.backup import BackupError, make_backup, verify
from events.health import log_problem
from jobs.worker import run_worker
from nanoclaw import cli
from rules.groups import register_group
from tests.router_process import RouterProcess


def fill(log: EventLog, count: int) -> None:
    log.append_many([t.MessageReceived(chat_jid="local:me", message_id=f"m{i}", sender="a", sender_name="A",
                                       content="hello " * 40, timestamp="2026-01-01T00:00:00.000Z")
                     for i in range(count)])


def damage(path, at_fraction: float = 0.5) -> None:
    with open(path, "r+b") as handle:
        handle.seek(int(os.path.getsize(path) * at_fraction) // 4096 * 4096)
        handle.write(os.urandom(3 * 4096))


def test_a_missing_file_is_a_fresh_install_but_an_empty_one_or_garbage_is_not(tmp_path, log, settings):
    assert log_problem(tmp_path / "nothing.db") is None
    (tmp_path / "empty.db").write_bytes(b"")
    assert "is empty (0 bytes)" in log_problem(tmp_path / "empty.db")
    (tmp_path / "text.db").write_text("not a database at all")
    assert "is not an SQLite database" in log_problem(tmp_path / "text.db")
    fill(log, 5000)
    log.close()
    assert log_problem(settings.db_path) is None
    damage(settings.db_path)
    assert log_problem(settings.db_path).startswith("is damaged:")


@pytest.mark.docker
def test_the_service_refuses_a_damaged_log_with_the_configuration_error_code_and_changes_nothing(settings):
    settings.db_path.write_bytes(b"")
    proc = subprocess.run([sys.executable, "-m", "nanoclaw.cli", "run"], capture_output=True, text=True,
                          cwd=settings.root, timeout=60)
    assert proc.returncode == 2  # the unit's RestartPreventExitStatus: no restart loop
    assert f"the event log {settings.db_path} is empty (0 bytes)" in proc.stderr and "nanoclaw restore" in proc.stderr
    assert settings.db_path.stat().st_size == 0


def test_status_doctor_and_the_worker_name_a_damaged_log(settings, log, capsys):
    fill(log, 5000)
    log.close()
    damage(settings.db_path)
    assert cli.main(["status"]) == 1
    assert "event log   DAMAGED:" in capsys.readouterr().err
    assert cli.main(["doctor", "--json"]) == 1
    checks = {c["name"]: c for c in json.loads(capsys.readouterr().out)["checks"]}
    assert checks["event log"]["level"] == "fail" and "is damaged" in checks["event log"]["detail"]
    assert run_worker(load_settings()) == 2


def test_a_backup_made_while_the_log_is_written_is_a_good_copy(settings, log, tmp_path):
    register_group(log, settings, jid="local:me", name="Me", folder="main", is_main=True)
    fill(log, 2000)
    stop = threading.Event()

    def write() -> None:
        while not stop.is_set():
            fill(log, 50)

    writer = threading.Thread(target=write)
    writer.start()
    try:
        made = make_backup(settings.db_path, tmp_path / "copy.db")
    finally:
        stop.set()
        writer.join()
    assert made.events >= 2001
    assert verify(tmp_path / "copy.db").events == made.events


def test_a_damaged_file_is_not_a_good_backup_and_restore_refuses_it(settings, log, tmp_path, capsys):
    fill(log, 5000)
    bad = tmp_path / "bad.db"
    make_backup(settings.db_path, bad)
    damage(bad)
    with pytest.raises(BackupError, match="is damaged"):
        verify(bad)
    assert cli.main(["restore", str(bad)]) == 1
    assert "is damaged" in capsys.readouterr().err
    assert log.last_seq() == 5000  # the live log was not touched


def test_restore_puts_the_backup_in_place_and_keeps_the_replaced_file(settings, log, tmp_path, capsys):
    fill(log, 100)
    assert cli.main(["backup", "--to", str(tmp_path / "good.db")]) == 0
    assert "backed up 100 event(s)" in capsys.readouterr().out
    fill(log, 10)
    log.close()
    damage(settings.db_path, 0.0)  # the header itself
    assert cli.main(["restore", str(tmp_path / "good.db")]) == 0
    out = capsys.readouterr().out
    kept = [p for p in settings.store_dir.iterdir() if p.name.startswith("messages.db.replaced-")]
    assert kept and "kept as" in out
    assert log_problem(settings.db_path) is None and EventLog(settings.db_path).last_seq() == 100


@pytest.mark.docker
def test_restore_refuses_while_the_service_runs(settings, log, tmp_path, capsys, agent_image, monkeypatch):
    monkeypatch.setenv("CONTAINER_IMAGE", agent_image)
    fill(log, 10)
    make_backup(settings.db_path, tmp_path / "good.db")
    with RouterProcess(settings).wait_ready() as _:
        assert cli.main(["restore", str(tmp_path / "good.db")]) == 1
    assert "stop it first" in capsys.readouterr().err


def test_a_truncated_log_is_damaged(settings, log):
    fill(log, 5000)
    log.close()
    with open(settings.db_path, "r+b") as handle:
        handle.truncate(os.path.getsize(settings.db_path) // 2)
    assert log_problem(settings.db_path).startswith("is damaged")


def test_a_read_only_store_is_named_not_a_traceback(settings, capsys):
    if os.geteuid() != 0:
        pytest.skip("mounting a read-only tmpfs needs root (CI runs as root)")
    subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(settings.store_dir)], check=True)
    try:
        assert "is read-only" in log_problem(settings.db_path)
        assert cli.main(["status"]) == 1
        assert "read-only" in capsys.readouterr().err
    finally:
        subprocess.run(["umount", "-l", str(settings.store_dir)], check=False)
