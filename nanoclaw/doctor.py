"""`nanoclaw doctor`: is this install able to work, and if not, what to do.

Each check says ok, warn or fail, and every warn or fail names the fix. A
fail means the service cannot do its job; what a fresh install lacks on
purpose (credentials, the agent image, the service unit) is a warning, so
`scripts/install.sh`, which stops on a failing doctor, still finishes.
Secrets are looked at, never shown: only their names appear.
"""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path
from typing import Callable, Literal

import msgspec

from base.config import Settings
from events import EventDecodeError, EventLog, replay
from events.health import RECOVERY_HINT, log_problem
from events.queries import list_groups
from jobs import image
from jobs.credentials import MISSING_HELP, credentials_source, upstream_auth, upstream_url
from jobs.gateway import API_SOCKET, Gateway
from jobs.runtime import RuntimeUnavailable, check_runtime, engine_name, start_hint
from jobs.workspace import CONTAINER_UID, container_user
from nanoclaw.status import service_info
from rules import allowlist
from rules.egress import DEFAULT_EGRESS, policy_of
from rules.ipc_folder import AGENT_DIRS
from rules.mounts import MountAllowlist

REPLAY_CHECK_MAX_EVENTS = 200_000
SYSTEMD_UNIT = Path(".config") / "systemd" / "user" / "nanoclaw.service"

Level = Literal["ok", "warn", "fail"]


class Check(msgspec.Struct, kw_only=True):
    name: str
    level: Level
    detail: str
    fix: str | None = None


class Report(msgspec.Struct, kw_only=True):
    ok: bool
    checks: list[Check]


def check_runtime_up(settings: Settings) -> Check:
    try:
        version = check_runtime(settings)
    except RuntimeUnavailable as exc:
        return Check(name="runtime", level="fail", detail=f"the container runtime does not answer ({exc})",
                     fix=start_hint(settings))
    return Check(name="runtime", level="ok", detail=f"{engine_name(settings)} {version} answers")


def check_image(settings: Settings, runtime_up: bool) -> Check:
    tag = settings.container_image
    build = "nanoclaw image build" + ("" if tag == image.IMAGE_FULL_TAG else f" --tag {tag}")
    if not runtime_up:
        return Check(name="image", level="warn", detail=f"{tag} not checked: the runtime is down",
                     fix="start Docker, then run nanoclaw doctor again")
    if not image.image_exists(tag, settings):
        return Check(name="image", level="warn", detail=f"{tag} is not built: agents cannot run", fix=build)
    if image.image_is_stale(tag, settings=settings):
        return Check(name="image", level="warn", detail=f"{tag} was built from older agent sources", fix=build)
    try:
        return Check(name="image", level="ok", detail=image.check_image(tag, settings))
    except Exception as exc:  # any failure of the smoke run means the same: rebuild
        return Check(name="image", level="fail", detail=f"{tag} fails its smoke test: {exc}",
                     fix=f"{build}, then nanoclaw image check")


def check_credentials(settings: Settings) -> Check:
    source = credentials_source(settings)
    if source:
        return Check(name="credentials", level="ok", detail=f"Claude credentials found ({source})")
    if settings.agent_provider == "scripted":
        return Check(name="credentials", level="ok", detail="none, and none needed (AGENT_PROVIDER=scripted)")
    return Check(name="credentials", level="warn", detail="no Claude credentials: agents cannot answer",
                 fix=MISSING_HELP.format(env=settings.root / ".env"))


def check_network(settings: Settings) -> Check:
    if settings.container_network == "none":
        return Check(name="agent network", level="ok",
                     detail="none: agents reach only the credential gateway and its egress proxy")
    return Check(name="agent network", level="warn",
                 detail=f"CONTAINER_NETWORK={settings.container_network}: agents reach that Docker network "
                        "directly, past their egress policy (the unsafe opt-out)",
                 fix=f"remove CONTAINER_NETWORK from {settings.root / '.env'} and restart the service")


def check_gateway(settings: Settings) -> Check:
    """Open a run socket as a run would, and see a wrong token refused."""
    import httpx

    gateway = Gateway(settings, lambda event: None)
    try:
        access = gateway.open_run(f"doctor-{os.getpid()}", "doctor", "model-only")
        transport = httpx.HTTPTransport(uds=str(access.directory / API_SOCKET))
        with httpx.Client(transport=transport, base_url="http://gateway", timeout=5) as http:
            refused = http.post("/v1/messages", headers={"x-api-key": "not-the-token"}, json={}).status_code == 401
    except (OSError, httpx.HTTPError, TimeoutError) as exc:
        return Check(name="gateway", level="fail", detail=f"cannot open a run socket: {exc}",
                     fix=f"check that {settings.data_dir / 'gateway'} is writable by this user")
    finally:
        gateway.stop()
    if not refused:
        return Check(name="gateway", level="fail", detail="a wrong run token was not refused",
                     fix="reinstall the project (.venv/bin/pip install -e .)")
    auth = upstream_auth(settings)
    key = f"adds {auth.key}" if auth else "holds no credential yet"
    return Check(name="gateway", level="ok", detail=f"run sockets work, tokens are checked; {key}; model API "
                                                     f"{upstream_url(settings)}")


