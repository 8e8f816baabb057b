"""A deterministic stand-in for the model, driven by a script in the request.

Tests and dry runs need an agent whose every move is known in advance:
replies, tool calls, errors, crashes, slow turns, oversized output and
garbage on stdout. With no script it echoes each prompt verbatim, so a test
can read exactly what the runner would have sent to the model.
"""

from __future__ import annotations

import os
import secrets
import string
import sys
import time
from dataclasses import dataclass, field
from typing import Any, Callable

from agent_runner.protocol import log
from agent_runner.providers import RunContext
from agent_runner.tools import call_tool

ECHO = [{"reply_prompt": True}]
_FILLER = string.ascii_lowercase + string.digits


class ScriptedFailure(Exception):
    """The script's `raise` step."""


@dataclass
class Script:
    turns: list[list[dict[str, Any]]] = field(default_factory=list)
    default: str = "echo"

    @classmethod
    def parse(cls, raw: dict[str, Any] | None) -> "Script":
        if raw is None:
            return cls()
        turns = raw.get("turns", [])
        default = raw.get("default", "echo")
        if not isinstance(turns, list) or not all(
            isinstance(turn, list) and all(isinstance(step, dict) for step in turn) for turn in turns
        ):
            raise ValueError("scripted.turns must be a list of lists of step objects")
        if default not in ("echo", "silent"):
            raise ValueError("scripted.default must be 'echo' or 'silent'")
        return cls(turns, default)

    def steps(self, turn: int) -> list[dict[str, Any]]:
        if turn < len(self.turns):
            return self.turns[turn]
        return ECHO if self.default == "echo" else []


class ScriptedProvider:
    def run(self, ctx: RunContext) -> None:
        script = Script.parse(ctx.request.scripted)
        ctx.out.session_id = ctx.request.session_id or f"scripted-{secrets.token_hex(8)}"
        prompt, turn = ctx.prompt, 0
        if not prompt:  # a ready agent: its first turn is the first input
            pending = ctx.inbox.next_messages()
            if pending is None:
                return
            prompt = "\n".join(pending)
        while True:
            self._turn(ctx, script.steps(turn), prompt)
            pending = ctx.inbox.next_messages()
            if pending is None:
                return
            prompt, turn = "\n".join(pending), turn + 1

    def _turn(self, ctx: RunContext, steps: list[dict[str, Any]], prompt: str) -> None:
        before = ctx.out.count
        for step in steps:
            _run_step(ctx, step, prompt)
        if ctx.out.count == before:
            ctx.out.success(None)


def _run_step(ctx: RunContext, step: dict[str, Any], prompt: str) -> None:
    for key, action in _STEPS.items():
        if key in step:
            action(ctx, step, prompt)
            return
    raise ValueError(f"unknown scripted step: {step!r}")


def _tool(ctx: RunContext, step: dict[str, Any], prompt: str) -> None:
    """Call a tool; with `"show": true` its reply is also an output, so a test reads it in the chat."""
    name = step["tool"]
    started = time.perf_counter()
    reply = call_tool(name, ctx.tools, step.get("args") or {})
    log(f"tool {name} took {(time.perf_counter() - started) * 1000:.1f} ms")  # bench/browser.py reads this
    log(f"tool {name}{' error' if reply.is_error else ''}: {reply.text}")
    if step.get("show"):
        ctx.out.success(f"[{name}{' error' if reply.is_error else ''}] {reply.text}")


def _crash(ctx: RunContext, step: dict[str, Any], prompt: str) -> None:
    code = int(step["crash"])
    log(f"scripted crash with exit code {code}")
    sys.stdout.flush()
    os._exit(code)


def _raise(ctx: RunContext, step: dict[str, Any], prompt: str) -> None:
    raise ScriptedFailure(str(step["raise"]))


def _stderr(ctx: RunContext, step: dict[str, Any], prompt: str) -> None:
    text = str(step["stderr"])
    sys.stderr.write(text if text.endswith("\n") else text + "\n")
    sys.stderr.flush()


def _session(ctx: RunContext, step: dict[str, Any], prompt: str) -> None:
    ctx.out.session_id = str(step["session"])


_STEPS: dict[str, Callable[[RunContext, dict[str, Any], str], None]] = {
    "reply": lambda ctx, step, prompt: ctx.out.success(str(step["reply"])),
    "reply_prompt": lambda ctx, step, prompt: ctx.out.success(prompt),
    "reply_size": lambda ctx, step, prompt: ctx.out.success(
        (_FILLER * (int(step["reply_size"]) // len(_FILLER) + 1))[: int(step["reply_size"])]
    ),
    "sleep": lambda ctx, step, prompt: time.sleep(float(step["sleep"])),
    "tool": _tool,
    "error": lambda ctx, step, prompt: ctx.out.error(str(step["error"])),
    "raise": _raise,
    "crash": _crash,
    "stderr": _stderr,
    "stdout": lambda ctx, step, prompt: ctx.out.raw(str(step["stdout"])),
    "session": _session,
}
