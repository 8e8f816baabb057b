"""The systemd user unit: rendered from systemd/nanoclaw.service with this install's paths.

systemd cannot run as PID 1 here, so the unit is checked as text and with
`systemd-analyze --user verify` (Debian's systemd package, installed by
scripts/test.sh), which parses it as the user manager would, checks that the
program ExecStart names exists, and warns about every setting it ignores.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from jobs.worker import SHUTDOWN_TIMEOUT_S
from nanoclaw.service import WORKER_STOP_TIMEOUT_S
from nanoclaw.systemd_unit import (TEMPLATE_PATH, UnitError, UnitPaths, nanoclaw_command, render_unit,
                                   unit_paths)

STOP_MARGIN_S = 15


def parse_unit(text: str) -> dict[str, dict[str, list[str]]]:
    """Sections -> key -> values in order, as systemd reads `Key=value` lines."""
    sections: dict[str, dict[str, list[str]]] = {}
    current = None
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            current = sections.setdefault(line.strip("[]"), {})
            continue
        key, value = line.split("=", 1)
        current.setdefault(key, []).append(value)
    return sections


def verify(unit_text: str, tmp_path: Path) -> subprocess.CompletedProcess:
    """`systemd-analyze --user verify` on the text, saved as nanoclaw.service."""
    analyze = shutil.which("systemd-analyze") or "/usr/bin/systemd-analyze"
    assert os.access(analyze, os.X_OK), "systemd-analyze is missing: run scripts/test.sh (ensure_test_tools)"
    folder = tmp_path / "verify"
    runtime = tmp_path / "xdg-runtime"
    folder.mkdir()
    runtime.mkdir(mode=0o700)
    unit = folder / "nanoclaw.service"
    unit.write_text(unit_text)
    env = {**os.environ, "XDG_RUNTIME_DIR": str(runtime), "SYSTEMD_LOG_LEVEL": "notice"}
    return subprocess.run([analyze, "--user", "verify", str(unit)], capture_output=True, text=True, env=env,
                          timeout=60)


def fake_install(tmp_path: Path, name: str, home: str = "home dir") -> UnitPaths:
    """An install root called `name` with an executable `nanoclaw` in its venv."""
    root = tmp_path / name
    script = root / ".venv" / "bin" / "nanoclaw"
    script.parent.mkdir(parents=True)
    script.write_text("#!/bin/sh\nexit 0\n")
    script.chmod(0o755)
    return UnitPaths(root=root, home=tmp_path / home, command=(str(script),))


def test_the_unit_runs_this_installs_nanoclaw_from_its_root(settings):
    unit = parse_unit(render_unit(unit_paths(settings, environ={})))
    service = unit["Service"]
    script = Path(nanoclaw_command()[0])
    assert service["ExecStart"] == [f'"{script}" "run"']
    assert script.name == "nanoclaw" and script.parent.name == "bin" and os.access(script, os.X_OK)
    assert service["WorkingDirectory"] == [str(settings.root)]
    environment = service["Environment"]
    assert f'"NANOCLAW_ROOT={settings.root}"' in environment and f'"HOME={settings.home}"' in environment
    path = next(e for e in environment if e.startswith('"PATH='))[len('"PATH='):-1].split(":")
    assert path[0] == str(script.parent)
    assert {"/usr/local/bin", "/usr/bin", "/usr/sbin", "/bin"} <= set(path)  # docker, dockerd, podman
    assert unit["Install"]["WantedBy"] == ["default.target"]


def test_the_unit_restarts_the_service_and_logs_to_the_journal(settings):
    service = parse_unit(render_unit(unit_paths(settings)))["Service"]
    assert service["Type"] == ["simple"]
    assert service["Restart"] == ["always"] and int(service["RestartSec"][0]) >= 1
    assert service["RestartPreventExitStatus"] == ["2"]  # a configuration error waits for a person
    assert service["StandardOutput"] == ["journal"] and service["StandardError"] == ["journal"]


def test_stopping_waits_longer_than_the_whole_shutdown_grace(settings):
    service = parse_unit(render_unit(unit_paths(settings)))["Service"]
    assert service["KillMode"] == ["mixed"] and service["KillSignal"] == ["SIGTERM"]  # see test_service_stop.py
    stop_timeout_s = int(service["TimeoutStopSec"][0])
    assert stop_timeout_s >= WORKER_STOP_TIMEOUT_S + SHUTDOWN_TIMEOUT_S + STOP_MARGIN_S


def test_systemd_accepts_the_unit_of_this_install(settings, tmp_path):
    done = verify(render_unit(unit_paths(settings)), tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stderr.strip() == ""  # not even an ignored setting


def test_paths_with_spaces_dollars_percents_and_quotes_reach_systemd_intact(tmp_path):
    paths = fake_install(tmp_path, "my install $HOME 100%d", home='home "dir" \\ 5%')
    text = render_unit(paths)
    service = parse_unit(text)["Service"]
    root = f"{tmp_path}/my install $HOME 100%%d"
    assert service["ExecStart"] == [f'"{root}/.venv/bin/nanoclaw" "run"']  # no expansion in the program path
    assert service["WorkingDirectory"] == [root]
    assert f'"NANOCLAW_ROOT={root}"' in service["Environment"]
    assert rf'"HOME={tmp_path}/home \"dir\" \\ 5%%"' in service["Environment"]
    done = verify(text, tmp_path)
    assert done.returncode == 0 and done.stderr.strip() == "", done.stderr  # the program was found


def test_an_argument_with_a_dollar_is_not_expanded(tmp_path):
    paths = UnitPaths(root=tmp_path, home=tmp_path, command=("/usr/bin/python3", "-m", "x$y"))
    assert parse_unit(render_unit(paths))["Service"]["ExecStart"] == ['"/usr/bin/python3" "-m" "x$$y" "run"']


def test_an_install_path_systemd_cannot_start_is_refused_with_a_clear_error(tmp_path):
    paths = fake_install(tmp_path, 'my "install"')
    with pytest.raises(UnitError, match="folder without them"):
        render_unit(paths)


def test_verify_catches_a_path_with_spaces_left_unquoted(tmp_path):
    """The check above can fail: the same unit with naive substitution is refused."""
    paths = fake_install(tmp_path, "my install")
    naive = render_unit(paths).replace(f'"{paths.command[0]}"', paths.command[0])
    done = verify(naive, tmp_path)
    assert done.returncode != 0 and "is not executable" in done.stderr


def test_docker_host_of_the_installing_shell_is_carried_into_the_unit(settings):
    environment = parse_unit(render_unit(unit_paths(settings, environ={"DOCKER_HOST": "unix:///run/user/1000/docker.sock"})))
    assert '"DOCKER_HOST=unix:///run/user/1000/docker.sock"' in environment["Service"]["Environment"]
    without = parse_unit(render_unit(unit_paths(settings, environ={})))["Service"]["Environment"]
    assert not any("DOCKER_HOST" in line for line in without)


def test_a_path_with_a_newline_is_refused_with_a_clear_error(tmp_path):
    paths = UnitPaths(root=tmp_path / "two\nlines", home=tmp_path, command=("/usr/bin/nanoclaw",))
    with pytest.raises(UnitError, match="control character"):
        render_unit(paths)


def test_every_line_of_the_template_without_a_placeholder_is_kept_verbatim(settings):
    template = TEMPLATE_PATH.read_text().splitlines()
    rendered = render_unit(unit_paths(settings)).splitlines()
    assert len(rendered) == len(template)
    for source, line in zip(template, rendered):
        if "{{" not in source or source.startswith("#"):
            assert line == source
        else:
            assert "{{" not in line


def test_a_placeholder_nothing_fills_is_an_error(settings):
    with pytest.raises(UnitError, match="NEW_THING"):
        render_unit(unit_paths(settings), template="[Service]\nExecStart={{EXEC_START}}\nFoo={{NEW_THING}}\n")
