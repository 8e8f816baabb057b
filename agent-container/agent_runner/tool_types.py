"""The shapes every agent tool shares: who calls, what it answers, how it is listed."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable


@dataclass(frozen=True)
class ToolContext:
    """Who is calling: the container's own chat, folder and main flag, and its browser if the image has one."""

    chat_jid: str
    group_folder: str
    is_main: bool
    ipc_dir: Path
    group_dir: Path = Path("/workspace/group")
    browser: Any = None  # agent_runner.browser.Browser, started by its first use


@dataclass(frozen=True)
class ToolReply:
    text: str
    is_error: bool = False


Handler = Callable[[ToolContext, dict[str, Any]], ToolReply]


@dataclass(frozen=True)
class ToolSpec:
    name: str
    description: str
    schema: dict[str, Any]
    handler: Handler
    main_only: bool = False
    needs_browser: bool = False
