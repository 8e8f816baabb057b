"""The systemd user unit of this install, rendered from `systemd/nanoclaw.service`.

The template in the repository is the one source of truth; this module only
fills in this install's paths, escaped for systemd's unit syntax (quotes,
`%` specifiers, `$` expansion), so an install in a folder with spaces needs
no hand editing.
"""

from __future__ import annotations

import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path

from base.config import Settings

TEMPLATE_PATH = Path(__file__).resolve().parent.parent / "systemd" / "nanoclaw.service"
UNIT_NAME = "nanoclaw.service"
# Where docker, podman and their helpers live on Debian/Ubuntu and in manual installs.
SYSTEM_PATH_DIRS = ("/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin")
_PLACEHOLDER_RE = re.compile(r"\{\{[A-Z_]+\}\}")


class UnitError(Exception):
    """The unit cannot be written for these paths (or the template is broken)."""


@dataclass(frozen=True)
class UnitPaths:
    """What the unit needs to know about this install."""

    root: Path
    home: Path
    command: tuple[str, ...]  # the `nanoclaw` program: its script, or python -m nanoclaw.cli
    docker_host: str | None = None

    @property
    def search_path(self) -> str:
        """PATH for the service: the venv first, then the system's binary folders, then ~/.local/bin."""
        dirs = [str(Path(self.command[0]).parent), *SYSTEM_PATH_DIRS, str(self.home / ".local" / "bin")]
        return ":".join(dict.fromkeys(dirs))


def unit_file(home: Path) -> Path:
    """Where systemd looks for the user's units."""
    return home / ".config" / "systemd" / "user" / UNIT_NAME


def nanoclaw_command() -> tuple[str, ...]:
    """This interpreter's `nanoclaw` script (the venv's), or `python -m nanoclaw.cli` without one."""
    script = Path(sys.executable).parent / "nanoclaw"  # not resolved: a venv's python is a symlink
    if script.is_file() and os.access(script, os.X_OK):
        return (str(script),)
    return (sys.executable, "-m", "nanoclaw.cli")


def unit_paths(settings: Settings, environ: dict[str, str] | None = None) -> UnitPaths:
    env = os.environ if environ is None else environ
    return UnitPaths(root=settings.root, home=settings.home, command=nanoclaw_command(),
                     docker_host=env.get("DOCKER_HOST") or None)


def _checked(value: str) -> str:
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in value):
        raise UnitError(f"{value!r} contains a control character (a newline?): it cannot go into a systemd unit")
    if value != value.strip():
        raise UnitError(f"{value!r} starts or ends with white space, which systemd would drop")
    return value


def _no_specifiers(value: str) -> str:
    """`%` starts a specifier (`%h`, `%t`) in nearly every unit setting: `%%` is a literal one."""
    return _checked(value).replace("%", "%%")


def _quoted(value: str) -> str:
    """One word in double quotes, with backslash and quote escaped as systemd unquotes them."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def exec_word(value: str, *, program: bool = False) -> str:
    """One word of ExecStart=: quoted with `%` doubled; `$` doubled in arguments (no expansion there).

    systemd refuses a program path with a quote or a backslash in it, whatever the escaping.
    """
    value = _no_specifiers(value)
    if program:
        if any(ch in value for ch in "\"'\\"):
            raise UnitError(f"{value!r}: systemd cannot start a program whose path has a quote or a backslash; "
                            "install NanoClaw in a folder without them")
        return _quoted(value)
    return _quoted(value.replace("$", "$$"))


def environment_assignment(key: str, value: str) -> str:
    """The value of one Environment= line: `"KEY=value"`, safe with spaces and quotes."""
    return _quoted(_no_specifiers(f"{key}={value}"))


def render_unit(paths: UnitPaths, template: str | None = None) -> str:
    """The unit text for these paths; raises UnitError when a path cannot be expressed."""
    text = TEMPLATE_PATH.read_text(encoding="utf-8") if template is None else template
    docker_host = (f"Environment={environment_assignment('DOCKER_HOST', paths.docker_host)}"
                   if paths.docker_host else "# DOCKER_HOST was not set when this unit was installed.")
    values = {
        "DESCRIPTION_ROOT": _no_specifiers(str(paths.root)),
        "EXEC_START": " ".join([exec_word(paths.command[0], program=True),
                                *(exec_word(word) for word in (*paths.command[1:], "run"))]),
        "WORKING_DIRECTORY": _no_specifiers(str(paths.root)),
        "ENV_NANOCLAW_ROOT": environment_assignment("NANOCLAW_ROOT", str(paths.root)),
        "ENV_HOME": environment_assignment("HOME", str(paths.home)),
        "ENV_PATH": environment_assignment("PATH", paths.search_path),
        "DOCKER_HOST_LINE": docker_host,
    }
    for name, value in values.items():
        text = text.replace("{{" + name + "}}", value)
    leftover = _PLACEHOLDER_RE.findall(text)
    if leftover:
        raise UnitError(f"the template {TEMPLATE_PATH} has placeholders nothing fills in: {', '.join(leftover)}")
    return text
