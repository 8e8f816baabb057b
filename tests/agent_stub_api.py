"""Test helpers for the agent runner: a Messages API stand-in, and runner drivers.

`StubAnthropicAPI` is a local stand-in for Anthropic's API. It speaks just enough of the wire protocol (POST /v1/messages with streamed
server-sent events) for the Claude Agent SDK inside an agent container to
run a whole turn: the first request is answered with a call to the
`mcp__nanoclaw__send_message` tool, the request carrying its tool result
with the text "Done.". Every request is recorded so tests can check what
the CLI sent: tools offered, system prompt, API key.

`RunnerProcess` (the runner as a host process) and `RunnerContainer` (the
runner in a container of the test image) share one driver interface: read
the next output marker, pipe a follow-up message, close, wait for the exit.
"""

from __future__ import annotations

import itertools
import json
import os
import queue
import socket
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Iterator

from jobs.contract import OUTPUT_END, OUTPUT_START
from rules.ipc_folder import CLOSE_SENTINEL, INPUT_DIR

SEND_TOOL = "mcp__nanoclaw__send_message"
TOOL_TEXT = "hello from the stand-in"
FINAL_TEXT = "Done."
MODEL = "claude-stand-in"
# A user message containing this makes the stand-in answer 400, like a refused request.
FAIL_MARKER = "[stand-in: fail]"
# A user message containing this makes the stand-in think for SLOW_S seconds before it answers.
SLOW_MARKER = "[stand-in: slow]"
SLOW_S = 3.0
# The Messages API's error types by HTTP status.
API_ERROR_TYPES = {400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
                   429: "rate_limit_error", 500: "api_error", 529: "overloaded_error"}


@dataclass
class RecordedRequest:
    path: str
    headers: dict[str, str]
    body: dict[str, Any]

    @property
    def tool_names(self) -> list[str]:
        return [tool.get("name", "") for tool in self.body.get("tools", [])]

    @property
    def system_text(self) -> str:
        system = self.body.get("system", "")
        if isinstance(system, str):
            return system
        return "\n".join(block.get("text", "") for block in system if isinstance(block, dict))

    def has_tool_result(self) -> bool:
        for message in self.body.get("messages", []):
            content = message.get("content")
            if isinstance(content, list) and any(
                isinstance(block, dict) and block.get("type") == "tool_result" for block in content
            ):
                return True
        return False

    def last_user_text(self) -> str:
        """The last text block of the last user message (the newest thing the user said)."""
        for message in reversed(self.body.get("messages", [])):
            if message.get("role") != "user":
                continue
            content = message.get("content")
            if isinstance(content, str):
                return content
            texts = [block.get("text", "") for block in content
                     if isinstance(block, dict) and block.get("type") == "text"]
            return texts[-1] if texts else ""
        return ""


@dataclass
class StubAnthropicAPI:
    """Run with `with StubAnthropicAPI() as api:`; `api.url` is the base URL."""

    host: str = "127.0.0.1"
    requests: list[RecordedRequest] = field(default_factory=list)
    fail_with: int | None = None   # answer every conversation request with this HTTP status, as the API would
    hang_s: float = 0.0            # say nothing this long before answering

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer((self.host, 0), _handler_for(self))
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def port(self) -> int:
        return self._server.server_address[1]

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def __enter__(self) -> "StubAnthropicAPI":
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._server.shutdown()
        self._server.server_close()

    def record(self, request: RecordedRequest) -> None:
        with self._lock:
            self.requests.append(request)

    def model_requests(self) -> list[RecordedRequest]:
        """The conversation requests (those that offer tools), in order."""
        with self._lock:
            return [r for r in self.requests if r.path.startswith("/v1/messages") and r.body.get("tools")]

    def answer(self, request: RecordedRequest) -> tuple[list[dict[str, Any]], str]:
        """Content blocks and stop reason for a request; override to script differently."""
        if SEND_TOOL in request.tool_names and not request.has_tool_result():
            call = {"type": "tool_use", "id": f"toolu_{len(self.requests):04d}", "name": SEND_TOOL,
                    "input": {"text": TOOL_TEXT}}
            return [call], "tool_use"
        return [{"type": "text", "text": FINAL_TEXT}], "end_turn"


