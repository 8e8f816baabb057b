"""The credential gateway: an agent's only way to the model and to the web.

Agent containers have no network. For each run the worker opens a folder
`data/gateway/<run id>/` holding two Unix sockets, mounted read-only into
that run's container alone: `api.sock`, where the model API answers with
the real credential added (jobs/model_api.py), and `proxy.sock`, the HTTP
and HTTPS proxy that enforces the group's egress policy
(jobs/egress_proxy.py). A forwarder inside the image turns them into
127.0.0.1 ports for the CLI and its tools. The container's token is good
for its own run only: the sockets close and the token is refused when the
run ends. Every model call and every destination becomes an event.

Why sockets rather than a Docker network: no iptables, the same on Docker
and Podman, no address on the host the agent could probe, and the socket a
container sees *is* its identity (as the IPC folder is for its files).
"""

from __future__ import annotations

import asyncio
import os
import secrets
import shutil
import socket
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Coroutine

import aiohttp
from aiohttp import web
from loguru import logger

from base.config import Settings
from events import types as t
from jobs.credentials import UpstreamAuth, upstream_auth, upstream_url
from jobs.egress_proxy import EgressDecision, EgressProxy
from jobs.model_api import MAX_REQUEST_BYTES, ModelApiForwarder, ModelCall
from jobs.workspace import CONTAINER_UID, container_user
from rules.egress import parse_policy

CONTAINER_DIR = "/run/nanoclaw"       # where a run's socket folder appears in its container
API_SOCKET = "api.sock"
PROXY_SOCKET = "proxy.sock"
API_PORT = 3129                      # the forwarder's ports on the container's loopback
PROXY_PORT = 3128
OPEN_TIMEOUT_S = 10.0
UPSTREAM_CONNECT_TIMEOUT_S = 30.0
SOCKET_BACKLOG = 64
LOOKUP_THREADS = 32
MAX_API_CONNECTIONS = 32             # per run: each holds a descriptor of the worker, which serves every group
CALLS_CUT_AFTER_S = 1.0              # at a run's end, calls still in flight are cut after this


@dataclass(frozen=True)
class RunAccess:
    """What one run's container is given: its socket folder and its token."""

    run_id: str
    folder: str
    directory: Path
    token: str = field(repr=False)
    policy: str

    def runner_field(self) -> dict:
        """The `gateway` field of the runner's stdin request: where to find the sockets, and the token."""
        return {"token": self.token, "socketDir": CONTAINER_DIR, "apiPort": API_PORT, "proxyPort": PROXY_PORT}


def container_environment() -> dict[str, str]:
    """Environment of every agent container: its tools find the web through the proxy."""
    proxy = f"http://127.0.0.1:{PROXY_PORT}"
    local = "127.0.0.1,localhost"
    return {"HTTP_PROXY": proxy, "HTTPS_PROXY": proxy, "http_proxy": proxy, "https_proxy": proxy,
            "NO_PROXY": local, "no_proxy": local}


def runs_dir(settings: Settings) -> Path:
    return settings.data_dir / "gateway"


def sweep_run_dirs(settings: Settings, live: set[str]) -> list[str]:
    """Remove the socket folders of runs that are not live (their worker died); returns run ids."""
    removed = []
    base = runs_dir(settings)
    for entry in base.iterdir() if base.is_dir() else ():
        if entry.name not in live and not entry.is_symlink() and entry.is_dir():
            shutil.rmtree(entry, ignore_errors=True)
            removed.append(entry.name)
    return removed


class _Run:
    """The live parts of one open run."""

    def __init__(self, access: RunAccess, forwarder: ModelApiForwarder):
        self.access = access
        self.forwarder = forwarder
        self.site_runner: web.AppRunner | None = None
        self.api_accepting: asyncio.Task | None = None
        self.proxy_server: asyncio.AbstractServer | None = None
        self.tunnels: set[asyncio.StreamWriter] = set()
        self.destinations: set[tuple[str, int, bool]] = set()