def check_chat_socket(settings: Settings) -> Check:
    """The local chat's socket must lie outside the install, which main's agent sees."""
    path = settings.local_chat_socket
    inside = Path(os.path.realpath(path)).is_relative_to(os.path.realpath(settings.root))
    if inside:
        return Check(name="chat socket", level="fail", detail=f"{path} is inside the install, where an agent "
                     "may reach it", fix="unset LOCAL_CHAT_SOCKET or point it outside the install")
    return Check(name="chat socket", level="ok", detail=f"{path}: outside the install and every agent's mounts; "
                                                        "only this user and root may talk to it")


def check_egress(log: EventLog | None) -> Check:
    groups = sorted(list_groups(log), key=lambda group: group.folder) if log else []
    policies = [f"{group.folder} {policy_of(group.container_config)}" for group in groups]
    return Check(name="egress", level="ok",
                 detail=(", ".join(policies) or "no groups yet") + f" (default {DEFAULT_EGRESS}; loopback, "
                        "private and link-local addresses are never reached)")


def check_channels(settings: Settings, log: EventLog | None) -> Check:
    from router.channels import credentials, registry

    installed = registry.names()
    ready = [n for n in installed if registry.is_set_up(n, settings)]
    missing = [k for n in installed for k in registry.credentials_of(n) if not settings.secret(k)]
    detail = "ready: " + (", ".join(ready) or "none") + (f"; not set: {', '.join(missing)}" if missing else "")
    unreachable = []
    for group in list_groups(log) if log else []:
        channel = registry.channel_for_jid(group.jid)
        if channel not in ready:
            unreachable.append((group.folder, group.jid, channel))
    if not ready:
        return Check(name="channels", level="fail", detail=detail, fix="set a channel's credentials in .env")
    if wrong := credentials.problems(settings.secret):
        return Check(name="channels", level="fail", detail=f"{detail}; " + "; ".join(wrong),
                     fix=f"copy the token again into {settings.root / '.env'} and restart the service")
    if unreachable:
        folder, jid, channel = unreachable[0]
        why = "no installed channel owns it" if channel is None else registry.missing_for(channel, settings)
        return Check(name="channels", level="warn",
                     detail=f"{detail}; {len(unreachable)} group(s) unreachable, e.g. {folder} ({jid}): {why}",
                     fix=f"set the channel's credentials in {settings.root / '.env'}, or remove the group")
    return Check(name="channels", level="ok", detail=detail)


def check_whatsapp(settings: Settings) -> Check | None:
    """The linked device's state as the channel last saw it; no check when WhatsApp was never linked."""
    from router.channels import whatsapp_link

    found = whatsapp_link.describe(settings)
    if found is None:
        return None
    level, detail, fix = found
    return Check(name="whatsapp", level=level, detail=detail, fix=fix or None)


def _writable_dir(path: Path) -> bool:
    return path.is_dir() and os.access(path, os.W_OK | os.X_OK)


def check_folders(settings: Settings) -> Check:
    paths = (settings.store_dir, settings.ipc_dir, settings.groups_dir, settings.logs_dir)
    bad = [p for p in paths if not _writable_dir(p)]
    if bad:
        return Check(name="folders", level="fail", detail="missing or not writable: " + ", ".join(map(str, bad)),
                     fix=f"mkdir -p {' '.join(map(str, bad))} and make them yours (chown -R $USER)")
    return Check(name="folders", level="ok", detail="store/, data/ipc/, groups/, logs/ exist and are writable")


def check_ipc_owners(settings: Settings) -> Check:
    """Each group's `messages`, `tasks` and `input` must be writable by the container's user (uid 1000 as root)."""
    _, chown = container_user()
    uid = CONTAINER_UID if chown else os.getuid()
    groups = sorted(p for p in settings.ipc_dir.iterdir() if p.is_dir() and p.name != "errors") \
        if settings.ipc_dir.is_dir() else []
    wrong = [sub for group in groups for sub in (group / name for name in AGENT_DIRS)
             if sub.is_dir() and sub.stat().st_uid != uid and not sub.stat().st_mode & 0o002]
    if not wrong:
        return Check(name="ipc folders", level="ok",
                     detail=f"{len(groups)} group folder(s) writable by the container's user (uid {uid})")
    # As root the service hands each folder over before every run, so this heals itself.
    return Check(name="ipc folders", level="warn" if chown else "fail",
                 detail=f"the container's user (uid {uid}) cannot write {', '.join(str(w) for w in wrong)}",
                 fix=f"chown {uid}:{uid} {' '.join(str(w) for w in wrong)}")


