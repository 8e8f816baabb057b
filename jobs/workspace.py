"""What an agent container sees: its mounts, prepared on the host before it starts.

SPEC 7.3 with Pro's differences: main sees the project root read-only with
`.env` shadowed and `store/` read-only through it (no agent writes the log);
every group gets its folder, its IPC folder (created here, owned by the
container's user, so the IPC watcher never races a `mkdir` in the container)
and its `.claude` folder; extra mounts only through the allowlist.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from nanoclaw.config import Settings
from router.groups import ensure_global_memory, group_dir

CONTAINER_HOME = "/home/node"
CONTAINER_UID = 1000
SKILLS_DIR = Path(__file__).resolve().parents[1] / "agent-container" / "skills"
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


def _hand_over(path: Path, chown: bool) -> None:
    if chown:
        os.chown(path, CONTAINER_UID, CONTAINER_UID)


def prepare_ipc(settings: Settings, folder: str, *, chown: bool) -> Path:
    """Create `data/ipc/<folder>/{messages,tasks,input}`; returns the folder."""
    base = settings.ipc_dir / folder
    for sub in ("", "messages", "tasks", "input"):
        path = base / sub
        path.mkdir(parents=True, exist_ok=True)
        _hand_over(path, chown)
    return base


def prepare_claude_home(settings: Settings, folder: str, *, chown: bool) -> Path:
    """`data/sessions/<folder>/.claude` with settings.json and the shipped skills."""
    home = settings.data_dir / "sessions" / folder / ".claude"
    home.mkdir(parents=True, exist_ok=True)
    settings_file = home / "settings.json"
    if not settings_file.exists():
        settings_file.write_text(json.dumps(CLAUDE_SETTINGS, indent=2) + "\n", encoding="utf-8")
    if SKILLS_DIR.is_dir():
        for skill in SKILLS_DIR.iterdir():
            if skill.is_dir():
                shutil.copytree(skill, home / "skills" / skill.name, dirs_exist_ok=True)
    if chown:
        for path in [home, *home.rglob("*")]:
            os.chown(path, CONTAINER_UID, CONTAINER_UID, follow_symlinks=False)
    return home


def prepare_group_dir(settings: Settings, folder: str, *, chown: bool) -> Path:
    """The group's folder, its memory file writable by the agent."""
    path = group_dir(settings, folder)
    (path / "logs").mkdir(parents=True, exist_ok=True)
    for owned in (path, path / "CLAUDE.md"):
        if owned.exists():
            _hand_over(owned, chown)
    return path


def base_mounts(settings: Settings, folder: str, *, is_main: bool, chown: bool) -> list[Mount]:
    """The mounts every run of this group gets, in SPEC 7.3's order."""
    ensure_global_memory(settings)
    group = prepare_group_dir(settings, folder, chown=chown)
    global_dir = settings.groups_dir / "global"
    mounts: list[Mount] = []
    if is_main:
        mounts.append(Mount(str(settings.root), "/workspace/project", True))
        if (settings.root / ".env").exists():
            mounts.append(Mount("/dev/null", "/workspace/project/.env", True))
    mounts.append(Mount(str(group), "/workspace/group", False))
    if global_dir.is_dir():
        if is_main:
            for owned in (global_dir, global_dir / "CLAUDE.md"):
                if owned.exists():
                    _hand_over(owned, chown)
        mounts.append(Mount(str(global_dir), "/workspace/global", not is_main))
    mounts.append(Mount(str(prepare_claude_home(settings, folder, chown=chown)), f"{CONTAINER_HOME}/.claude", False))
    mounts.append(Mount(str(prepare_ipc(settings, folder, chown=chown)), "/workspace/ipc", False))
    return mounts


def clear_input(settings: Settings, folder: str) -> None:
    """Remove input left by an earlier container (pitfall 14): the prompt already holds it."""
    directory = settings.ipc_dir / folder / "input"
    if not directory.is_dir():
        return
    for leftover in directory.iterdir():
        if leftover.name == "_close" or leftover.suffix in (".json", ".tmp"):
            leftover.unlink(missing_ok=True)
