"""The credential gateway's model-API side: one run's calls, forwarded with the real key.

An agent's Claude CLI talks to this server (over its run's Unix socket) as
if it were the Messages API, authenticating with its run's token. The token
is checked, the agent's own auth headers are dropped, the real credential is
added, and the request goes to the configured API. Both ways bytes pass as
they arrive: the request body is never held whole (an agent sending many
large bodies must not fill the worker's memory), and the CLI sees tokens as
the model writes them while model_usage.py reads the token counts off them.
Each call ends as one `ModelCall` handed to the gateway for the log.
"""

from __future__ import annotations

import asyncio
import hmac
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Callable

import aiohttp
from aiohttp import web
from yarl import URL

from jobs.credentials import OAUTH_BETA, UpstreamAuth
from jobs.model_usage import Usage, UsageReader

# Never forwarded from the agent: hop-by-hop headers, its own credentials, what we set.
DROPPED_REQUEST_HEADERS = frozenset({
    "host", "connection", "keep-alive", "proxy-authorization", "proxy-connection", "te", "trailer",
    "transfer-encoding", "upgrade", "content-length", "x-api-key", "authorization", "accept-encoding",
})
DROPPED_RESPONSE_HEADERS = frozenset({
    "connection", "keep-alive", "transfer-encoding", "content-length", "content-encoding", "trailer", "upgrade",
})
MAX_REQUEST_BYTES = 32 << 20


@dataclass(frozen=True)
class ModelCall:
    """One call as the gateway saw it, for the `ModelCalled` event."""

    method: str
    path: str
    status: int
    duration_ms: float
    first_byte_ms: float | None
    streamed: bool
    usage: Usage
    error: str | None = None


def presented_token(request: web.Request) -> str:
    """The token the agent sent: `x-api-key`, or a bearer token."""
    if key := request.headers.get("x-api-key"):
        return key
    scheme, _, value = request.headers.get("authorization", "").partition(" ")
    return value.strip() if scheme.lower() == "bearer" else ""


def error_response(status: int, kind: str, message: str) -> web.Response:
    """An error in the Messages API's own shape, so the CLI shows its message."""
    return web.json_response({"type": "error", "error": {"type": kind, "message": message}}, status=status)


class ModelApiForwarder:
    """The aiohttp handler for one run: check, forward, stream back, report."""

    def __init__(self, *, token: str, upstream: str, auth: UpstreamAuth | None,
                 session: aiohttp.ClientSession, report: Callable[[ModelCall], None]):
        self.token = token
        self.upstream = upstream
        self.auth = auth
        self.session = session
        self.report = report
        self.closed = False

    async def handle(self, request: web.Request) -> web.StreamResponse:
        started = time.perf_counter()
        refusal = self._refusal(request)
        if refusal is not None:
            self.report(ModelCall(request.method, request.path, refusal.status, _ms(started), None, False,
                                  Usage(), error=refusal.text))
            return refusal
        if (request.content_length or 0) > MAX_REQUEST_BYTES:
            return _too_large()
        return await self._forward(request, _Body(request), started)

    def _refusal(self, request: web.Request) -> web.Response | None:
        if self.closed:
            return error_response(401, "authentication_error", "nanoclaw gateway: this agent run has ended")
        if not hmac.compare_digest(presented_token(request).encode(), self.token.encode()):
            return error_response(401, "authentication_error", "nanoclaw gateway: not this run's token")
        if self.auth is None:
            return error_response(401, "authentication_error",
                                  "nanoclaw gateway: no Claude credentials are configured on the host "
                                  "(set ANTHROPIC_API_KEY or CLAUDE_CODE_OAUTH_TOKEN in .env, or log in with "
                                  "'claude', then restart the service)")
        return None

    async def _forward(self, request: web.Request, body: _Body, started: float) -> web.StreamResponse:
        url = self.upstream + request.rel_url.path_qs
        data = body.chunks() if request.body_exists else None
        try:
            async with self.session.request(request.method, url, headers=self._headers(request), data=data,
                                            allow_redirects=False) as upstream:
                return await self._relay(request, upstream, started)
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            if body.too_large:
                return _too_large()
            shown = URL(self.upstream).origin()  # never a user name, password or query of the setting
            problem = f"nanoclaw gateway: the model API at {shown} failed: {type(exc).__name__}: {exc}"
            self.report(ModelCall(request.method, request.path, 502, _ms(started), None, False, Usage(),
                                  error=problem[:500]))
            return error_response(502, "api_error", problem)

    def _headers(self, request: web.Request) -> dict[str, str]:
        headers = {k: v for k, v in request.headers.items() if k.lower() not in DROPPED_REQUEST_HEADERS}
        headers["accept-encoding"] = "identity"  # plain bytes, so usage can be read as they pass
        if request.content_length is not None:  # the parser holds the body to it; chunked stays chunked
            headers["content-length"] = str(request.content_length)
        headers.update(self.auth.headers())  # type: ignore[union-attr]
        if self.auth.is_oauth:  # type: ignore[union-attr]
            betas = [b for b in request.headers.get("anthropic-beta", "").split(",") if b.strip()]
            headers["anthropic-beta"] = ",".join(dict.fromkeys([*map(str.strip, betas), OAUTH_BETA]))
        return headers

    async def _relay(self, request: web.Request, upstream: aiohttp.ClientResponse, started: float):
        streamed = upstream.headers.get("content-type", "").startswith("text/event-stream")
        reader = UsageReader(streamed)
        response = web.StreamResponse(status=upstream.status, reason=upstream.reason)
        for key, value in upstream.headers.items():
            if key.lower() not in DROPPED_RESPONSE_HEADERS:
                response.headers.add(key, value)
        await response.prepare(request)
        first_byte: float | None = None
        error = None
        try:
            async for chunk in upstream.content.iter_any():
                if first_byte is None:
                    first_byte = _ms(started)
                reader.feed(chunk)
                await response.write(chunk)
            await response.write_eof()
        except (aiohttp.ClientError, ConnectionError, TimeoutError) as exc:
            error = f"stream cut: {type(exc).__name__}: {exc}"[:500]
        except asyncio.CancelledError:
            error = "stream cut: the agent's run ended"
            raise
        finally:
            self.report(ModelCall(request.method, request.path, upstream.status, _ms(started), first_byte,
                                  streamed, reader.finish(), error=error))
        return response


class _Body:
    """The agent's request body, passed on as it arrives (never held whole) and cut at the cap."""

    def __init__(self, request: web.Request):
        self.request = request
        self.too_large = False

    async def chunks(self) -> AsyncIterator[bytes]:
        passed = 0
        async for chunk in self.request.content.iter_any():
            passed += len(chunk)
            if passed > MAX_REQUEST_BYTES:  # a chunked body has no length to check up front
                self.too_large = True
                raise ValueError("request over the cap")  # the API sees the body end unfinished
            yield chunk


def _too_large() -> web.Response:
    return error_response(413, "request_too_large", f"nanoclaw gateway: requests are capped at "
                                                    f"{MAX_REQUEST_BYTES} bytes")


def _ms(since: float) -> float:
    return round((time.perf_counter() - since) * 1000, 3)
