"""Registered groups: the rules for adding, changing and removing them, and their files.

A group is one chat JID with one folder under `groups/`. Registration never
silently replaces anything: a folder in
use by another JID, a second main group, a reserved or malformed folder name
are clear errors. The check and the event are one transaction, so two
registrations racing cannot both win.
"""

from __future__ import annotations

import re
from pathlib import Path

from base.agent_paths import (OnRefused, PathRefused, closing_fd, create_file, open_under, read_text,
                              warn_refusal)
from base.config import DEFAULT_ASSISTANT_NAME, MAX_TIMEOUT_MS, MIN_TIMEOUT_MS, Settings
from events import EventLog, types as t
from events.queries import Group, find_group, list_groups
from events.rules import folder_problem
from rules.egress import parse_policy
from rules.refusals import record_refusal

MAX_JID_CHARS = 256
MAX_NAME_CHARS = 200
TEMPLATES_DIR = Path(__file__).resolve().parents[1] / "groups"
MEMORY_FILE = "CLAUDE.md"
MEMORY_MAX_BYTES = 1 << 20


class GroupError(Exception):
    """A registration request that cannot be carried out, and why."""


def validate_folder(folder: str) -> None:
    """Raise GroupError unless `folder` is a safe, unreserved group folder name (events/rules.py)."""
    if (problem := folder_problem(folder)) is not None:
        raise GroupError(f"invalid folder {folder!r}: {problem}")


def validate_jid(jid: str) -> None:
    if not jid or len(jid) > MAX_JID_CHARS or any(ch.isspace() for ch in jid):
        raise GroupError(f"invalid JID {jid!r}: a non-empty chat id without spaces")


def group_dir(settings: Settings, folder: str) -> Path:
    """The group's folder, checked to stay inside `groups/`."""
    validate_folder(folder)
    base = settings.groups_dir.resolve()
    path = (base / folder).resolve()
    if path.parent != base:
        raise GroupError(f"folder {folder!r} resolves outside {base}")
    return path


def register_group(
    log: EventLog,
    settings: Settings,
    *,
    jid: str,
    name: str,
    folder: str,
    trigger: str | None = None,
    requires_trigger: bool = True,
    is_main: bool = False,
    container_config: t.ContainerConfig | None = None,
    by: str = "cli",
) -> Group:
    """Register a chat as a group, create its folder and memory, and return it."""
    validate_jid(jid)
    validate_folder(folder)
    name = (name or "").strip()
    if not name or len(name) > MAX_NAME_CHARS:
        raise GroupError(f"invalid name {name!r}: 1-{MAX_NAME_CHARS} characters")
    trigger = (trigger or "").strip() or settings.trigger
    event = t.GroupRegistered(
        jid=jid, name=name, folder=folder, trigger=trigger, requires_trigger=requires_trigger,
        is_main=is_main, container_config=container_config, registered_by=by,
    )
    with log.transaction() as tx:
        _check_conflicts(list_groups(tx), event)
        tx.append(event)

    def refused(operation: str, problem: PathRefused) -> None:
        with log.transaction() as tx:
            record_refusal(tx, folder, operation, problem)

    ensure_group_files(settings, folder, is_main=is_main, on_refused=refused)
    group = find_group(log, jid)
    assert group is not None
    return group


def _check_conflicts(groups: list[Group], new: t.GroupRegistered) -> None:
    for group in groups:
        if group.jid == new.jid:
            raise GroupError(f"{new.jid} is already registered (folder {group.folder!r}); "
                             "remove it first or change it with 'nanoclaw groups set'")
        if group.folder == new.folder:
            raise GroupError(f"folder {new.folder!r} is already used by {group.jid}; "
                             "choose another folder")
        if new.is_main and group.is_main:
            raise GroupError(f"{group.jid} (folder {group.folder!r}) is already the main group; "
                             "there is exactly one, remove it first")


def remove_group(log: EventLog, jid_or_folder: str, *, by: str = "cli") -> Group:
    """Stop serving a group; its folder, memory and history stay on disk."""
    with log.transaction() as tx:
        group = find_group(tx, jid_or_folder)
        if group is None:
            raise GroupError(f"no registered group has the JID or folder {jid_or_folder!r}")
        tx.append(t.GroupRemoved(jid=group.jid, folder=group.folder, removed_by=by))
    return group


