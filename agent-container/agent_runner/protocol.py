"""The runner's contract with the host: the stdin request and stdout markers.

The host sends one JSON object and closes stdin; the runner answers with
any number of outputs, each three lines (start marker, one JSON line, end
marker), flushed at once so the host can stream them. Everything else goes
to stderr. The host's half is jobs/contract.py, which this image cannot
import; tests/test_contract.py keeps the two equal. No real credential ever
arrives: only the run's gateway token, kept out of every log line.
"""

from __future__ import annotations

import json
import sys
import threading
from dataclasses import dataclass, field
from typing import Any, Callable, Literal

OUTPUT_START = "---NANOCLAW_OUTPUT_START---"
OUTPUT_END = "---NANOCLAW_OUTPUT_END---"
LOG_PREFIX = "[agent-runner] "

PROVIDERS = ("claude", "scripted")


class InputError(ValueError):
    """The stdin request is not the JSON object the runner expects."""


@dataclass(frozen=True)
class GatewayAccess:
    """Where the host's credential gateway is: its socket folder, the local ports, the run's token."""

    token: str = field(repr=False)
    socket_dir: str
    api_port: int
    proxy_port: int

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"


@dataclass
class RunnerInput:
    """The host's request: v1's fields plus the provider, the gateway and flags."""

    prompt: str
    group_folder: str
    chat_jid: str
    is_main: bool
    assistant_name: str = "Andy"
    session_id: str | None = None
    is_scheduled_task: bool = False
    script: str | None = None
    provider: str = "claude"
    scripted: dict[str, Any] | None = None
    gateway: GatewayAccess | None = None
    timezone: str = ""
    verbose: bool = False
    keep_browser_session: bool = False


# stdin field name -> (attribute, accepted types, required)
INPUT_FIELDS: dict[str, tuple[str, tuple[type, ...], bool]] = {
    "prompt": ("prompt", (str,), True),
    "groupFolder": ("group_folder", (str,), True),
    "chatJid": ("chat_jid", (str,), True),
    "isMain": ("is_main", (bool,), True),
    "assistantName": ("assistant_name", (str,), False),
    "sessionId": ("session_id", (str, type(None)), False),
    "isScheduledTask": ("is_scheduled_task", (bool,), False),
    "script": ("script", (str, type(None)), False),
    "provider": ("provider", (str,), False),
    "scripted": ("scripted", (dict, type(None)), False),
    "gateway": ("gateway", (dict, type(None)), False),
    "timezone": ("timezone", (str,), False),
    "verbose": ("verbose", (bool,), False),
    "keepBrowserSession": ("keep_browser_session", (bool,), False),
}


def parse_input(raw: bytes) -> RunnerInput:
    """Decode and check the request; raise InputError naming what is wrong."""
    try:
        data = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(str(exc)) from None
    if not isinstance(data, dict):
        raise InputError("expected a JSON object")
    values: dict[str, Any] = {}
    for key, (attr, types, required) in INPUT_FIELDS.items():
        if key not in data:
            if required:
                raise InputError(f"missing field {key!r}")
            continue
        value = data[key]
        if not isinstance(value, types):
            raise InputError(f"field {key!r} has the wrong type ({type(value).__name__})")
        values[attr] = value
    result = RunnerInput(**values)
    if result.provider not in PROVIDERS:
        raise InputError(f"unknown provider {result.provider!r} (accepted: {', '.join(PROVIDERS)})")
    if result.gateway is not None:
        result.gateway = _gateway(result.gateway)  # type: ignore[arg-type]
    return result


def _gateway(raw: dict[str, Any]) -> GatewayAccess:
    token, socket_dir = raw.get("token"), raw.get("socketDir")
    ports = [raw.get("apiPort"), raw.get("proxyPort")]
    if not isinstance(token, str) or not token:
        raise InputError("field 'gateway' needs a non-empty 'token'")
    if not isinstance(socket_dir, str) or not socket_dir.startswith("/"):
        raise InputError("field 'gateway' needs an absolute 'socketDir'")
    if not all(isinstance(port, int) and not isinstance(port, bool) and 0 < port < 65536 for port in ports):
        raise InputError("field 'gateway' needs 'apiPort' and 'proxyPort' between 1 and 65535")
    return GatewayAccess(token, socket_dir, ports[0], ports[1])  # type: ignore[arg-type]


@dataclass(frozen=True)
class RunnerOutput:
    """One output as the host reads it; the optional fields are written only when set."""

    status: Literal["success", "error"]
    result: str | None = None
    newSessionId: str | None = None
    error: str | None = None
    inputs: list[str] = field(default_factory=list)  # piped input files read since the previous output

    def to_json(self) -> str:
        payload: dict[str, Any] = {"status": self.status, "result": self.result}
        if self.newSessionId:
            payload["newSessionId"] = self.newSessionId
        if self.error is not None:
            payload["error"] = self.error
        if self.inputs:
            payload["inputs"] = self.inputs
        return json.dumps(payload, ensure_ascii=False, separators=(",", ":"))


class Redactor:
    """Replaces every known secret value with `***` in text bound for a log."""

    def __init__(self) -> None:
        self._values: list[str] = []

    def add(self, values: list[str]) -> None:
        new = [v for v in values if len(v) >= 4]
        self._values = sorted(set(self._values) | set(new), key=len, reverse=True)

    def __call__(self, text: str) -> str:
        for value in self._values:
            if value in text:
                text = text.replace(value, "***")
        return text


redact = Redactor()
_stderr_lock = threading.Lock()


def log(message: str) -> None:
    """One diagnostic line on stderr, prefixed and with secrets masked."""
    text = redact(message)
    with _stderr_lock:
        for line in text.splitlines() or [""]:
            sys.stderr.write(LOG_PREFIX + line + "\n")
        sys.stderr.flush()


class Emitter:
    """Writes output markers to stdout, one complete frame per call.

    The session id is shared state: providers update `session_id` as they
    learn it, and every later output carries it as `newSessionId`. Each
    output also names the piped input files read since the previous one
    (`inputs`), so the host knows which follow-ups the agent has handled.
    """

    def __init__(self, stream: Any = None, inputs: Callable[[], list[str]] | None = None) -> None:
        self._stream = stream if stream is not None else sys.stdout.buffer
        self._lock = threading.Lock()
        self._inputs = inputs
        self.session_id: str | None = None
        self.count = 0

    def success(self, result: str | None) -> None:
        self._write("success", result)

    def error(self, message: str) -> None:
        self._write("error", None, redact(message))

    def _write(self, status: Literal["success", "error"], result: str | None, error: str | None = None) -> None:
        inputs = self._inputs() if self._inputs else []
        body = RunnerOutput(status, result, self.session_id, error, inputs).to_json()
        frame = f"{OUTPUT_START}\n{body}\n{OUTPUT_END}\n".encode("utf-8")
        with self._lock:
            self._stream.write(frame)
            self._stream.flush()
            self.count += 1

    def raw(self, text: str) -> None:
        """Text outside any marker (the scripted provider's garbage step)."""
        with self._lock:
            self._stream.write(text.encode("utf-8"))
            self._stream.flush()
