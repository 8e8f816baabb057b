"""The agents the runner can drive, behind one small interface.

A provider gets the run context, answers the initial prompt, then keeps
answering follow-ups from the inbox until the host asks it to close. It
reports results through the emitter and raises on failure; the caller turns
an exception into an error marker and exit code 1.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from agent_runner.inbox import Inbox
from agent_runner.protocol import Emitter, RunnerInput
from agent_runner.tool_types import ToolContext
from agent_runner.workspace import Workspace


@dataclass
class RunContext:
    request: RunnerInput
    workspace: Workspace
    prompt: str
    inbox: Inbox
    out: Emitter
    tools: ToolContext


class Provider(Protocol):
    def run(self, ctx: RunContext) -> None:
        """Serve turns until `_close`; raise on any failure."""


def get_provider(name: str) -> Provider:
    """The provider by name; `claude` is imported only when asked for."""
    if name == "scripted":
        from agent_runner.providers.scripted import ScriptedProvider

        return ScriptedProvider()
    if name == "claude":
        from agent_runner.providers.claude import ClaudeProvider

        return ClaudeProvider()
    raise ValueError(f"unknown provider {name!r}")