def check_mount_allowlist(settings: Settings) -> Check:
    path = settings.mount_allowlist_path
    try:
        parsed = msgspec.json.decode(path.read_bytes(), type=MountAllowlist)
    except FileNotFoundError:
        return Check(name="mount allowlist", level="ok", detail=f"none ({path}): extra mounts are refused")
    except (OSError, msgspec.DecodeError) as exc:
        return Check(name="mount allowlist", level="fail", detail=f"{path} is unusable: {exc}",
                     fix=f"fix {path} (see the README, 'Agents'); until then every extra mount is refused")
    return Check(name="mount allowlist", level="ok", detail=f"{len(parsed.allowed_roots)} allowed root(s) in {path}")


def check_sender_allowlist(settings: Settings) -> Check:
    path = settings.sender_allowlist_path
    try:
        problems = allowlist.problems(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return Check(name="sender allowlist", level="ok", detail=f"none ({path}): everyone may trigger")
    except (OSError, UnicodeDecodeError) as exc:
        problems = [f"cannot read it ({exc}); everyone is allowed"]
    if not problems:
        return Check(name="sender allowlist", level="ok", detail=f"{path} is valid")
    broken = "everyone is allowed" in problems[0]
    return Check(name="sender allowlist", level="fail" if broken else "warn", detail=f"{path}: {'; '.join(problems)}",
                 fix=f"fix {path} (see the README, 'Agents')")


def check_service(settings: Settings) -> Check:
    info = service_info(settings)
    if info.state == "up":
        return Check(name="service", level="ok", detail=f"running ({info.detail}, channels: {', '.join(info.channels)})")
    if info.state in ("starting", "stopping"):
        return Check(name="service", level="warn", detail=info.detail, fix="wait a few seconds and look again")
    if info.state == "unresponsive":
        return Check(name="service", level="fail", detail=info.detail,
                     fix="nanoclaw service restart; see logs/nanoclaw.error.log for why it hangs")
    return Check(name="service", level="warn", detail=info.detail,
                 fix="nanoclaw service start (or nanoclaw run in a terminal)")


def check_unit(settings: Settings) -> Check:
    unit = settings.home / SYSTEMD_UNIT
    if unit.is_file():
        return Check(name="systemd unit", level="ok", detail=f"installed ({unit})")
    return Check(name="systemd unit", level="warn", detail=f"not installed ({unit})", fix="nanoclaw service install")


def check_event_log(settings: Settings) -> tuple[Check, EventLog | None]:
    """The log opens and, when it is small enough to fold quickly, its projections match it."""
    log = None
    if (problem := log_problem(settings.db_path)) is not None:
        return Check(name="event log", level="fail", detail=f"{settings.db_path} {problem}", fix=RECOVERY_HINT), None
    try:
        log = EventLog(settings.db_path, sync=settings.event_log_sync)
        events = log.last_seq()
        if events > REPLAY_CHECK_MAX_EVENTS:
            return Check(name="event log", level="ok",
                         detail=f"{events:,} events (too many to fold here: nanoclaw replay --check)"), log
        diffs = replay.check(log)
    except (EventDecodeError, sqlite3.DatabaseError, OSError) as exc:
        if log is not None:
            log.close()
        return Check(name="event log", level="fail", detail=f"{settings.db_path}: {exc}",
                     fix="stop the service and keep a copy of store/; see the README, 'The event log'"), None
    if diffs:
        tables = ", ".join(d.table for d in diffs)
        return Check(name="event log", level="fail", detail=f"projections differ from the log: {tables}",
                     fix="stop the service, then nanoclaw replay --rebuild"), log
    return Check(name="event log", level="ok", detail=f"{events:,} event(s); projections match the log"), log


def diagnose(settings: Settings) -> Report:
    """Run every check in order; `ok` is False when any failed."""
    runtime = check_runtime_up(settings)
    log_check, log = check_event_log(settings)
    try:
        later: list[Callable[[], Check | None]] = [
            lambda: check_image(settings, runtime.level == "ok"), lambda: check_credentials(settings),
            lambda: check_network(settings), lambda: check_gateway(settings), lambda: check_egress(log),
            lambda: check_chat_socket(settings),
            lambda: check_channels(settings, log), lambda: check_whatsapp(settings), lambda: check_folders(settings),
            lambda: check_ipc_owners(settings), lambda: check_mount_allowlist(settings),
            lambda: check_sender_allowlist(settings), lambda: check_service(settings), lambda: check_unit(settings)]
        checks = [runtime, *(c for run in later if (c := run()) is not None), log_check]
    finally:
        if log is not None:
            log.close()
    return Report(ok=all(c.level != "fail" for c in checks), checks=checks)
