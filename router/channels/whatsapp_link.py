"""Where the WhatsApp device session lives, and whether it is still linked.

`nanoclaw channels login whatsapp` links this machine as a device of a
WhatsApp account; neonize keeps the device's keys in its own SQLite file,
`store/whatsapp/session.db`. Those keys are a credential: `store/` is
never mounted into an agent's container (main sees it empty), and the
folder is the service user's alone (0700).

The session can end without the service doing anything: the owner removes
the device in the phone's Linked devices, WhatsApp bans the number for a
while, or another program takes over the session. The channel writes what
it learns to `store/whatsapp/link.json` (atomically), so `nanoclaw
status` and `nanoclaw doctor` can say, without asking WhatsApp, that the
device is linked, or that it is not and which command links it again.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

import msgspec

from base.config import Settings
from base.timefmt import iso_now

LOGIN_COMMAND = "nanoclaw channels login whatsapp"
LinkStateName = Literal["linked", "logged_out", "banned", "replaced"]


class LinkState(msgspec.Struct, kw_only=True):
    state: LinkStateName
    at: str
    account: str = ""  # the account's number, once known
    reason: str = ""   # what WhatsApp said, in words


def folder(settings: Settings) -> Path:
    return settings.store_dir / "whatsapp"


def session_path(settings: Settings) -> Path:
    return folder(settings) / "session.db"


def state_path(settings: Settings) -> Path:
    return folder(settings) / "link.json"


def has_session(settings: Settings) -> bool:
    """A device was linked here once (the channel starts only then)."""
    return session_path(settings).is_file()


def ensure_folder(settings: Settings) -> Path:
    path = folder(settings)
    path.mkdir(parents=True, exist_ok=True)
    os.chmod(path, 0o700)
    return path


def session_files(settings: Settings) -> list[Path]:
    """The session file and SQLite's `-wal` and `-shm` beside it."""
    session = session_path(settings)
    return [session, *session.parent.glob(session.name + "-*")]


def keep_private(settings: Settings) -> None:
    """The session's files readable by the service user alone (the library makes them with the umask)."""
    for path in session_files(settings):
        try:
            os.chmod(path, 0o600)
        except FileNotFoundError:
            pass


def write_state(settings: Settings, state: LinkStateName, *, account: str = "", reason: str = "") -> LinkState:
    ensure_folder(settings)
    if not account and (previous := read_state(settings)) is not None:
        account = previous.account
    value = LinkState(state=state, at=iso_now(), account=account, reason=reason)
    path = state_path(settings)
    temp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    temp.write_bytes(msgspec.json.encode(value))
    os.replace(temp, path)
    return value


def read_state(settings: Settings) -> LinkState | None:
    """The last state the channel wrote; None when none was, or the file is unreadable (said as unknown)."""
    try:
        return msgspec.json.decode(state_path(settings).read_bytes(), type=LinkState)
    except (OSError, msgspec.DecodeError):
        return None


def describe(settings: Settings) -> tuple[str, str, str] | None:
    """(level ok/warn/fail, what to say, the fix) for status and doctor; None when WhatsApp is not set up."""
    if not has_session(settings):
        return None
    state = read_state(settings)
    who = f" ({state.account})" if state is not None and state.account else ""
    if state is None or state.state == "linked":
        return "ok", f"linked{who}", ""
    fix = f"run `{LOGIN_COMMAND}` to link this machine again"
    if state.state == "banned":
        return "fail", f"WhatsApp banned the account for now{who} since {state.at}: {state.reason}", \
            "wait until the ban ends; the service reconnects on its next start"
    if state.state == "replaced":
        return "fail", f"another program took over this device's session{who} at {state.at}", \
            f"stop the other program using {session_path(settings)}, then restart the service, or {fix}"
    return "fail", f"logged out{who} at {state.at}: {state.reason or 'the device was removed'}", fix