def _handler_for(api: StubAnthropicAPI) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:  # keep test output quiet
            return

        def do_POST(self) -> None:
            length = int(self.headers.get("content-length") or 0)
            raw = self.rfile.read(length) if length else b"{}"
            try:
                body = json.loads(raw or b"{}")
            except ValueError:
                body = {}
            request = RecordedRequest(self.path, {k.lower(): v for k, v in self.headers.items()}, body)
            api.record(request)
            if not self.path.startswith("/v1/messages") or self.path.startswith("/v1/messages/count_tokens"):
                self._send_json({"input_tokens": 10} if "count_tokens" in self.path else {})
                return
            if SLOW_MARKER in request.last_user_text():
                time.sleep(SLOW_S)
            if api.hang_s:
                time.sleep(api.hang_s)
            if api.fail_with is not None:
                kind = API_ERROR_TYPES.get(api.fail_with, "api_error")
                self._send(api.fail_with, "application/json", json.dumps({"type": "error", "error": {
                    "type": kind, "message": f"the stand-in answers {api.fail_with}"}}).encode())
                return
            if FAIL_MARKER in request.last_user_text():
                self._send(400, "application/json", json.dumps({"type": "error", "error": {
                    "type": "invalid_request_error", "message": "the stand-in refused this request"}}).encode())
                return
            blocks, stop_reason = api.answer(request)
            if body.get("stream"):
                self._send(200, "text/event-stream", sse_body(blocks, stop_reason))
            else:
                self._send_json(message_json(blocks, stop_reason))

        def do_GET(self) -> None:
            api.record(RecordedRequest(self.path, dict(self.headers.items()), {}))
            self._send_json({})

        def do_HEAD(self) -> None:
            self._send(200, "application/json", b"")

        def _send_json(self, payload: dict[str, Any]) -> None:
            self._send(200, "application/json", json.dumps(payload).encode())

        def _send(self, status: int, content_type: str, payload: bytes) -> None:
            self.send_response(status)
            self.send_header("content-type", content_type)
            self.send_header("content-length", str(len(payload)))
            self.send_header("request-id", "req_stand_in")
            self.end_headers()
            self.wfile.write(payload)

    return Handler


def message_json(blocks: list[dict[str, Any]], stop_reason: str) -> dict[str, Any]:
    return {
        "id": "msg_stand_in", "type": "message", "role": "assistant", "model": MODEL,
        "content": blocks, "stop_reason": stop_reason, "stop_sequence": None,
        "usage": {"input_tokens": 10, "output_tokens": 5},
    }


def sse_body(blocks: list[dict[str, Any]], stop_reason: str) -> bytes:
    """The event sequence the Messages API streams for one assistant message."""
    start = message_json([], None)  # type: ignore[arg-type]
    events: list[tuple[str, dict[str, Any]]] = [("message_start", {"type": "message_start", "message": start})]
    for index, block in enumerate(blocks):
        events += _block_events(index, block)
    events += [
        ("message_delta", {"type": "message_delta", "delta": {"stop_reason": stop_reason, "stop_sequence": None},
                           "usage": {"output_tokens": 5}}),
        ("message_stop", {"type": "message_stop"}),
    ]
    return "".join(f"event: {name}\ndata: {json.dumps(data)}\n\n" for name, data in events).encode()