class Gateway:
    """One per worker process: an asyncio loop in a thread serving every open run."""

    def __init__(self, settings: Settings, record: Callable[[t.Event], Any]):
        self.settings = settings
        self.record = record
        self._loop: asyncio.AbstractEventLoop | None = None
        self._session: aiohttp.ClientSession | None = None
        self._runs: dict[str, _Run] = {}
        self._lock = threading.Lock()
        # events are written by one thread of their own, in order, never queued behind a name lookup
        self._recorder = ThreadPoolExecutor(1, thread_name_prefix="gateway-record")

    # --- the worker's side (any thread) ------------------------------------------

    def open_run(self, run_id: str, folder: str, policy: str) -> RunAccess:
        """Open the run's sockets; raises OSError when they cannot be made."""
        return self._call(self._open(run_id, folder, policy))

    def close_run(self, run_id: str) -> None:
        """Refuse the run's token from now on and remove its sockets. Safe to call twice."""
        if self._loop is not None:
            self._call(self._close(run_id))

    def auth_of(self, run_id: str) -> UpstreamAuth | None:
        """The credential the run's model calls carry (read when its gateway opened); KeyError when not open."""
        return self._runs[run_id].forwarder.auth

    def open_runs(self) -> list[RunAccess]:
        return [run.access for run in list(self._runs.values())]

    def stop(self) -> None:
        if self._loop is None:
            return
        for run_id in list(self._runs):
            self.close_run(run_id)
        self._call(self._session.close())  # type: ignore[union-attr]
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._recorder.shutdown(wait=True)  # the last calls' events are in the log before we return

    def _call(self, coro: Coroutine) -> Any:
        future: Future = asyncio.run_coroutine_threadsafe(coro, self._ensure_loop())
        return future.result(timeout=OPEN_TIMEOUT_S)

    def _ensure_loop(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._loop is None:
                ready = threading.Event()
                thread = threading.Thread(target=self._serve, args=(ready,), daemon=True, name="nanoclaw-gateway")
                thread.start()
                ready.wait()
            return self._loop  # type: ignore[return-value]

    def _serve(self, ready: threading.Event) -> None:
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        # The proxy's name lookups run here: enough threads that one run's slow names cannot hold up the others
        loop.set_default_executor(ThreadPoolExecutor(LOOKUP_THREADS, thread_name_prefix="gateway-lookup"))
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=UPSTREAM_CONNECT_TIMEOUT_S,
                                        sock_read=self.settings.model_api_silence_s)  # a hung API
        self._session = loop.run_until_complete(_make_session(timeout))
        self._loop = loop
        ready.set()
        loop.run_forever()

    # --- on the gateway's loop -------------------------------------------------------

    async def _open(self, run_id: str, folder: str, policy: str) -> RunAccess:
        directory = _make_run_dir(runs_dir(self.settings), run_id)
        access = RunAccess(run_id, folder, directory, secrets.token_urlsafe(32), policy)
        forwarder = ModelApiForwarder(
            token=access.token, upstream=upstream_url(self.settings), auth=upstream_auth(self.settings),
            session=self._session, report=lambda call: self._report_call(access, call))  # type: ignore[arg-type]
        run = _Run(access, forwarder)
        self._runs[run_id] = run
        try:
            await self._start_api(run)
            await self._start_proxy(run)
        except BaseException:
            await self._close(run_id)
            raise
        logger.debug("{}: gateway open for run {} (egress {})", folder, run_id, policy)
        return access

    async def _start_api(self, run: _Run) -> None:
        app = web.Application(client_max_size=MAX_REQUEST_BYTES)
        app.router.add_route("*", "/{tail:.*}", run.forwarder.handle)
        run.site_runner = web.AppRunner(app, access_log=None, handle_signals=False,
                                        shutdown_timeout=CALLS_CUT_AFTER_S)
        await run.site_runner.setup()
        listener = _bound_socket(run.access.directory, API_SOCKET)
        run.api_accepting = asyncio.ensure_future(
            _accept_capped(listener, run.site_runner.server, MAX_API_CONNECTIONS))  # type: ignore[arg-type]

    async def _start_proxy(self, run: _Run) -> None:
        proxy = EgressProxy(parse_policy(run.access.policy), lambda decision: self._report_egress(run, decision))

        async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            run.tunnels.add(writer)
            try:
                await proxy.handle(reader, writer)
            finally:
                run.tunnels.discard(writer)

        run.proxy_server = await asyncio.start_unix_server(
            serve, sock=_bound_socket(run.access.directory, PROXY_SOCKET))

    async def _close(self, run_id: str) -> None:
        run = self._runs.pop(run_id, None)
        if run is None:
            return
        run.forwarder.closed = True
        if run.proxy_server is not None:
            run.proxy_server.close()
            for writer in list(run.tunnels):  # a tunnel open at the run's end is cut, not left to run on
                writer.close()
        if run.api_accepting is not None:
            run.api_accepting.cancel()
            await asyncio.wait([run.api_accepting])
        if run.site_runner is not None:
            await run.site_runner.cleanup()
        shutil.rmtree(run.access.directory, ignore_errors=True)

    def _report_call(self, access: RunAccess, call: ModelCall) -> None:
        usage = call.usage
        self._record(t.ModelCalled(
            run_id=access.run_id, folder=access.folder, method=call.method, path=call.path, status=call.status,
            duration_ms=call.duration_ms, first_byte_ms=call.first_byte_ms, model=usage.model,
            streamed=call.streamed, input_tokens=usage.input_tokens, output_tokens=usage.output_tokens,
            cache_creation_input_tokens=usage.cache_creation_input_tokens,
            cache_read_input_tokens=usage.cache_read_input_tokens, error=call.error))

    def _report_egress(self, run: _Run, decision: EgressDecision) -> None:
        """One EgressChecked per run and destination (a browser opens dozens of connections to each)."""
        seen = (decision.host, decision.port, decision.allowed)
        if not decision.host or seen in run.destinations:
            return
        run.destinations.add(seen)
        access = run.access
        self._record(t.EgressChecked(
            run_id=access.run_id, folder=access.folder, host=decision.host, port=decision.port,
            allowed=decision.allowed, policy=access.policy, address=decision.address, reason=decision.reason))
        if not decision.allowed:
            logger.info("{}: egress to {}:{} refused: {}", access.folder, decision.host, decision.port,
                        decision.reason)

    def _record(self, event: t.Event) -> None:
        """Into the log off the loop, so a slow commit never delays a byte of a stream."""
        def write() -> None:
            try:
                self.record(event)
            except Exception as exc:  # a full disk must not take the gateway down
                logger.warning("gateway could not record {}: {}", type(event).__name__, exc)
        self._loop.run_in_executor(self._recorder, write)  # type: ignore[union-attr]


