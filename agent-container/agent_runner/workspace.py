"""Where the runner finds the group's folders inside the container.

Everything hangs off one root, `/workspace` in the image, so host-side tests
can point `NANOCLAW_WORKSPACE` at a temporary directory and run the same
code outside Docker.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

DEFAULT_WORKSPACE = "/workspace"
DEFAULT_HOME = "/home/node"


@dataclass(frozen=True)
class Workspace:
    root: Path

    @classmethod
    def from_env(cls) -> "Workspace":
        return cls(Path(os.environ.get("NANOCLAW_WORKSPACE") or DEFAULT_WORKSPACE))

    @property
    def group(self) -> Path:
        return self.root / "group"

    @property
    def global_dir(self) -> Path:
        return self.root / "global"

    @property
    def extra(self) -> Path:
        return self.root / "extra"

    @property
    def ipc(self) -> Path:
        return self.root / "ipc"

    @property
    def input_dir(self) -> Path:
        return self.ipc / "input"

    def extra_dirs(self) -> list[Path]:
        """Each directory directly under `extra/` (the SDK's additional dirs)."""
        try:
            entries = sorted(self.extra.iterdir())
        except OSError:
            return []
        return [entry for entry in entries if entry.is_dir()]

    def global_memory(self) -> str | None:
        """The text of the global CLAUDE.md, or None when there is none."""
        try:
            return (self.global_dir / "CLAUDE.md").read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            return None


def claude_config_dir() -> Path:
    """`$HOME/.claude`: the per-group mount that keeps sessions and skills."""
    return Path(os.environ.get("HOME") or DEFAULT_HOME) / ".claude"
