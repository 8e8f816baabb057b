"""What an agent container sees: its mounts, prepared on the host before it starts.

The agent may rewrite anything it can write, so each folder it writes is
mounted on its own (its group folder, its `.claude` home, and the IPC
`messages`, `tasks` and `input` folders): a mount point cannot be renamed or
replaced from inside, so the host's paths to them stay real folders. What the
host writes for the agent (the snapshots) is mounted read-only. Main also
sees the install read-only, without `.env`, `data/`, `store/` or `logs/`.
Every host step here goes through base.agent_paths.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from base.agent_paths import (OnRefused, PathRefused, closing_fd, create_file, ensure_own_dir, hand_over,
                              open_file, open_under, warn_refusal)
from base.config import Settings
from rules.groups import MEMORY_FILE, ensure_global_memory, group_dir
from rules.ipc_folder import AGENT_DIRS
from rules.snapshots import SNAPSHOTS_DIR

CONTAINER_HOME = "/home/node"
CONTAINER_UID = 1000
EMPTY_DIR = "empty"
CLAUDE_SETTINGS = {
    "env": {
        "CLAUDE_CODE_EXPERIMENTAL_AGENT_TEAMS": "1",
        "CLAUDE_CODE_ADDITIONAL_DIRECTORIES_CLAUDE_MD": "1",
        "CLAUDE_CODE_DISABLE_AUTO_MEMORY": "0",
    }
}


@dataclass(frozen=True)
class Mount:
    host: str
    target: str
    readonly: bool


def container_user() -> tuple[str, bool]:
    """(`uid:gid` to run as, whether host folders must be handed to uid 1000).

    As root the container runs as its own user 1000 and we chown what it
    writes; as another user it runs with that user's ids so files stay theirs.
    """
    uid, gid = os.getuid(), os.getgid()
    if uid == 0:
        return f"{CONTAINER_UID}:{CONTAINER_UID}", True
    return f"{uid}:{gid}", False


def _agent_owner(chown: bool) -> tuple[int, int] | None:
    return (CONTAINER_UID, CONTAINER_UID) if chown else None


def _hand_over_entry(dir_fd: int, name: str, owner: tuple[int, int], shown: Path, on_refused: OnRefused) -> None:
    """Give the host-made file `name` to the agent, by descriptor; a planted link or hard link is refused."""
    try:
        fd = open_file(dir_fd, name, shown=shown)
        if fd is None:
            return
        with closing_fd(fd):
            if os.fstat(fd).st_uid == os.getuid():  # made by the host; the agent's own files are left as they are
                hand_over(fd, owner, shown=shown)
    except PathRefused as refused:
        on_refused("hand the file to the agent's user", refused)


def prepare_group_dir(settings: Settings, folder: str, *, chown: bool, on_refused: OnRefused = warn_refusal) -> Path:
    """The group's folder, its memory file writable by the agent."""
    path = group_dir(settings, folder)
    fd = open_under(settings.groups_dir, (folder,), create=True)
    assert fd is not None
    with closing_fd(fd):
        if owner := _agent_owner(chown):
            hand_over(fd, owner, shown=path)
            _hand_over_entry(fd, MEMORY_FILE, owner, path / MEMORY_FILE, on_refused)
    return path


def prepare_ipc(settings: Settings, folder: str, *, chown: bool, on_refused: OnRefused = warn_refusal) -> Path:
    """`data/ipc/<folder>/` (the host's) with the agent's `messages`, `tasks`, `input` and the host's `snapshots`."""
    base = settings.ipc_dir / folder
    fd = open_under(settings.ipc_dir, (folder,), create=True)
    assert fd is not None
    with closing_fd(fd):
        hand_over(fd, (os.getuid(), os.getgid()), shown=base)  # an older layout gave it to the agent
        for name in (*AGENT_DIRS, SNAPSHOTS_DIR):
            _own_dir(fd, name, base / name, _agent_owner(chown) if name in AGENT_DIRS else None, on_refused)
    return base


