"""`nanoclaw service`: the systemctl, loginctl and journalctl calls, and the no-systemd path.

systemd cannot be PID 1 on this machine, so the command sequence is checked
against stand-ins for the three system binaries, placed first on PATH: each
records its argv (and whether the unit file existed at that moment) and
answers the way systemd does, keeping the unit's state between calls. This is
a stand-in for a system binary, not for our code: everything of ours runs for
real. The no-systemd path runs end to end through the `nanoclaw` CLI in a
subprocess, on this machine's real /proc/1/comm.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from nanoclaw.service_manager import ServiceError, Systemd, SystemdMissing, current_user
from nanoclaw.systemd_unit import nanoclaw_command, render_unit, unit_file, unit_paths

UNIT = "nanoclaw.service"

FAKE_TOOL = r'''#!{python}
import json, os, sys
from pathlib import Path

state_dir = Path(os.environ["FAKE_SYSTEMD_DIR"])
name, args = Path(sys.argv[0]).name, sys.argv[1:]
unit = Path(os.environ["HOME"]) / ".config" / "systemd" / "user" / "nanoclaw.service"
with open(state_dir / "calls.jsonl", "a") as calls:
    calls.write(json.dumps({{"argv": [name, *args], "unit_exists": unit.exists()}}) + "\n")
failures = json.loads((state_dir / "fail.json").read_text()) if (state_dir / "fail.json").exists() else {{}}
if " ".join([name, *args]) in failures:
    print(failures[" ".join([name, *args])], file=sys.stderr)
    sys.exit(1)
state_file = state_dir / "state"
state = state_file.read_text() if state_file.exists() else "inactive"
if name == "systemctl":
    verb = args[1] if args[:1] == ["--user"] else "needs --user"
    if verb == "is-active":
        print(state)
        sys.exit(0 if state == "active" else 3)
    if verb == "status":
        print(f"nanoclaw.service - NanoClaw Pro\n   Active: {{state}}")
        sys.exit(0 if state == "active" else 3)
    if verb in ("start", "restart") or args[1:3] == ["enable", "--now"]:
        state_file.write_text(os.environ.get("FAKE_STARTS_AS", "active"))
    elif verb == "stop" or args[1:3] == ["disable", "--now"]:
        state_file.write_text("inactive")
    elif verb == "show-environment":
        print("HOME=" + os.environ["HOME"])
    elif verb != "daemon-reload":
        print(f"fake systemctl: unexpected {{args}}", file=sys.stderr)
        sys.exit(1)
elif name == "loginctl":
    print("Linger=" + os.environ.get("FAKE_LINGER", "no"))
elif name == "journalctl":
    print("Nov 30 12:00:00 vm nanoclaw[42]: router live")
'''


class FakeSystemd:
    """The state folder of the stand-in binaries: what they were asked, what they should say."""

    def __init__(self, folder: Path):
        self.folder = folder

    def calls(self) -> list[list[str]]:
        path = self.folder / "calls.jsonl"
        return [json.loads(line)["argv"] for line in path.read_text().splitlines()] if path.exists() else []

    def call_records(self) -> list[dict]:
        return [json.loads(line) for line in (self.folder / "calls.jsonl").read_text().splitlines()]

    def fail(self, command: str, message: str) -> None:
        (self.folder / "fail.json").write_text(json.dumps({command: message}))

    def set_state(self, state: str) -> None:
        (self.folder / "state").write_text(state)

    def forget_calls(self) -> None:
        (self.folder / "calls.jsonl").unlink(missing_ok=True)


@pytest.fixture
def fake_systemd(tmp_path, monkeypatch) -> FakeSystemd:
    bin_dir = tmp_path / "fake-bin"
    state = tmp_path / "fake-state"
    bin_dir.mkdir()
    state.mkdir()
    for tool in ("systemctl", "loginctl", "journalctl"):
        path = bin_dir / tool
        path.write_text(FAKE_TOOL.format(python=sys.executable))
        path.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_SYSTEMD_DIR", str(state))
    return FakeSystemd(state)


@pytest.fixture
def manager(settings, tmp_path, fake_systemd):
    """The service manager of this install, on a machine whose PID 1 is systemd."""
    comm = tmp_path / "pid1-comm"
    comm.write_text("systemd\n")
    lines: list[str] = []
    made = Systemd(settings, pid1_comm=comm, out=lines.append)
    made.lines = lines
    return made


def test_install_writes_the_unit_then_reloads_enables_and_starts_it(manager, settings, fake_systemd):
    assert manager.install() == "active"
    assert fake_systemd.calls() == [
        ["systemctl", "--user", "show-environment"],
        ["systemctl", "--user", "daemon-reload"],
        ["systemctl", "--user", "enable", "--now", UNIT],
        ["systemctl", "--user", "is-active", UNIT],
        ["loginctl", "show-user", current_user(), "-p", "Linger"],
    ]
    assert fake_systemd.call_records()[1]["unit_exists"]  # written before systemd is told to reload
    path = settings.home / ".config" / "systemd" / "user" / UNIT
    assert path == unit_file(settings.home)
    assert path.read_text() == render_unit(unit_paths(settings))
    assert oct(path.stat().st_mode & 0o777) == "0o644"


def test_with_lingering_off_install_gives_the_one_command_that_keeps_it_running(manager, monkeypatch):
    monkeypatch.setenv("FAKE_LINGER", "no")
    manager.install()
    assert f"loginctl enable-linger {current_user()}" in "\n".join(manager.lines)


def test_with_lingering_on_install_says_it_outlives_the_session(manager, monkeypatch):
    monkeypatch.setenv("FAKE_LINGER", "yes")
    manager.install()
    text = "\n".join(manager.lines)
    assert "keeps running after you log out" in text and "enable-linger" not in text


def test_installing_again_restarts_a_running_service_on_the_new_unit(manager, settings, fake_systemd):
    manager.install()
    unit_file(settings.home).write_text("# an old unit\n")
    fake_systemd.forget_calls()
    manager.install()
    assert [call[2:] for call in fake_systemd.calls() if call[0] == "systemctl"] == [
        ["show-environment"], ["is-active", UNIT], ["daemon-reload"], ["enable", "--now", UNIT],
        ["restart", UNIT], ["is-active", UNIT],
    ]
    assert unit_file(settings.home).read_text() == render_unit(unit_paths(settings))


def test_a_failing_systemctl_is_an_error_naming_the_command_and_what_it_said(manager, fake_systemd):
    fake_systemd.fail(f"systemctl --user enable --now {UNIT}", "Failed to enable unit: Access denied")
    with pytest.raises(ServiceError, match=rf"`systemctl --user enable --now {UNIT}` failed \(exit 1\): "
                                           "Failed to enable unit: Access denied"):
        manager.install()


def test_a_user_manager_out_of_reach_counts_as_no_systemd(manager, fake_systemd, settings):
    fake_systemd.fail("systemctl --user show-environment", "Failed to connect to bus: No medium found")
    with pytest.raises(SystemdMissing, match="Failed to connect to bus"):
        manager.install()
    assert not unit_file(settings.home).exists()


def test_start_stop_and_restart_before_install_say_to_install_first(manager, fake_systemd):
    for verb in ("start", "stop", "restart"):
        with pytest.raises(ServiceError, match="run `nanoclaw service install`"):
            manager.control(verb)
    assert all(call[2:] == ["show-environment"] for call in fake_systemd.calls())


def test_stop_start_and_restart_drive_the_installed_unit(manager, fake_systemd):
    manager.install()
    fake_systemd.forget_calls()
    assert manager.control("stop") == "inactive"
    assert manager.control("start") == "active"
    assert manager.control("restart") == "active"
    verbs = [call[2:] for call in fake_systemd.calls() if call[2:] != ["show-environment"]]
    assert verbs == [["stop", UNIT], ["is-active", UNIT], ["start", UNIT], ["is-active", UNIT],
                     ["restart", UNIT], ["is-active", UNIT]]


def test_uninstall_disables_removes_the_unit_and_reloads(manager, settings, fake_systemd):
    manager.install()
    fake_systemd.forget_calls()
    assert manager.uninstall() is None
    assert [call[2:] for call in fake_systemd.calls()] == [
        ["show-environment"], ["disable", "--now", UNIT], ["daemon-reload"]]
    assert not unit_file(settings.home).exists()


def test_status_is_systemds_report_and_its_exit_code(manager, fake_systemd, capfd):
    manager.install()
    assert manager.status() == 0
    fake_systemd.set_state("failed")
    assert manager.status() == 3
    assert "Active: failed" in capfd.readouterr().out
    assert ["systemctl", "--user", "status", UNIT, "--no-pager"] in fake_systemd.calls()


def test_logs_reads_the_user_journal_with_follow_and_line_count_passed_on(manager, fake_systemd, capfd):
    assert manager.logs() == 0
    assert manager.logs(follow=True, lines=20) == 0
    journal = [call for call in fake_systemd.calls() if call[0] == "journalctl"]
    assert journal == [["journalctl", "--user", "-u", UNIT, "--no-pager"],
                       ["journalctl", "--user", "-u", UNIT, "--no-pager", "-f", "-n", "20"]]
    assert "router live" in capfd.readouterr().out


# --- through the CLI, on this machine (no systemd as PID 1) ---------------------------------------


@pytest.fixture
def cli(root, tmp_path, fake_systemd):
    """`nanoclaw service ...` in a subprocess for an install in a folder with a space in its name.

    The stand-in systemctl cannot reach a user manager either, so the command
    takes the no-systemd path on a machine whose PID 1 is systemd as well.
    """
    fake_systemd.fail("systemctl --user show-environment", "Failed to connect to bus: No medium found")
    install = tmp_path / "my install"
    install.mkdir()
    env = {**os.environ, "NANOCLAW_ROOT": str(install)}

    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "nanoclaw.cli", "service", *args], env=env,
                              capture_output=True, text=True, timeout=120)

    run.root = install
    return run


def _says_no_systemd_and_how_to_run_by_hand(done: subprocess.CompletedProcess, root: Path) -> None:
    assert "cannot run as a systemd service" in done.stderr or "there was no service to stop" in done.stderr
    program = shlex.join([*nanoclaw_command(), "run"])
    assert f"cd {shlex.quote(str(root))} && {program}" in done.stderr
    assert f"nohup {program} >/dev/null 2>&1 &" in done.stderr
    assert str(root / "logs" / "nanoclaw.log") in done.stderr
    assert os.access(nanoclaw_command()[0], os.X_OK)


@pytest.mark.parametrize("command", [["install"], ["start"], ["restart"], ["stop"], ["status"], ["logs", "-n", "5"]])
def test_without_systemd_each_command_says_so_and_how_to_run_in_the_foreground(cli, command, fake_systemd):
    done = cli(*command)
    assert done.returncode == 1, done.stderr
    _says_no_systemd_and_how_to_run_by_hand(done, cli.root)
    assert all(call[:3] == ["systemctl", "--user", "show-environment"] for call in fake_systemd.calls())


def test_without_systemd_install_writes_no_unit(cli, settings):
    assert cli("install").returncode == 1
    assert not unit_file(settings.home).exists()


def test_without_systemd_uninstall_removes_a_left_over_unit_and_succeeds(cli, settings):
    path = unit_file(settings.home)
    path.parent.mkdir(parents=True)
    path.write_text("[Service]\n")
    done = cli("uninstall")
    assert done.returncode == 0, done.stderr
    assert not path.exists() and f"removed {path}" in done.stdout
    _says_no_systemd_and_how_to_run_by_hand(done, cli.root)


def test_logs_refuses_a_line_count_that_is_not_a_number(cli):
    done = cli("logs", "-n", "many")
    assert done.returncode == 2 and "'many' is not a whole number" in done.stderr


def test_install_sh_without_systemd_prints_how_to_run_in_the_foreground(fake_systemd):
    """scripts/install.sh's start_service, alone: no systemd here (nor a user manager), so no install."""
    fake_systemd.fail("systemctl --user show-environment", "Failed to connect to bus: No medium found")
    repo = Path(__file__).resolve().parents[1]
    script = 'eval "$(sed -n "/^start_service() {/,/^}/p" scripts/install.sh)" && start_service'
    done = subprocess.run(["bash", "-c", script], cwd=repo, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "systemd is not running here" in done.stdout and ".venv/bin/nanoclaw run" in done.stdout
    assert "nohup .venv/bin/nanoclaw run" in done.stdout
    assert not any(call[0] == "systemctl" and call[2:] != ["show-environment"] for call in fake_systemd.calls())
