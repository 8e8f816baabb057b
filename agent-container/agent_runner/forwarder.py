"""Loopback ports for the host's gateway sockets: the container's only way out.

The container has no network; the host mounts its run's gateway folder
with two Unix sockets. Tools expect TCP (the CLI's ANTHROPIC_BASE_URL,
HTTP_PROXY for curl, pip and browsers), so each socket gets a port on
127.0.0.1 whose connections are piped to it byte for byte. Nothing is
parsed or decided here: the gateway on the host checks everything.
"""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

from agent_runner.protocol import GatewayAccess, log

API_SOCKET = "api.sock"
PROXY_SOCKET = "proxy.sock"
CHUNK_BYTES = 64 * 1024
START_TIMEOUT_S = 5.0


def start_forwarders(gateway: GatewayAccess) -> None:
    """Listen on both ports before returning, in a daemon thread of their own."""
    routes = {gateway.api_port: Path(gateway.socket_dir) / API_SOCKET,
              gateway.proxy_port: Path(gateway.socket_dir) / PROXY_SOCKET}
    ready = threading.Event()
    problems: list[str] = []
    thread = threading.Thread(target=_serve, args=(routes, ready, problems), daemon=True, name="gateway-forwarder")
    thread.start()
    if not ready.wait(START_TIMEOUT_S) or problems:
        log(f"gateway forwarder did not start: {'; '.join(problems) or 'timed out'}")


def _serve(routes: dict[int, Path], ready: threading.Event, problems: list[str]) -> None:
    loop = asyncio.new_event_loop()
    for port, target in routes.items():
        try:
            loop.run_until_complete(asyncio.start_server(_piper(target), "127.0.0.1", port))
        except OSError as exc:
            problems.append(f"port {port}: {exc}")
    ready.set()
    loop.run_forever()


def _piper(target: Path):
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_unix_connection(str(target))
        except OSError as exc:
            log(f"gateway socket {target} unreachable: {exc}")
            writer.close()
            return
        try:
            await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))
        finally:
            writer.close()
            up_writer.close()

    return handle


async def _pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
    try:
        while chunk := await source.read(CHUNK_BYTES):
            sink.write(chunk)
            await sink.drain()
        if sink.can_write_eof():
            sink.write_eof()  # half-close: the answer may still be on its way back
    except (ConnectionError, OSError):
        sink.close()  # ends the other direction too