def _block_events(index: int, block: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    if block["type"] == "tool_use":
        opening = {"type": "tool_use", "id": block["id"], "name": block["name"], "input": {}}
        delta = {"type": "input_json_delta", "partial_json": json.dumps(block["input"])}
    else:
        opening = {"type": "text", "text": ""}
        delta = {"type": "text_delta", "text": block["text"]}
    return [
        ("content_block_start", {"type": "content_block_start", "index": index, "content_block": opening}),
        ("content_block_delta", {"type": "content_block_delta", "index": index, "delta": delta}),
        ("content_block_stop", {"type": "content_block_stop", "index": index}),
    ]


@contextmanager
def gateway_in_front(api: StubAnthropicAPI, key: str, run_id: str = "stand-in-run") -> Iterator[Any]:
    """A real credential gateway (jobs/gateway.py) holding `key`, in front of the stand-in.

    Needs NANOCLAW_ROOT and HOME set (the `root` fixture). Yields the run's
    RunAccess: its socket folder to mount at /run/nanoclaw, and
    `runner_field()` for the request.
    """
    from base.config import load_settings
    from jobs.gateway import Gateway

    previous = {name: os.environ.get(name) for name in ("ANTHROPIC_BASE_URL", "ANTHROPIC_API_KEY")}
    os.environ.update(ANTHROPIC_BASE_URL=api.url, ANTHROPIC_API_KEY=key)
    settings = load_settings()
    settings.ensure_dirs()
    gateway = Gateway(settings, lambda event: None)
    try:
        yield gateway.open_run(run_id, "family", "model-only")
    finally:
        gateway.stop()
        for name, value in previous.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


# --- driving the runner ------------------------------------------------------

AGENT_CONTAINER_DIR = Path(__file__).resolve().parent.parent / "agent-container"


def make_workspace(root: Path) -> Path:
    """A workspace tree like the image's, writable by the container's uid 1000."""
    for sub in ("group", "global", "extra", "ipc/messages", "ipc/tasks", "ipc/input"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    for path in [root, *root.rglob("*")]:
        path.chmod(0o777)
    return root


_PIPED = itertools.count()


def pipe_message(ipc_dir: Path, text: str, name: str | None = None) -> Path:
    """Drop a follow-up into `input/` the way the host does: tmp file, then rename."""
    inbox = ipc_dir / INPUT_DIR
    name = name or f"{time.time_ns()}-{next(_PIPED):06d}.json"
    tmp = inbox / f"{name}.tmp"
    tmp.write_text(json.dumps({"type": "message", "text": text}))
    os.chmod(tmp, 0o666)
    final = inbox / name
    os.rename(tmp, final)
    return final


def request_close(ipc_dir: Path) -> None:
    (ipc_dir / INPUT_DIR / CLOSE_SENTINEL).touch()


class RunnerDriver:
    """Line-level access to a running runner: markers, raw lines, exit."""

    def __init__(self, ipc_dir: Path) -> None:
        self.ipc_dir = ipc_dir
        self.lines: "queue.Queue[str | None]" = queue.Queue()
        self.stdout_lines: list[str] = []
        self.stderr_chunks: list[str] = []
        self.outputs: list[dict[str, Any]] = []

    def _feed_stdout(self, line: str) -> None:
        self.stdout_lines.append(line)
        self.lines.put(line)

    def next_output(self, timeout: float = 30.0) -> dict[str, Any]:
        """The next parsed marker body; AssertionError on timeout or exit."""
        deadline = time.monotonic() + timeout
        inside: list[str] | None = None
        while True:
            remaining = deadline - time.monotonic()
            try:
                line = self.lines.get(timeout=max(remaining, 0.001))
            except queue.Empty:
                raise AssertionError(f"no output within {timeout}s; stderr: {self.stderr[-2000:]}") from None
            if line is None:
                self.lines.put(None)  # later calls see the exit too
                raise AssertionError(f"runner exited without another output; stderr: {self.stderr[-2000:]}")
            if line == OUTPUT_START:
                inside = []
            elif line == OUTPUT_END and inside is not None:
                output = json.loads("\n".join(inside))
                self.outputs.append(output)
                return output
            elif inside is not None:
                inside.append(line)

    def send(self, text: str) -> str:
        """Pipe a follow-up; returns its file name (the output that handles it lists it in `inputs`)."""
        return pipe_message(self.ipc_dir, text).name

    def close(self) -> None:
        request_close(self.ipc_dir)

    @property
    def stdout(self) -> str:
        return "\n".join(self.stdout_lines)

    @property
    def stderr(self) -> str:
        return "".join(self.stderr_chunks)


class RunnerProcess(RunnerDriver):
    """`python -m agent_runner` on the host, workspace in a temporary directory."""

    def __init__(self, workspace: Path, request: dict[str, Any] | bytes, *, env: dict[str, str] | None = None,
                 python: str | None = None) -> None:
        super().__init__(workspace / "ipc")
        payload = request if isinstance(request, bytes) else json.dumps(request).encode()
        full_env = {k: v for k, v in os.environ.items() if not k.startswith("ANTHROPIC_")}
        full_env.update(PYTHONPATH=str(AGENT_CONTAINER_DIR), NANOCLAW_WORKSPACE=str(workspace),
                        HOME=str(workspace / "home"), PYTHONDONTWRITEBYTECODE="1", **(env or {}))
        self.proc = subprocess.Popen(
            [python or sys.executable, "-m", "agent_runner"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, env=full_env, cwd=str(workspace),
        )
        self._threads = [
            threading.Thread(target=self._read_stdout, daemon=True),
            threading.Thread(target=self._read_stderr, daemon=True),
        ]
        for thread in self._threads:
            thread.start()
        self.proc.stdin.write(payload)
        self.proc.stdin.close()

    def _read_stdout(self) -> None:
        for raw in self.proc.stdout:
            self._feed_stdout(raw.decode("utf-8", "replace").rstrip("\n"))
        self.lines.put(None)

    def _read_stderr(self) -> None:
        for raw in self.proc.stderr:
            self.stderr_chunks.append(raw.decode("utf-8", "replace"))

    def wait(self, timeout: float = 30.0) -> int:
        try:
            code = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            raise AssertionError(f"runner still running after {timeout}s; stderr: {self.stderr[-2000:]}") from None
        for thread in self._threads:
            thread.join(5)
        return code


def parse_outputs(stdout: str) -> list[dict[str, Any]]:
    """Every marker body in a captured stdout, in order."""
    outputs, rest = [], stdout
    while OUTPUT_START in rest:
        rest = rest.split(OUTPUT_START, 1)[1]
        body, found, rest = rest.partition(OUTPUT_END)
        if not found:
            break
        outputs.append(json.loads(body.strip()))
    return outputs


class RunnerContainer(RunnerDriver):
    """The runner in a container of the agent image, with the workspace bind-mounted.

    Mounts `<workspace>/group`, `<workspace>/ipc` (and `global` read-only)
    plus `claude_dir` as /home/node/.claude (and a gateway run's socket
    folder at /run/nanoclaw when given), runs as uid 1000, feeds the
    request on stdin through an attach socket and reads stdout live.
    """

    def __init__(self, image: str, workspace: Path, request: dict[str, Any], *, claude_dir: Path,
                 network_mode: str = "none", gateway_dir: Path | None = None, **create_kwargs: Any) -> None:
        import docker
        from docker.utils.socket import frames_iter

        super().__init__(workspace / "ipc")
        self._frames_iter = frames_iter
        self.client = docker.from_env()
        volumes = {
            str(workspace / "group"): {"bind": "/workspace/group", "mode": "rw"},
            str(workspace / "ipc"): {"bind": "/workspace/ipc", "mode": "rw"},
            str(workspace / "global"): {"bind": "/workspace/global", "mode": "ro"},
            str(claude_dir): {"bind": "/home/node/.claude", "mode": "rw"},
        }
        if gateway_dir is not None:  # a run's socket folder from a real jobs.gateway.Gateway
            volumes[str(gateway_dir)] = {"bind": "/run/nanoclaw", "mode": "ro"}
        self.container = self.client.containers.create(
            image, stdin_open=True, network_mode=network_mode, init=True,
            volumes=volumes, labels={"nanoclaw.test": "agent-image"}, **{"user": "1000:1000", **create_kwargs},
        )
        self._sock = self.client.api.attach_socket(
            self.container.id, params={"stdin": 1, "stdout": 1, "stderr": 1, "stream": 1}
        )
        self.container.start()
        self._sock._sock.sendall(json.dumps(request).encode())
        self._sock._sock.shutdown(socket.SHUT_WR)
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        pending = b""
        try:
            for stream, chunk in self._frames_iter(self._sock, tty=False):
                if stream == 2:
                    self.stderr_chunks.append(chunk.decode("utf-8", "replace"))
                    continue
                pending += chunk
                *complete, pending = pending.split(b"\n")
                for line in complete:
                    self._feed_stdout(line.decode("utf-8", "replace"))
        finally:
            if pending:
                self._feed_stdout(pending.decode("utf-8", "replace"))
            self.lines.put(None)

    def wait(self, timeout: float = 60.0) -> int:
        timer = threading.Timer(timeout, self.container.kill)
        timer.start()
        try:
            code = self.container.wait()["StatusCode"]
        finally:
            timer.cancel()
        self._reader.join(10)
        return code

    def remove(self) -> None:
        try:
            self.container.remove(force=True)
        finally:
            self._sock.close()
            self.client.close()
