"""The credential gateway's model-API side: one run's calls, forwarded with the real key.

An agent's Claude CLI talks to this server (over its run's Unix socket) as
if it were the Messages API, authenticating with its run's token. The token
is checked, the agent's own auth headers are dropped, the real credential is
added, and the request goes to the configured API. The answer streams back
chunk by chunk as it arrives (nothing is buffered, so the CLI sees tokens as
the model writes them) while model_usage.py reads the token counts off it.
Each call ends as one `ModelCall` handed to the gateway for the log.
"""

from __future__ import annotations

import hmac
import time
from dataclasses import dataclass
from typing import Callable

import aiohttp
from aiohttp import web

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
        try:
            body = await request.read()  # the whole body: the app caps it at MAX_REQUEST_BYTES
        except web.HTTPRequestEntityTooLarge:
            return error_response(413, "request_too_large", f"nanoclaw gateway: requests are capped at "
                                                            f"{MAX_REQUEST_BYTES} bytes")
        except (aiohttp.ClientError, ConnectionError) as exc:
            return error_response(400, "invalid_request_error", f"nanoclaw gateway: could not read the request: {exc}")
        return await self._forward(request, body, started)

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

    async def _forward(self, request: web.Request, body: bytes, started: float) -> web.StreamResponse:
        url = self.upstream + request.rel_url.path_qs
        try:
            async with self.session.request(request.method, url, headers=self._headers(request), data=body,
                                            allow_redirects=False) as upstream:
                return await self._relay(request, upstream, started)
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            problem = f"nanoclaw gateway: the model API at {self.upstream} failed: {type(exc).__name__}: {exc}"
            self.report(ModelCall(request.method, request.path, 502, _ms(started), None, False, Usage(),
                                  error=problem[:500]))
            return error_response(502, "api_error", problem)

    def _headers(self, request: web.Request) -> dict[str, str]:
        headers = {k: v for k, v in request.headers.items() if k.lower() not in DROPPED_REQUEST_HEADERS}
        headers["accept-encoding"] = "identity"  # plain bytes, so usage can be read as they pass
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
        self.report(ModelCall(request.method, request.path, upstream.status, _ms(started), first_byte, streamed,
                              reader.finish(), error=error))
        return response


def _ms(since: float) -> float:
    return round((time.perf_counter() - since) * 1000, 3)
