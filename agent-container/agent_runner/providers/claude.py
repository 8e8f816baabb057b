"""The real agent: one Claude Code session for the container's lifetime.

The SDK client is fed a stream of user messages: the first prompt, then
every follow-up as soon as it lands in the inbox, so the CLI can take it in
mid-turn. `_close` ends the stream; the SDK lets the current turn finish,
closes the CLI's stdin and the message stream ends. Each ResultMessage is
one output marker. If the CLI ends on its own, the session is resumed for
the next message.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from typing import Any, AsyncIterator

from claude_agent_sdk import AssistantMessage, ClaudeSDKClient, ResultError, ResultMessage, SystemMessage

from agent_runner.protocol import log
from agent_runner.providers import RunContext
from agent_runner.providers.claude_options import build_options

STDERR_TAIL_LINES = 20


class AgentFailure(Exception):
    """The SDK or the CLI failed; the message carries the CLI's last words."""


class _SdkLogBridge(logging.Handler):
    """The SDK's own warnings, prefixed and redacted like every other line."""

    def emit(self, record: logging.LogRecord) -> None:
        log(f"{record.name}: {record.getMessage()}")


class ClaudeProvider:
    def run(self, ctx: RunContext) -> None:
        sdk_logger = logging.getLogger("claude_agent_sdk")
        sdk_logger.addHandler(_SdkLogBridge(logging.DEBUG if ctx.request.verbose else logging.WARNING))
        sdk_logger.setLevel(logging.DEBUG if ctx.request.verbose else logging.WARNING)
        sdk_logger.propagate = False
        asyncio.run(_Session(ctx).serve())


class _Session:
    def __init__(self, ctx: RunContext) -> None:
        self.ctx = ctx
        self.closed = False
        self.last_assistant_uuid: str | None = None
        self.last_result_failed = False
        self.stderr_tail: deque[str] = deque(maxlen=STDERR_TAIL_LINES)

    async def serve(self) -> None:
        prompt, resume_at = self.ctx.prompt, None
        while True:
            await self._query(prompt, resume_at)
            if self.closed:
                return
            # The CLI ended the query by itself: report, then wait to resume.
            log("the query ended without a close request; waiting for the next message")
            self.ctx.out.success(None)
            pending = await self.ctx.inbox.next_messages_async()
            if pending is None:
                return
            prompt, resume_at = "\n".join(pending), self.last_assistant_uuid

    async def _query(self, prompt: str, resume_at: str | None) -> None:
        resume = self.ctx.out.session_id or self.ctx.request.session_id
        options = build_options(self.ctx, resume=resume, resume_at=resume_at, on_stderr=self._stderr)
        client = ClaudeSDKClient(options)
        try:
            await client.connect(self._prompts(prompt))
            if self.ctx.request.verbose:
                log("the CLI is connected")  # its start-up is done (bench/agent_latency.py times this line)
            async for message in client.receive_messages():
                self._handle(message)
        except ResultError as exc:
            # After a failed turn the CLI exits non-zero when its input ends;
            # that turn was already reported, so this is a normal end.
            if not self.last_result_failed:
                raise AgentFailure(self._describe(exc)) from exc
            log(f"the CLI exited after a failed turn: {exc}")
        except Exception as exc:
            raise AgentFailure(self._describe(exc)) from exc
        finally:
            await client.disconnect()

    async def _prompts(self, first: str) -> AsyncIterator[dict[str, Any]]:
        """The user-message stream: the prompt, then follow-ups until `_close`.

        With no prompt (a ready agent) the CLI is started and connected, and
        the first message it sees is the first input the host pipes in.
        """
        if first:
            yield _user_message(first)
        elif self.ctx.request.verbose:
            log("ready: the CLI is up and waits for the first input")
        while True:
            pending = await self.ctx.inbox.next_messages_async()
            if pending is None:
                self.closed = True
                if self.ctx.request.verbose:
                    log("close requested; finishing the current turn")
                return
            for text in pending:
                if self.ctx.request.verbose:
                    log(f"piping a follow-up message ({len(text)} chars)")
                yield _user_message(text)

    def _handle(self, message: Any) -> None:
        out = self.ctx.out
        if isinstance(message, SystemMessage):
            if message.subtype == "init" and message.data.get("session_id"):
                out.session_id = message.data["session_id"]
                if self.ctx.request.verbose:
                    log(f"session {out.session_id}")
            elif message.subtype == "task_notification":
                log(f"task notification: {message.data.get('summary') or message.data}")
        elif isinstance(message, AssistantMessage):
            if message.uuid:
                self.last_assistant_uuid = message.uuid
        elif isinstance(message, ResultMessage):
            if message.session_id:
                out.session_id = message.session_id
            self.last_result_failed = message.is_error
            if message.is_error:
                out.error(_result_error(message))
            else:
                out.success(message.result or None)

    def _stderr(self, line: str) -> None:
        line = line.rstrip()
        if line:
            self.stderr_tail.append(line)
            log(f"claude: {line}")

    def _describe(self, exc: Exception) -> str:
        text = f"{type(exc).__name__}: {exc}"
        if self.stderr_tail:
            text += "\n" + "\n".join(self.stderr_tail)
        return text


def _user_message(text: str) -> dict[str, Any]:
    return {
        "type": "user",
        "message": {"role": "user", "content": text},
        "parent_tool_use_id": None,
        "session_id": "default",
    }


def _result_error(message: ResultMessage) -> str:
    parts = [message.result or "", *(message.errors or [])]
    detail = "; ".join(part for part in parts if part)
    return detail or f"the agent's turn failed ({message.subtype})"