def update_group(
    log: EventLog,
    jid_or_folder: str,
    *,
    name: str | t.UnsetType = t.UNSET,
    trigger: str | t.UnsetType = t.UNSET,
    requires_trigger: bool | t.UnsetType = t.UNSET,
    container_config: t.ContainerConfig | None | t.UnsetType = t.UNSET,
    by: str = "cli",
) -> Group:
    """Change some settings of a group (the folder and the main role never change)."""
    if name is not t.UNSET and not (0 < len(name.strip()) <= MAX_NAME_CHARS):
        raise GroupError(f"invalid name {name!r}: 1-{MAX_NAME_CHARS} characters")
    if container_config not in (t.UNSET, None) and container_config.timeout_ms is not None \
            and not MIN_TIMEOUT_MS <= container_config.timeout_ms <= MAX_TIMEOUT_MS:
        raise GroupError("invalid timeout: from 1 second to 7 days")
    if container_config not in (t.UNSET, None) and container_config.egress is not None:
        try:
            parse_policy(container_config.egress)
        except ValueError as exc:
            raise GroupError(str(exc)) from exc
    with log.transaction() as tx:
        current = find_group(tx, jid_or_folder)
        if current is None:
            raise GroupError(f"no registered group has the JID or folder {jid_or_folder!r}")
        jid = current.jid
        if trigger is not t.UNSET:
            trigger = trigger.strip() or current.trigger
        tx.append(t.GroupUpdated(jid=jid, name=name if name is t.UNSET else name.strip(), trigger=trigger,
                                 requires_trigger=requires_trigger, container_config=container_config,
                                 updated_by=by))
    group = find_group(log, jid)
    assert group is not None
    return group


def template_text(settings: Settings, kind: str) -> str:
    """The memory template for `main` or `global`, named for this assistant.

    The install's copy comes first; it lies in a folder an agent can write,
    so it is read without following links, and the shipped template is used
    when it cannot be read that way.
    """
    text = _read_memory(settings.groups_dir, kind)
    if text is None:
        text = _read_memory(TEMPLATES_DIR, kind) or ""
    name = settings.assistant_name
    if name != DEFAULT_ASSISTANT_NAME:
        text = re.sub(rf"^# {DEFAULT_ASSISTANT_NAME}$", f"# {name}", text, count=1, flags=re.M)
        text = text.replace(f"You are {DEFAULT_ASSISTANT_NAME}", f"You are {name}")
    return text


def _read_memory(base: Path, kind: str) -> str | None:
    try:
        fd = open_under(base, (kind,))
        if fd is None:
            return None
        with closing_fd(fd):
            return read_text(fd, MEMORY_FILE, limit=MEMORY_MAX_BYTES, shown=base / kind / MEMORY_FILE)
    except PathRefused as refused:
        warn_refusal("read the memory template", refused)
        return None


def ensure_global_memory(settings: Settings, on_refused: OnRefused = warn_refusal) -> None:
    """Make sure the root has the global memory file every group can read (never written through a link)."""
    source = _read_memory(TEMPLATES_DIR, "global")
    if source is None:
        return
    _create_memory(settings, "global", source, on_refused)


def ensure_group_files(settings: Settings, folder: str, *, is_main: bool,
                       on_refused: OnRefused = warn_refusal) -> Path:
    """Create `groups/<folder>/` and the group's `CLAUDE.md` if missing."""
    ensure_global_memory(settings, on_refused)
    path = group_dir(settings, folder)
    _create_memory(settings, folder, template_text(settings, "main" if is_main else "global"), on_refused)
    return path


def _create_memory(settings: Settings, folder: str, text: str, on_refused: OnRefused) -> None:
    shown = settings.groups_dir / folder / MEMORY_FILE
    try:
        fd = open_under(settings.groups_dir, (folder,), create=True)
        assert fd is not None
        with closing_fd(fd):
            create_file(fd, MEMORY_FILE, text.encode("utf-8"), shown=shown)
    except PathRefused as refused:
        on_refused("create the memory file", refused)
