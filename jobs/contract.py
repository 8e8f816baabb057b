"""The host's half of its contract with the agent runner in the container.

The runner reads one `AgentInput` as JSON on stdin and prints each result
as one JSON line between `OUTPUT_START` and `OUTPUT_END` on stdout. The
container's half is agent-container/agent_runner/protocol.py (the image
cannot import host code); tests/test_contract.py keeps the two equal.
"""

from __future__ import annotations

from typing import Literal

import msgspec

from base.config import DEFAULT_ASSISTANT_NAME

OUTPUT_START = "---NANOCLAW_OUTPUT_START---"
OUTPUT_END = "---NANOCLAW_OUTPUT_END---"
_START = OUTPUT_START.encode()
_END = OUTPUT_END.encode()


class AgentInput(msgspec.Struct, kw_only=True):
    """The one JSON document the agent runner reads on stdin."""

    prompt: str
    groupFolder: str
    chatJid: str
    isMain: bool
    assistantName: str = DEFAULT_ASSISTANT_NAME
    sessionId: str | None = None
    isScheduledTask: bool = False
    script: str | None = None
    provider: str = "claude"
    scripted: dict | None = None
    gateway: dict | None = None            # filled in by the runner once the run's gateway is open
    timezone: str = ""                     # empty: the container keeps the TZ it was started with
    verbose: bool = False
    keepBrowserSession: bool = False       # the group keeps its browser cookies between containers


class AgentResult(msgspec.Struct, frozen=True, forbid_unknown_fields=False):
    """One output of the agent runner."""

    status: Literal["success", "error"]
    result: str | None = None
    newSessionId: str | None = None
    error: str | None = None
    inputs: list[str] = []          # piped input files the agent read since its previous output


class OutputParser:
    """Feed stdout chunks; get back the complete results they finish.

    Chunks may split a marker or a result anywhere; text outside markers is
    ignored (the caller keeps it for the log); a pair whose JSON does not
    decode is remembered in `malformed` and skipped. Results are validated
    strictly, since a container is untrusted.
    """

    def __init__(self) -> None:
        self._buffer = bytearray()
        self.malformed: list[str] = []

    def feed(self, chunk: bytes) -> list[AgentResult]:
        self._buffer += chunk
        results: list[AgentResult] = []
        while True:
            start = self._buffer.find(_START)
            if start < 0:
                # keep a tail that may be the beginning of a split start marker
                keep = len(_START) - 1
                if len(self._buffer) > keep:
                    del self._buffer[: len(self._buffer) - keep]
                return results
            end = self._buffer.find(_END, start + len(_START))
            if end < 0:
                del self._buffer[:start]
                return results
            body = bytes(self._buffer[start + len(_START) : end]).strip()
            del self._buffer[: end + len(_END)]
            try:
                results.append(msgspec.json.decode(body, type=AgentResult))
            except msgspec.DecodeError as exc:
                self.malformed.append(f"{exc}: {body[:200]!r}")
