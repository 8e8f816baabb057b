"""Installing and driving the systemd user unit: systemctl, loginctl, journalctl.

The library under `nanoclaw service`. Where systemd does not run (a
container, WSL without systemd) nothing is attempted: the caller gets
`SystemdMissing` with the reason, and `foreground_instructions` says how to
run the service by hand instead.
"""

from __future__ import annotations

import os
import pwd
import shlex
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from base.config import Settings
from nanoclaw.systemd_unit import UNIT_NAME, UnitError, nanoclaw_command, render_unit, unit_file, unit_paths

PID1_COMM = Path("/proc/1/comm")
COMMAND_TIMEOUT_S = 120  # `enable --now` waits for the start job; a stop may wait TimeoutStopSec


class ServiceError(Exception):
    """A systemd command failed, or the unit is not installed."""


class SystemdMissing(ServiceError):
    """systemd (or the user's systemd instance) is not running here."""


def _run(argv: list[str], *, check: bool = True) -> subprocess.CompletedProcess:
    """Run a systemd tool and capture its output; a failure names the command and what it said."""
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=COMMAND_TIMEOUT_S)
    except FileNotFoundError as exc:
        raise ServiceError(f"{argv[0]} is not installed") from exc
    except subprocess.TimeoutExpired as exc:
        raise ServiceError(f"`{shlex.join(argv)}` did not finish within {COMMAND_TIMEOUT_S} s") from exc
    if check and done.returncode != 0:
        said = (done.stderr or done.stdout).strip() or "no output"
        raise ServiceError(f"`{shlex.join(argv)}` failed (exit {done.returncode}): {said}")
    return done


def systemd_missing_reason(pid1_comm: Path = PID1_COMM) -> str | None:
    """Why the systemd user service cannot be used here, or None when it can."""
    try:
        init = pid1_comm.read_text(encoding="utf-8").strip()
    except OSError as exc:
        return f"cannot tell which init runs ({pid1_comm}: {exc.strerror})"
    if init != "systemd":
        return f"systemd is not running here (PID 1 is {init!r}: a container, or WSL without systemd)"
    if shutil.which("systemctl") is None:
        return "systemd runs but systemctl is not on PATH"
    probe = _run(["systemctl", "--user", "show-environment"], check=False)
    if probe.returncode != 0:
        said = (probe.stderr or probe.stdout).strip().splitlines()
        return ("`systemctl --user` cannot reach your user's systemd instance"
                f" ({said[0] if said else f'exit {probe.returncode}'}; over su or sudo there is none: log in as"
                " the user, or run `loginctl enable-linger` for them first)")
    return None


def foreground_instructions(settings: Settings) -> str:
    """How to run the service without systemd: in the foreground, or with nohup."""
    root = shlex.quote(str(settings.root))
    command = shlex.join([*nanoclaw_command(), "run"])
    return "\n".join([
        "Run it in the foreground instead (Ctrl-C stops it):",
        f"  cd {root} && {command}",
        "or in the background, still running after you log out:",
        f"  cd {root} && nohup {command} >/dev/null 2>&1 &",
        f"Its logs are in {settings.logs_dir / 'nanoclaw.log'} (warnings and errors also in nanoclaw.error.log).",
    ])


def current_user() -> str:
    return pwd.getpwuid(os.getuid()).pw_name


@dataclass
class Systemd:
    """The user unit of one install; `out` receives one line per step, for people."""

    settings: Settings
    pid1_comm: Path = PID1_COMM
    out: Callable[[str], None] = field(default=print)

    @property
    def unit_file(self) -> Path:
        return unit_file(self.settings.home)

    def require(self) -> None:
        reason = systemd_missing_reason(self.pid1_comm)
        if reason:
            raise SystemdMissing(reason)

    def systemctl(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        return _run(["systemctl", "--user", *args], check=check)

    def is_active(self) -> str:
        """`active`, `inactive`, `failed`, `activating`, ... as systemd says."""
        return self.systemctl("is-active", UNIT_NAME, check=False).stdout.strip() or "unknown"

    def install(self) -> str:
        """Write the unit for this install, enable and start it; returns the state it reached."""
        self.require()
        try:
            text = render_unit(unit_paths(self.settings))
        except UnitError as exc:
            raise ServiceError(str(exc)) from exc
        was_active = self.unit_file.exists() and self.is_active() == "active"
        self._write_unit(text)
        self.out(f"wrote {self.unit_file} for the install in {self.settings.root}")
        self.systemctl("daemon-reload")
        self.systemctl("enable", "--now", UNIT_NAME)
        if was_active:
            self.systemctl("restart", UNIT_NAME)  # `enable --now` leaves a running service on its old unit
        state = self.is_active()
        self.out(f"service {UNIT_NAME} enabled and started: {state} (logs: nanoclaw service logs -f)")
        self.report_linger()
        return state

    def _write_unit(self, text: str) -> None:
        self.unit_file.parent.mkdir(parents=True, exist_ok=True)
        temp = self.unit_file.with_name(f".{UNIT_NAME}.tmp")
        temp.write_text(text, encoding="utf-8")
        temp.chmod(0o644)
        os.replace(temp, self.unit_file)

    def report_linger(self) -> bool:
        """Say whether the service outlives the user's last session, and how to make it; True if it does."""
        user = current_user()
        try:
            answer = _run(["loginctl", "show-user", user, "-p", "Linger"], check=False).stdout.strip()
        except ServiceError:
            answer = ""
        if answer == "Linger=yes":
            self.out("lingering is on: the service keeps running after you log out")
            return True
        self.out("lingering is off: the service stops when you log out and starts when you log in.\n"
                 f"To keep it running after logout (and start it at boot): loginctl enable-linger {user}")
        return False

    def uninstall(self) -> str | None:
        """Stop and disable the service and remove its unit file; without systemd, just the file.

        Returns why systemd could not be asked, or None when it was.
        """
        missing = systemd_missing_reason(self.pid1_comm)
        if missing is None and self.unit_file.exists():
            self.systemctl("disable", "--now", UNIT_NAME)
        if self.unit_file.exists():
            self.unit_file.unlink()
            self.out(f"removed {self.unit_file}")
        else:
            self.out(f"no unit installed at {self.unit_file}")
        if missing is None:
            self.systemctl("daemon-reload")
        return missing

    def control(self, verb: str) -> str:
        """`start`, `stop` or `restart` the installed service; returns its state afterwards."""
        self.require()
        if not self.unit_file.exists():
            raise ServiceError(f"the service is not installed ({self.unit_file} is missing): "
                               "run `nanoclaw service install`")
        self.systemctl(verb, UNIT_NAME)
        state = self.is_active()
        self.out(f"{verb}: service {UNIT_NAME} is {state}")
        return state

    def status(self) -> int:
        """systemd's own status report on the terminal; returns systemctl's exit code (0: running)."""
        self.require()
        self.out(f"unit file: {self.unit_file}" + ("" if self.unit_file.exists() else " (not installed)"))
        return subprocess.call(["systemctl", "--user", "status", UNIT_NAME, "--no-pager"])

    def logs(self, *, follow: bool = False, lines: int | None = None) -> int:
        """The service's journal on the terminal (`journalctl --user -u nanoclaw`)."""
        self.require()
        argv = ["journalctl", "--user", "-u", UNIT_NAME, "--no-pager"]
        if follow:
            argv.append("-f")
        if lines is not None:
            argv += ["-n", str(lines)]
        try:
            return subprocess.call(argv)
        except FileNotFoundError as exc:
            raise ServiceError("journalctl is not installed") from exc
