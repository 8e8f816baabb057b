"""Runs one agent container: input on stdin, results streamed back as they print.

The docker SDK, never the CLI: create (a missing image fails fast instead of
pulling), attach before start so no output is missed, send the input and
half-close stdin, read stdout frames in a thread and hand each result to the
caller within milliseconds of the container printing it. No credential
enters the container: it has no network, and its run's gateway sockets
(jobs/gateway.py) are its way to the model and the web; its stdin carries
only the run's gateway token. A run ends at its hard timeout (reset by each
output) or, once idle, through the close sentinel; every run leaves its log
file.
"""

from __future__ import annotations

import socket
import threading
import time
from dataclasses import dataclass, field
from typing import Callable

import msgspec
from docker.errors import DockerException, ImageNotFound
from docker.types import Mount as DockerMount
from docker.utils.socket import frames_iter
from loguru import logger
from requests.exceptions import RequestException

from base.agent_paths import OnRefused, PathRefused, warn_refusal
from base.config import Settings
from base.faults import fault_point
from base.timefmt import iso_now
from events import EventLog
from events.types import Event
from jobs import container_log
from jobs.contract import AgentInput, AgentResult, OutputParser
from jobs.gateway import CONTAINER_DIR, Gateway, RunAccess, container_environment
from jobs.runtime import LABEL_GROUP, LABEL_INSTALL, LABEL_RUN, client
from jobs.workspace import CONTAINER_HOME, Mount, base_mounts, container_user
from rules.egress import DEFAULT_EGRESS
from rules.ipc_folder import request_close
from rules.refusals import recorder

IDLE_GRACE_MS = 30_000
STDERR_TAIL_CHARS = 200
PIDS_LIMIT = 512
MEMORY_LIMIT = "2g"
STOP_GRACE_S = 1


@dataclass
class RunSpec:
    """Everything needed to start one container for one group."""

    folder: str
    group_name: str
    is_main: bool
    input: AgentInput
    run_id: str
    extra_mounts: list[Mount] = field(default_factory=list)
    timeout_ms: int | None = None          # the group's own hard timeout, if set
    idle_timeout_ms: int | None = None     # None: the configured IDLE_TIMEOUT
    idle_rearm: bool = True                # tasks: close once, 10 s after the first output
    ready_wait_ms: int | None = None       # a ready agent: how long it waits for its first input
    handed_input: Callable[[], bool] | None = None  # a ready agent: whether the log shows input piped in
    network: str | None = None             # None: the configured CONTAINER_NETWORK
    name: str | None = None                # None: nanoclaw-<folder>-<epoch ms>
    egress: str = DEFAULT_EGRESS           # the group's egress policy (router/egress.policy_of)


@dataclass
class RunResult:
    status: str                     # success | error
    container: str
    exit_code: int | None = None
    error: str | None = None
    new_session_id: str | None = None
    timed_out: bool = False
    outputs: int = 0
    error_outputs: int = 0          # outputs that reported an error (the container may still exit 0)
    duration_ms: int = 0
    log_file: str | None = None


class _Deadline:
    """Calls `action` once when `seconds` pass without a `reset`."""

    def __init__(self, action: Callable[[], None]):
        self._action = action
        self._cond = threading.Condition()
        self._due: float | None = None
        self._done = False
        self._thread = threading.Thread(target=self._run, daemon=True, name="container-deadline")
        self._thread.start()

    def reset(self, seconds: float) -> None:
        with self._cond:
            self._due = time.monotonic() + seconds
            self._cond.notify()

    def cancel(self) -> None:
        with self._cond:
            self._done = True
            self._cond.notify()

    def _run(self) -> None:
        with self._cond:
            while not self._done:
                if self._due is None:
                    self._cond.wait()
                    continue
                remaining = self._due - time.monotonic()
                if remaining > 0:
                    self._cond.wait(remaining)
                    continue
                self._done = True
                break
            else:
                return
        self._action()


def container_name(folder: str) -> str:
    safe = "".join(ch if ch.isascii() and (ch.isalnum() or ch == "-") else "-" for ch in folder)
    return f"nanoclaw-{safe}-{int(time.time() * 1000)}"


def hard_timeout_ms(settings: Settings, group_timeout_ms: int | None) -> int:
    """max(group or CONTAINER_TIMEOUT, IDLE_TIMEOUT + 30 s), as v1."""
    configured = group_timeout_ms or settings.container_timeout_ms
    return max(configured, settings.idle_timeout_ms + IDLE_GRACE_MS)