async def _make_session(timeout: aiohttp.ClientTimeout) -> aiohttp.ClientSession:
    # No pool-wide cap: one run holding many calls must not make every other run's calls wait;
    # MAX_API_CONNECTIONS bounds what each run may hold.
    connector = aiohttp.TCPConnector(limit=0)
    return aiohttp.ClientSession(timeout=timeout, auto_decompress=True, trust_env=False, connector=connector)


async def _accept_capped(listener: socket.socket, server: web.Server, limit: int) -> None:
    """Hand the run's connections to aiohttp; one over `limit` is told so and closed at once."""
    loop = asyncio.get_running_loop()
    try:
        while True:
            try:
                conn, _ = await loop.sock_accept(listener)
            except OSError as exc:  # out of descriptors, say: try again shortly rather than stop serving
                logger.warning("gateway: accepting a model API connection failed: {}", exc)
                await asyncio.sleep(0.1)
                continue
            if len(server.connections) >= limit:
                _turn_away(conn, limit)
                continue
            try:
                await loop.connect_accepted_socket(server, conn)
            except OSError:
                conn.close()
    finally:
        listener.close()


def _turn_away(conn: socket.socket, limit: int) -> None:
    body = ('{"type":"error","error":{"type":"overloaded_error","message":"nanoclaw gateway: this run already '
            f'has {limit} connections open; close one first"}}}}').encode()
    head = (f"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n").encode()
    try:
        conn.send(head + body)  # a fresh socket's buffer takes this whole; nothing waits on it
    except OSError:
        pass
    finally:
        conn.close()


def _make_run_dir(base: Path, run_id: str) -> Path:
    """A fresh folder for the run's sockets, searchable by the container's user and no more."""
    base.mkdir(parents=True, exist_ok=True)
    directory = base / run_id
    directory.mkdir(mode=0o755)
    os.chmod(directory, 0o755)
    return directory


def _bound_socket(directory: Path, name: str) -> socket.socket:
    """A listening Unix socket `directory/name`, only the container's user may connect.

    Bound through `/proc/self/fd/<dir>/name`, so a long install path never
    meets the 107-byte limit of a socket's path.
    """
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    dir_fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        sock.bind(f"/proc/self/fd/{dir_fd}/{name}")
        _, chown = container_user()
        if chown:
            os.chown(name, CONTAINER_UID, CONTAINER_UID, dir_fd=dir_fd, follow_symlinks=False)
        os.chmod(f"/proc/self/fd/{dir_fd}/{name}", 0o600)  # made a moment ago in our own fresh folder
        sock.listen(SOCKET_BACKLOG)
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    finally:
        os.close(dir_fd)
    return sock

