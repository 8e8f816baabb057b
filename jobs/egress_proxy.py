"""The HTTP proxy on a host Unix socket that is an agent container's only way to the web.

One request per connection (a CONNECT tunnel or one absolute-form request),
allowed by the group's egress policy, never to an address that is private
or this machine's own, and every connection reported to `record`.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import time
from collections.abc import Awaitable, Callable
from contextlib import suppress
from dataclasses import dataclass
from http import HTTPStatus
from urllib.parse import urlsplit

import h11
from loguru import logger

from jobs.egress_addresses import address_problem, connect_address
from rules.egress import EgressPolicy, format_endpoint, normalise_host, split_endpoint

Resolver = Callable[[str, int], Awaitable[list[str]]]
CHUNK_BYTES = 65536
_HOP_BY_HOP = {
    "connection", "keep-alive", "proxy-connection", "proxy-authorization",
    "proxy-authenticate", "te", "trailer", "upgrade", "host",
}  # fmt: skip


@dataclass(frozen=True)
class EgressDecision:
    """What the proxy did with one connection.

    `host` is "" and `port` 0 when the request never named a destination;
    `address` is the address connected to (or refused); `status` is the
    status the proxy itself answered, None when it forwarded a request
    whose answer comes from the destination, or when the client left first.
    """

    method: str
    host: str
    port: int
    address: str | None
    allowed: bool
    reason: str | None
    status: int | None


class _Refused(Exception):
    """The proxy answers the client itself: a status and the reason, in plain text."""

    def __init__(self, status: int, reason: str, *, allowed: bool = False):
        super().__init__(reason)
        self.status, self.reason, self.allowed = status, reason, allowed


class _ClientLeft(Exception):
    """The client closed its connection before sending a request."""


@dataclass
class _Attempt:
    """What is known so far about one connection's destination."""

    method: str = ""
    host: str = ""
    port: int = 0
    address: str | None = None
    origin_target: str = ""

    def decision(self, *, allowed: bool, reason: str | None, status: int | None) -> EgressDecision:
        return EgressDecision(self.method, self.host, self.port, self.address, allowed, reason, status)


async def system_resolver(host: str, port: int) -> list[str]:
    """The addresses the host's own resolver gives for a name, in its order, without repeats."""
    infos = await asyncio.get_running_loop().getaddrinfo(
        host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP
    )
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


def _parse_destination(request: h11.Request, attempt: _Attempt) -> None:
    """Fill in the attempt's destination from the request line; _Refused(400) when it names none."""
    attempt.method = request.method.decode("ascii", "replace")
    target = request.target.decode("latin-1")
    if attempt.method == "CONNECT":
        host, port = _authority(target, default_port=None)
    else:
        parts = urlsplit(target)
        if parts.scheme != "http" or not parts.netloc:
            raise _Refused(400, _NOT_PROXY_FORM)
        host, port = _authority(parts.netloc, default_port=80)
        query = f"?{parts.query}" if parts.query else ""
        attempt.origin_target = (parts.path or "/") + query
    attempt.host, attempt.port = host, port


_NOT_PROXY_FORM = (
    "nanoclaw egress proxy takes CONNECT host:port (for https) or an absolute http URL "
    "(GET http://host/path); set HTTP_PROXY and HTTPS_PROXY to use it"
)


def _authority(text: str, *, default_port: int | None) -> tuple[str, int]:
    if any(char in text for char in "/?#\\") or not text:
        raise _Refused(400, f"nanoclaw egress proxy cannot read the destination {text!r}")
    if "@" in text:
        raise _Refused(400, "nanoclaw egress proxy does not forward credentials in a URL")
    try:
        host, port = split_endpoint(text)
        host = normalise_host(host)
    except ValueError as exc:
        raise _Refused(400, f"nanoclaw egress proxy: {exc}") from None
    port = default_port if port is None else port
    if port is None:
        raise _Refused(400, f"nanoclaw egress proxy: CONNECT needs host:port, not {text!r}")
    return host, port