def _own_dir(parent_fd: int, name: str, shown: Path, owner: tuple[int, int] | None, on_refused: OnRefused) -> None:
    """A real folder at `name`, given to `owner`; whatever else was there is removed itself and reported."""
    fd, replaced = ensure_own_dir(parent_fd, name, shown=shown)
    with closing_fd(fd):
        if replaced:
            on_refused("use the folder", PathRefused(shown, f"was {replaced}; replaced by a real folder"))
        if owner:
            hand_over(fd, owner, shown=shown)


def prepare_claude_home(settings: Settings, folder: str, *, chown: bool, on_refused: OnRefused = warn_refusal) -> Path:
    """`data/sessions/<folder>/.claude` with settings.json."""
    home = settings.data_dir / "sessions" / folder / ".claude"
    owner = _agent_owner(chown)
    fd = open_under(settings.data_dir, ("sessions", folder, ".claude"), create=True)
    assert fd is not None
    with closing_fd(fd):
        if owner:
            hand_over(fd, owner, shown=home)
        data = (json.dumps(CLAUDE_SETTINGS, indent=2) + "\n").encode("utf-8")
        try:
            create_file(fd, "settings.json", data, owner=owner, shown=home / "settings.json")
        except PathRefused as refused:
            on_refused("write the agent's settings", refused)
    return home


def empty_dir(settings: Settings) -> Path:
    """An empty read-only folder of the host's, mounted over what main must not see."""
    path = settings.data_dir / EMPTY_DIR
    fd = open_under(settings.data_dir, (EMPTY_DIR,), create=True, mode=0o555)
    assert fd is not None
    with closing_fd(fd):
        os.fchmod(fd, 0o555)
        if os.listdir(fd):
            raise PathRefused(path, "should be empty; remove what is in it")
    return path


def project_mounts(settings: Settings) -> list[Mount]:
    """Main's read-only view of the install: `.env` reads empty; `data/`, `store/`, `logs/` are empty."""
    root = settings.root
    mounts = [Mount(str(root), "/workspace/project", True)]
    if (root / ".env").exists():
        mounts.append(Mount("/dev/null", "/workspace/project/.env", True))
    hidden = empty_dir(settings)
    for private in (settings.data_dir, settings.store_dir, settings.logs_dir):
        if private.is_dir() and private.resolve().parent == root.resolve():
            mounts.append(Mount(str(hidden), f"/workspace/project/{private.name}", True))
    return mounts


def global_mount(settings: Settings, *, is_main: bool, chown: bool, on_refused: OnRefused) -> list[Mount]:
    """The global memory: main may write it, the others only read it."""
    global_dir = settings.groups_dir / "global"
    fd = open_under(settings.groups_dir, ("global",))
    if fd is None:
        return []
    with closing_fd(fd):
        if is_main and (owner := _agent_owner(chown)):
            hand_over(fd, owner, shown=global_dir)
            _hand_over_entry(fd, MEMORY_FILE, owner, global_dir / MEMORY_FILE, on_refused)
    return [Mount(str(global_dir), "/workspace/global", not is_main)]


def base_mounts(settings: Settings, folder: str, *, is_main: bool, chown: bool,
                on_refused: OnRefused = warn_refusal) -> list[Mount]:
    """The mounts every run of this group gets, parents before what is mounted inside them.

    Raises PathRefused when a folder the host itself owns is not a real folder.
    """
    ensure_global_memory(settings, on_refused)
    group = prepare_group_dir(settings, folder, chown=chown, on_refused=on_refused)
    ipc = prepare_ipc(settings, folder, chown=chown, on_refused=on_refused)
    home = prepare_claude_home(settings, folder, chown=chown, on_refused=on_refused)
    mounts = project_mounts(settings) if is_main else []
    mounts.append(Mount(str(group), "/workspace/group", False))
    mounts += global_mount(settings, is_main=is_main, chown=chown, on_refused=on_refused)
    mounts.append(Mount(str(home), f"{CONTAINER_HOME}/.claude", False))
    mounts += [Mount(str(ipc / name), f"/workspace/ipc/{name}", False) for name in AGENT_DIRS]
    mounts.append(Mount(str(ipc / SNAPSHOTS_DIR), f"/workspace/ipc/{SNAPSHOTS_DIR}", True))
    return mounts