class _Watch:
    """A running container's two deadlines, and what its outputs have shown so far.

    The hard timeout (reset by each output) stops the container; the idle
    timeout asks the agent to finish once it has answered (re-armed by each
    output, or armed once for a task).
    """

    def __init__(self, settings: Settings, container, spec: RunSpec, on_output: Callable[[AgentResult], None],
                 on_refused: OnRefused):
        self.container, self.spec, self.on_output = container, spec, on_output
        self.state = {"outputs": 0, "errors": 0, "session": None, "timed_out": False, "idle_armed": False}
        self.hard_ms = hard_timeout_ms(settings, spec.timeout_ms)
        self.idle_ms = spec.idle_timeout_ms or settings.idle_timeout_ms
        self.hard = _Deadline(self._hard_timeout)
        self.idle = _Deadline(lambda: request_close(settings, spec.folder, on_refused))
        self.ready_wait = _Deadline(lambda: self._ready_wait_over(settings, on_refused))

    def _hard_timeout(self) -> None:
        self.state["timed_out"] = True
        logger.error("{}: container {} timed out after {} ms without output; stopping it",
                     self.spec.folder, self.container.name, self.hard_ms)
        try:
            self.container.stop(timeout=STOP_GRACE_S)
        except (DockerException, RequestException) as exc:
            logger.warning("stopping {} failed ({}); killing it", self.container.name, exc)
            try:
                self.container.kill()
            except (DockerException, RequestException):
                pass

    def started(self) -> None:
        """The hard timeout runs from the start (for a ready agent, from the end of its wait)."""
        wait_ms = self.spec.ready_wait_ms or 0
        self.hard.reset((self.hard_ms + wait_ms) / 1000)
        if wait_ms:
            self.ready_wait.reset(wait_ms / 1000)

    def _ready_wait_over(self, settings: Settings, on_refused: OnRefused) -> None:
        """A ready agent that got no input in its wait is asked to finish; one handed a message goes on."""
        handed = self.spec.handed_input
        if self.state["outputs"] or (handed is not None and handed()):
            return  # it is working: its outputs arm the usual idle close
        logger.info("{}: the ready agent got no message in {} s; it retires", self.spec.folder,
                    (self.spec.ready_wait_ms or 0) // 1000)
        request_close(settings, self.spec.folder, on_refused)

    def handle(self, result: AgentResult) -> None:
        state = self.state
        state["outputs"] += 1
        state["errors"] += result.status == "error"
        state["session"] = result.newSessionId or state["session"]
        self.hard.reset(self.hard_ms / 1000)
        if self.spec.idle_rearm or not state["idle_armed"]:
            self.idle.reset(self.idle_ms / 1000)
            state["idle_armed"] = True
        try:
            self.on_output(result)
        except Exception:  # a failing callback must not stall the run
            logger.exception("{}: handling an agent output failed; the run goes on", self.spec.folder)


class _Capture:
    """Keeps stdout or stderr for the log, up to the configured size."""

    def __init__(self, limit: int):
        self.limit = limit
        self.data = bytearray()
        self.truncated = False

    def add(self, chunk: bytes) -> None:
        room = self.limit - len(self.data)
        if room > 0:
            self.data += chunk[:room]
        if len(chunk) > room:
            self.truncated = True

    def text(self) -> str:
        return self.data.decode("utf-8", "replace")


class ContainerRunner:
    """Starts agent containers for this install and reports how they ended."""

    def __init__(self, settings: Settings, log: EventLog | None = None):
        self.settings = settings
        self.log = log  # where refusals to touch planted paths are recorded; None: the journal only
        self._engine = None
        self._engine_lock = threading.Lock()
        self.gateway = Gateway(settings, log.append if log is not None else _LogRecorder(settings))
        self._warned_network = False

    def docker(self):
        """One Docker client for every run of this runner (thread-safe), made on first use."""
        with self._engine_lock:
            if self._engine is None:
                self._engine = client(self.settings)
            return self._engine

    def _forget_client(self) -> None:
        """After a Docker failure: the next run connects afresh (the engine may have restarted)."""
        with self._engine_lock:
            if self._engine is not None:
                self._engine.close()
                self._engine = None

    def run(self, spec: RunSpec, on_output: Callable[[AgentResult], None],
            on_started: Callable[[str], None] | None = None) -> RunResult:
        name = spec.name or container_name(spec.folder)
        started_iso, started = iso_now(), time.monotonic()
        try:
            access = self.gateway.open_run(spec.run_id, spec.folder, spec.egress)
        except (OSError, ValueError, TimeoutError) as exc:
            return RunResult("error", name, error=f"Container spawn error: the gateway could not open: {exc}")
        try:
            return self._run_with_gateway(spec, access, name, started_iso, started, on_output, on_started)
        finally:
            try:
                self.gateway.close_run(spec.run_id)
            except Exception as exc:  # the run's end must still be recorded; a late socket is swept later
                logger.warning("{}: closing the gateway of run {} failed: {}", spec.folder, spec.run_id, exc)

    def _run_with_gateway(self, spec: RunSpec, access: RunAccess, name: str, started_iso: str, started: float,
                          on_output, on_started) -> RunResult:
        user, chown = container_user()
        try:
            mounts = base_mounts(self.settings, spec.folder, is_main=spec.is_main, chown=chown,
                                 on_refused=self._on_refused(spec.folder)) + spec.extra_mounts
        except (PathRefused, OSError) as exc:
            return RunResult("error", name, error=f"Workspace not prepared: {exc}")
        mounts.append(Mount(str(access.directory), CONTAINER_DIR, True))
        spec.input.gateway = access.runner_field()
        try:
            engine = self.docker()
            container = self._create(engine, spec, name, user, mounts)
        except (DockerException, RequestException) as exc:
            if not isinstance(exc, ImageNotFound):
                self._forget_client()
            return RunResult("error", name, error=f"Container spawn error: {_explain(exc, self.settings)}")
        try:
            result, record = self._drive(engine, container, spec, on_output, on_started)
        finally:
            try:
                container.remove(force=True)
            except (DockerException, RequestException) as exc:
                logger.warning("could not remove container {}: {}", name, exc)
                self._forget_client()
        result.duration_ms = int((time.monotonic() - started) * 1000)
        result.log_file = self._write_log(spec, name, started_iso, result, record, user, mounts, [access.token])
        return result

    def _on_refused(self, folder: str) -> OnRefused:
        return recorder(self.log, folder) if self.log is not None else warn_refusal

    def network(self, spec: RunSpec) -> str:
        """`none` unless the owner opted out (CONTAINER_NETWORK): then say once what that gives away."""
        network = spec.network or self.settings.container_network
        if network != "none" and not self._warned_network:
            self._warned_network = True
            logger.warning("CONTAINER_NETWORK={}: agent containers get a Docker network of their own, so they "
                           "can reach the LAN and the internet past the egress policy (an unsafe opt-out; "
                           "unset it to give agents the gateway alone)", network)
        return network

    def _create(self, engine, spec: RunSpec, name: str, user: str, mounts: list[Mount]):
        return engine.containers.create(
            self.settings.container_image, name=name, stdin_open=True, tty=False, user=user,
            labels={LABEL_INSTALL: str(self.settings.root), LABEL_GROUP: spec.folder, LABEL_RUN: spec.run_id},
            environment={"TZ": self.settings.timezone, "HOME": CONTAINER_HOME, **container_environment()},
            mounts=[DockerMount(m.target, m.host, type="bind", read_only=m.readonly) for m in mounts],
            network_mode=self.network(spec),
            init=True, cap_drop=["ALL"], security_opt=["no-new-privileges"],
            pids_limit=PIDS_LIMIT, mem_limit=MEMORY_LIMIT,
        )

    def _drive(self, engine, container, spec: RunSpec, on_output, on_started):
        stdout = _Capture(self.settings.container_max_output_bytes)
        stderr = _Capture(self.settings.container_max_output_bytes)
        parser = OutputParser()
        watch = _Watch(self.settings, container, spec, on_output, self._on_refused(spec.folder))
        sock = engine.api.attach_socket(container.id, params={"stdin": 1, "stdout": 1, "stderr": 1, "stream": 1})
        reader = threading.Thread(target=self._read, args=(sock, parser, stdout, stderr, watch.handle, spec.folder),
                                  daemon=True, name=f"container-reader-{spec.folder}")
        try:
            container.start()
            watch.started()
            fault_point("container-started")
            if on_started:
                on_started(container.name)
            reader.start()
            payload = msgspec.json.encode(spec.input) + b"\n"
            raw = getattr(sock, "_sock", sock)
            raw.sendall(payload)
            raw.shutdown(socket.SHUT_WR)
            exit_code = container.wait()["StatusCode"]
            reader.join(timeout=30)
        except (DockerException, RequestException, OSError) as exc:
            exit_code = None
            stderr.add(f"\n[host] {exc}".encode())
        finally:
            watch.hard.cancel()
            watch.idle.cancel()
            watch.ready_wait.cancel()
            try:
                sock.close()
            except OSError:
                pass
        for problem in parser.malformed:
            logger.warning("{}: skipped an unreadable agent output: {}", spec.folder, problem)
        result = _outcome(container.name, exit_code, watch.state, stderr.text(), spec, self.settings)
        return result, (stdout, stderr)

    @staticmethod
    def _read(sock, parser: OutputParser, stdout: _Capture, stderr: _Capture, handle, folder: str) -> None:
        try:
            for stream, chunk in frames_iter(sock, tty=False):
                if stream == 1:
                    stdout.add(chunk)
                    for result in parser.feed(chunk):
                        handle(result)
                else:
                    stderr.add(chunk)
                    for line in chunk.decode("utf-8", "replace").splitlines():
                        logger.debug("{} agent: {}", folder, line)
        except (OSError, ValueError) as exc:
            logger.debug("{}: output stream closed: {}", folder, exc)

    def _write_log(self, spec: RunSpec, name: str, started_iso: str, result: RunResult, captured,
                   user: str, mounts: list[Mount], masked: list[str]) -> str | None:
        stdout, stderr = captured
        summary = msgspec.to_builtins(spec.input)
        record = container_log.RunRecord(
            group_name=spec.group_name, container=name, is_main=spec.is_main, started_iso=started_iso,
            duration_ms=result.duration_ms, exit_code=result.exit_code, timed_out=result.timed_out,
            had_output=result.outputs > 0, input_summary=summary, prompt_length=len(spec.input.prompt),
            session_id=spec.input.sessionId,
            args=[f"image={self.settings.container_image}", f"name={name}", f"user={user}",
                  f"network={spec.network or self.settings.container_network}", "init", "cap_drop=ALL",
                  "no-new-privileges", f"pids_limit={PIDS_LIMIT}", f"memory={MEMORY_LIMIT}"],
            mounts=[(m.host, m.target, m.readonly) for m in mounts],
            stdout=stdout.text(), stderr=stderr.text(),
            stdout_truncated=stdout.truncated, stderr_truncated=stderr.truncated,
        )
        try:
            path = container_log.write(self.settings.logs_dir, spec.folder, record,
                                       verbose=self.settings.verbose_container_logs,
                                       failed=result.status == "error" or result.error_outputs > 0,
                                       secrets=[*masked, *self.settings.secrets.values()])
        except (PathRefused, OSError) as exc:
            logger.warning("{}: the run log of {} was not written: {}", spec.folder, name, exc)
            return None
        return str(path)


class _LogRecorder:
    """Records gateway events into the install's event log, opened on first use (runners made without one)."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self._log: EventLog | None = None
        self._lock = threading.Lock()

    def __call__(self, event: Event) -> None:
        with self._lock:
            if self._log is None:
                self._log = EventLog(self.settings.db_path, sync=self.settings.event_log_sync)
        self._log.append(event)


def _outcome(name: str, exit_code: int | None, state: dict, stderr: str, spec: RunSpec,
             settings: Settings) -> RunResult:
    """How a run ended, from its exit code, outputs and timeout."""
    common = dict(container=name, exit_code=exit_code, new_session_id=state["session"], outputs=state["outputs"],
                  error_outputs=state["errors"])
    if state["timed_out"]:
        if state["outputs"]:
            return RunResult("success", timed_out=True, **common)
        configured = spec.timeout_ms or settings.container_timeout_ms
        return RunResult("error", timed_out=True, error=f"Container timed out after {configured}ms", **common)
    if exit_code != 0:
        return RunResult("error", error=f"Container exited with code {exit_code}: {stderr[-STDERR_TAIL_CHARS:]}",
                         **common)
    return RunResult("success", **common)


def _explain(exc: Exception, settings: Settings) -> str:
    if isinstance(exc, ImageNotFound):
        return f"image {settings.container_image} not found: build it with 'nanoclaw image build'"
    return str(exc)