class _IdleClock:
    """When a connection last moved a byte in either direction."""

    def __init__(self, timeout_s: float):
        self.timeout_s = timeout_s
        self.last = time.monotonic()

    def touch(self) -> None:
        self.last = time.monotonic()

    def remaining(self) -> float:
        return self.last + self.timeout_s - time.monotonic()


async def _pump(src: asyncio.StreamReader, dst: asyncio.StreamWriter, clock: _IdleClock) -> None:
    """Copy bytes until the source ends (then half-close the destination) or both sides idle out."""
    while (remaining := clock.remaining()) > 0:
        try:
            data = await asyncio.wait_for(src.read(CHUNK_BYTES), remaining)
        except TimeoutError:
            continue
        if not data:
            if dst.can_write_eof():
                dst.write_eof()
            return
        clock.touch()
        dst.write(data)
        await asyncio.wait_for(dst.drain(), clock.timeout_s)


async def _answer(writer: asyncio.StreamWriter, status: int, reason: str) -> None:
    body = (reason + "\n").encode("utf-8")
    head = (
        f"HTTP/1.1 {status} {HTTPStatus(status).phrase}\r\n"
        "Content-Type: text/plain; charset=utf-8\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    )
    with suppress(OSError, TimeoutError):
        writer.write(head.encode("ascii") + body)
        await asyncio.wait_for(writer.drain(), 5)
        if writer.can_write_eof():
            writer.write_eof()


async def _close(writer: asyncio.StreamWriter | None) -> None:
    if writer is None:
        return
    writer.close()
    with suppress(Exception):
        await asyncio.wait_for(writer.wait_closed(), 5)


async def _run_together(required: list[Awaitable[None]], beside: list[Awaitable[None]] = ()) -> None:
    """Run until every required coroutine ends; those beside them may end early; any failure stops all.

    A failure of the connection itself (reset, timeout, a protocol error)
    just ends it; anything else is a bug and is raised.
    """
    needed = [asyncio.ensure_future(coroutine) for coroutine in required]
    tasks = needed + [asyncio.ensure_future(coroutine) for coroutine in beside]
    try:
        waiting = set(tasks)
        while any(not task.done() for task in needed):
            done, waiting = await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
            if any(task.exception() for task in done):
                break
    finally:
        for task in tasks:
            task.cancel()
        results = await asyncio.gather(*tasks, return_exceptions=True)
    for result in results:
        if isinstance(result, Exception) and not isinstance(result, _CONNECTION_ENDS):
            raise result


_CONNECTION_ENDS = (OSError, TimeoutError, h11.ProtocolError)


class EgressProxy:
    """Serves one agent run's egress socket: `asyncio.start_unix_server(proxy.handle, path)`.

    `record` is called on the event loop, once per connection, before any
    byte reaches the destination; it should not block. When it raises,
    the connection is refused (500): no destination goes unrecorded.
    """

    def __init__(
        self,
        policy: EgressPolicy,
        record: Callable[[EgressDecision], None],
        *,
        connect_timeout_s: float = 10.0,
        idle_timeout_s: float = 300.0,
        head_timeout_s: float = 10.0,
        max_head_bytes: int = 16384,
        max_connections: int = 64,
        resolver: Resolver | None = None,
    ):
        self.policy = policy
        self.record = record
        self.connect_timeout_s = connect_timeout_s
        self.idle_timeout_s = idle_timeout_s
        self.head_timeout_s = head_timeout_s
        self.max_head_bytes = max_head_bytes
        self.max_connections = max_connections
        self.resolver = resolver or system_resolver
        self.active = 0

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Serve one client connection, whatever it sends, and close it."""
        if self.active >= self.max_connections:
            reason = f"nanoclaw egress proxy is at its limit of {self.max_connections} connections"
            await self._refuse(writer, _Attempt(), _Refused(503, reason))
            await _close(writer)
            return
        self.active += 1
        try:
            await self._serve(reader, writer)
        except Exception:
            logger.exception("egress proxy: a connection failed unexpectedly; it is closed")
        finally:
            self.active -= 1
            await _close(writer)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        attempt = _Attempt()
        upstream: asyncio.StreamWriter | None = None
        try:
            conn, request = await self._read_request(reader, attempt)
            up_reader, upstream = await self._open(attempt)
            status = 200 if attempt.method == "CONNECT" else None
            if not self._record(attempt.decision(allowed=True, reason=None, status=status)):
                await _answer(writer, 500, "nanoclaw egress proxy could not record this connection")
                return
            if attempt.method == "CONNECT":
                await self._tunnel(conn, reader, writer, up_reader, upstream)
            else:
                request_out = _origin_request(request, attempt)
                await self._forward(conn, reader, writer, up_reader, upstream, request_out)
        except _Refused as refusal:
            await self._refuse(writer, attempt, refusal)
        except _ClientLeft:
            self._record(attempt.decision(allowed=False, reason="the client left before a request", status=None))
        finally:
            await _close(upstream)

    async def _refuse(self, writer: asyncio.StreamWriter, attempt: _Attempt, refusal: _Refused) -> None:
        decision = attempt.decision(allowed=refusal.allowed, reason=refusal.reason, status=refusal.status)
        self._record(decision)
        await _answer(writer, refusal.status, refusal.reason)

    def _record(self, decision: EgressDecision) -> bool:
        try:
            self.record(decision)
        except Exception:
            logger.exception("egress proxy: could not record {}; the connection is refused", decision)
            return False
        return True

    async def _read_request(self, reader: asyncio.StreamReader, attempt: _Attempt) -> tuple:
        """Read the request head with h11 and fill in the attempt's destination."""
        conn = h11.Connection(h11.SERVER, max_incomplete_event_size=self.max_head_bytes)
        try:
            async with asyncio.timeout(self.head_timeout_s):
                event = await _read_head(conn, reader, self.max_head_bytes)
        except TimeoutError:
            raise _Refused(408, f"nanoclaw egress proxy got no request within {self.head_timeout_s:g} s") from None
        except h11.RemoteProtocolError as exc:
            raise _Refused(400, _malformed(exc, self.max_head_bytes)) from None
        if isinstance(event, h11.ConnectionClosed):
            raise _ClientLeft()
        _parse_destination(event, attempt)
        return conn, event

    async def _open(self, attempt: _Attempt) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        """Check the destination against the policy and the address rules, then connect to it."""
        reason = self.policy.allows(attempt.host, attempt.port)
        if reason:
            raise _Refused(403, reason)
        addresses = await self._resolve(attempt.host, attempt.port)
        endpoint = format_endpoint(attempt.host, attempt.port)
        for address in addresses:
            problem = address_problem(address)
            if problem:
                attempt.address = address
                raise _Refused(403, f"nanoclaw egress refuses {endpoint} whatever the policy: {problem}")
        return await self._connect(attempt, addresses)

    async def _resolve(self, host: str, port: int) -> list[str]:
        """The name's addresses, resolved once: the connection goes to one of these, never a new lookup."""
        try:
            ipaddress.ip_address(host)
            return [host]
        except ValueError:
            pass
        try:
            async with asyncio.timeout(self.connect_timeout_s):
                addresses = await self.resolver(host, port)
        except TimeoutError:
            raise _Refused(504, f"nanoclaw egress proxy: no DNS answer for {host} within "
                                f"{self.connect_timeout_s:g} s", allowed=True) from None
        except OSError as exc:
            raise _Refused(502, f"nanoclaw egress proxy cannot resolve {host}: {exc.strerror or exc}",
                           allowed=True) from None
        if not addresses:
            raise _Refused(502, f"nanoclaw egress proxy cannot resolve {host}: no address", allowed=True)
        return addresses

    async def _connect(self, attempt: _Attempt, addresses: list[str]) -> tuple:
        """Connect to the first checked address that answers, within the connect timeout."""
        failure, endpoint = "", format_endpoint(attempt.host, attempt.port)
        try:
            async with asyncio.timeout(self.connect_timeout_s):
                for address in addresses:
                    attempt.address = address
                    endpoint = format_endpoint(address, attempt.port)
                    try:
                        # A numeric address: asyncio connects to it without any lookup.
                        return await asyncio.open_connection(connect_address(address), attempt.port)
                    except ConnectionRefusedError:
                        failure = f"{endpoint} refused the connection"
                    except OSError as exc:
                        failure = f"cannot reach {endpoint}: {exc.strerror or exc}"
        except TimeoutError:
            raise _Refused(504, f"nanoclaw egress proxy: no answer from {endpoint} within "
                                f"{self.connect_timeout_s:g} s", allowed=True) from None
        raise _Refused(502, f"nanoclaw egress proxy: {failure}", allowed=True)

    async def _tunnel(self, conn, reader, writer, up_reader, upstream) -> None:
        """Answer 200, then copy raw bytes both ways until both ends close or the tunnel idles."""
        early, _ = conn.trailing_data
        writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
        upstream.write(early)
        clock = _IdleClock(self.idle_timeout_s)
        await _run_together([_pump(reader, upstream, clock), _pump(up_reader, writer, clock)])

    async def _forward(self, conn, reader, writer, up_reader, upstream, request: h11.Request) -> None:
        """Send the one request on, then pipe the answer back; the client's further bytes are never read."""
        sender = h11.Connection(h11.CLIENT)
        clock = _IdleClock(self.idle_timeout_s)
        upstream.write(sender.send(request))

        async def send_body() -> None:
            while not isinstance(event := await _next_event(conn, reader, clock), h11.EndOfMessage):
                upstream.write(sender.send(event))
                await asyncio.wait_for(upstream.drain(), self.idle_timeout_s)
            upstream.write(sender.send(event))

        await _run_together([_pump(up_reader, writer, clock)], [send_body()])


def _malformed(exc: h11.RemoteProtocolError, limit: int) -> str:
    if exc.error_status_hint == 431:
        return f"nanoclaw egress proxy refuses a request head over {limit} bytes"
    return f"nanoclaw egress proxy cannot read the request: {exc}"


async def _read_head(conn: h11.Connection, reader: asyncio.StreamReader, limit: int):
    """The first h11 event, refused as over the cap when its head, however it arrived, exceeds limit bytes.

    h11's own limit only applies to a head still incomplete; one that
    arrives in a single read would otherwise pass at any size.
    """
    received = 0
    while (event := conn.next_event()) is h11.NEED_DATA:
        data = await reader.read(CHUNK_BYTES)
        received += len(data)
        conn.receive_data(data)
    if received - len(conn.trailing_data[0]) > limit:
        raise h11.RemoteProtocolError("head too long", error_status_hint=431)
    return event


async def _next_event(conn: h11.Connection, reader: asyncio.StreamReader, clock: _IdleClock):
    """The next h11 event from the client, reading more bytes as h11 asks, within the idle timeout."""
    while (event := conn.next_event()) is h11.NEED_DATA:
        data = await asyncio.wait_for(reader.read(CHUNK_BYTES), max(clock.remaining(), 0.001))
        clock.touch()
        conn.receive_data(data)
    return event


def _origin_request(request: h11.Request, attempt: _Attempt) -> h11.Request:
    """The request as the destination gets it: origin form, its own Host, no hop-by-hop headers."""
    named = {
        token.strip().lower()
        for name, value in request.headers
        if name == b"connection"
        for token in value.decode("latin-1").split(",")
    }
    dropped = (_HOP_BY_HOP | named) - {"content-length", "transfer-encoding"}
    host = f"[{attempt.host}]" if ":" in attempt.host else attempt.host
    if attempt.port != 80:
        host += f":{attempt.port}"
    headers = [(b"Host", host.encode("ascii"))]
    headers += [(n, v) for n, v in request.headers.raw_items() if n.decode("latin-1").lower() not in dropped]
    headers.append((b"Connection", b"close"))
    return h11.Request(method=request.method, target=attempt.origin_target, headers=headers)
