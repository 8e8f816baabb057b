"""The runner's start-up and exit, around a provider.

Parses the request, prepares the inbox, builds the first prompt (task
banner, piped messages, task script), hands over to the provider, and turns
any failure into an error marker with exit code 1. A clean `_close` exits 0.
"""

from __future__ import annotations

import os
import sys
import time

from agent_runner.browser import Browser, BrowserConfig, browser_executable
from agent_runner.forwarder import start_forwarders
from agent_runner.inbox import Inbox
from agent_runner.protocol import Emitter, InputError, RunnerInput, log, parse_input, redact
from agent_runner.providers import RunContext, get_provider
from agent_runner.task_script import run_task_script, wake_prompt
from agent_runner.tool_types import ToolContext
from agent_runner.workspace import Workspace

SCHEDULED_TASK_BANNER = (
    "[SCHEDULED TASK - The following message was sent automatically and is not "
    "coming directly from the user or group.]"
)


def main() -> int:
    out = Emitter()
    try:
        request = parse_input(sys.stdin.buffer.read())
    except InputError as exc:
        out.error(f"Failed to parse input: {exc}")
        return 1
    if request.gateway is not None:
        redact.add([request.gateway.token])
        start_forwarders(request.gateway)
    _apply_timezone(request.timezone)
    workspace = Workspace.from_env()
    inbox = Inbox(workspace.input_dir)
    out = Emitter(inputs=inbox.take_consumed)
    try:
        return _run(request, workspace, inbox, out)
    except Exception as exc:  # the contract: every failure becomes a marker
        log(f"agent error: {type(exc).__name__}: {exc}")
        out.error(str(exc) or type(exc).__name__)
        return 1
    finally:
        inbox.close()


def _run(request: RunnerInput, workspace: Workspace, inbox: Inbox, out: Emitter) -> int:
    inbox.open()
    prompt = initial_prompt(request, inbox)
    if request.script and request.is_scheduled_task:
        outcome = run_task_script(request.script)
        if not outcome.wake:
            out.success(None)
            return 0
        prompt = wake_prompt(outcome.data, request.prompt)
    if request.verbose:
        log(f"provider {request.provider}, group {request.group_folder}, prompt {len(prompt)} chars")
    browser = _browser(request, workspace)
    tools = ToolContext(request.chat_jid, request.group_folder, request.is_main, workspace.ipc,
                        group_dir=workspace.group, browser=browser)
    ctx = RunContext(request, workspace, prompt, inbox, out, tools)
    try:
        get_provider(request.provider).run(ctx)
    finally:
        if browser is not None:
            browser.close()
    if request.verbose:
        log("closed by the host; exiting")
    return 0


def _browser(request: RunnerInput, workspace: Workspace) -> Browser | None:
    """The browser the tools drive, when the image carries one; it starts only when first used."""
    executable = browser_executable()
    if executable is None:
        return None
    proxy_port = request.gateway.proxy_port if request.gateway is not None else None
    return Browser(BrowserConfig(executable, workspace.group, proxy_port, request.keep_browser_session))


def initial_prompt(request: RunnerInput, inbox: Inbox) -> str:
    """The input prompt, with the task banner and any messages already piped in."""
    prompt = request.prompt
    if request.is_scheduled_task:
        prompt = f"{SCHEDULED_TASK_BANNER}\n\n{prompt}"
    pending = inbox.drain()
    if pending:
        prompt += "\n" + "\n".join(pending)
    return prompt


def _apply_timezone(zone: str) -> None:
    """The host's TIMEZONE for the agent, its tools and the task script."""
    if zone:
        os.environ["TZ"] = zone
        time.tzset()
