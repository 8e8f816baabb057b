"""Finds the agent's results in its stdout, however the bytes arrive.

Each result is one JSON line between `---NANOCLAW_OUTPUT_START---` and
`---NANOCLAW_OUTPUT_END---`. Chunks may split a marker or a
result anywhere; text outside markers is kept only for the log; a pair whose
JSON does not parse is reported and skipped. Results are validated strictly,
since a container is untrusted.
"""

from __future__ import annotations

from typing import Literal

import msgspec

START_MARKER = b"---NANOCLAW_OUTPUT_START---"
END_MARKER = b"---NANOCLAW_OUTPUT_END---"


class AgentResult(msgspec.Struct, frozen=True, forbid_unknown_fields=False):
    """One output of the agent runner."""

    status: Literal["success", "error"]
    result: str | None = None
    newSessionId: str | None = None
    error: str | None = None
    inputs: list[str] = []          # piped input files the agent read since its previous output


class OutputParser:
    """Feed stdout chunks; get back the complete results they finish."""

    def __init__(self) -> None:
        self._buffer = bytearray()
        self.malformed: list[str] = []

    def feed(self, chunk: bytes) -> list[AgentResult]:
        self._buffer += chunk
        results: list[AgentResult] = []
        while True:
            start = self._buffer.find(START_MARKER)
            if start < 0:
                # keep a tail that may be the beginning of a split start marker
                keep = len(START_MARKER) - 1
                if len(self._buffer) > keep:
                    del self._buffer[: len(self._buffer) - keep]
                return results
            end = self._buffer.find(END_MARKER, start + len(START_MARKER))
            if end < 0:
                del self._buffer[:start]
                return results
            body = bytes(self._buffer[start + len(START_MARKER) : end]).strip()
            del self._buffer[: end + len(END_MARKER)]
            try:
                results.append(msgspec.json.decode(body, type=AgentResult))
            except msgspec.DecodeError as exc:
                self.malformed.append(f"{exc}: {body[:200]!r}")
