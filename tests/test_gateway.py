"""The credential gateway's model side, against a real aiohttp stand-in upstream.

A real Gateway (its own loop thread, per-run Unix sockets) in front of a
local server speaking the Messages API's streamed answers; clients are real
HTTP clients on the run's socket. What must hold: the agent's token never
reaches the API and the real key never reaches the agent; a token works for
its own run only and not after it; answers stream through as they come; each
call is recorded with the tokens the API reported.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import stat
import threading
import time

import httpx
import pytest
from aiohttp import web

from base.config import load_settings
from events import types as t
from jobs.gateway import API_SOCKET, PROXY_SOCKET, Gateway
from jobs.workspace import CONTAINER_UID

REAL_KEY = "sk-ant-real-key-never-in-a-box-8c1f"
OAUTH_TOKEN = "sk-ant-oat01-real-oauth-token-3d9a"
PAUSE_S = 0.6


class Upstream:
    """A Messages API stand-in on 127.0.0.1 that streams one event, pauses, then the rest."""

    def __init__(self) -> None:
        self.seen: list[dict] = []
        self.port = 0
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        threading.Thread(target=self._serve, daemon=True).start()
        self._ready.wait(10)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _serve(self) -> None:
        asyncio.set_event_loop(self._loop)
        app = web.Application(client_max_size=64 << 20)
        app.router.add_post("/v1/messages", self._messages)
        runner = web.AppRunner(app)
        self._loop.run_until_complete(runner.setup())
        site = web.TCPSite(runner, "127.0.0.1", 0)
        self._loop.run_until_complete(site.start())
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self._ready.set()
        self._loop.run_forever()

    async def _messages(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        self.seen.append({"headers": dict(request.headers), "body": body, "query": request.query_string})
        if not body.get("stream"):
            return web.json_response({"type": "message", "model": "claude-upstream", "content": [],
                                      "usage": {"input_tokens": 7, "output_tokens": 3}})
        response = web.StreamResponse(headers={"content-type": "text/event-stream"})
        await response.prepare(request)
        start = {"type": "message_start", "message": {"model": "claude-upstream", "usage": {
            "input_tokens": 120, "cache_creation_input_tokens": 30, "cache_read_input_tokens": 900,
            "output_tokens": 1}}}
        await response.write(f"event: message_start\ndata: {json.dumps(start)}\n\n".encode())
        await asyncio.sleep(PAUSE_S)
        delta = {"type": "message_delta", "delta": {"stop_reason": "end_turn"}, "usage": {"output_tokens": 42}}
        await response.write(f"event: message_delta\ndata: {json.dumps(delta)}\n\n".encode())
        await response.write(b'event: message_stop\ndata: {"type":"message_stop"}\n\n')
        await response.write_eof()
        return response


@pytest.fixture(scope="module")
def upstream() -> Upstream:
    return Upstream()


@pytest.fixture
def recorded() -> list[t.Event]:
    return []


def make_gateway(root, monkeypatch, upstream: Upstream, recorded: list, **env: str) -> Gateway:
    monkeypatch.setenv("ANTHROPIC_BASE_URL", upstream.url)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    settings = load_settings()
    settings.ensure_dirs()
    return Gateway(settings, recorded.append)


@pytest.fixture
def gateway(root, monkeypatch, upstream, recorded):
    gw = make_gateway(root, monkeypatch, upstream, recorded, ANTHROPIC_API_KEY=REAL_KEY)
    yield gw
    gw.stop()


def client(access) -> httpx.Client:
    transport = httpx.HTTPTransport(uds=str(access.directory / API_SOCKET))
    return httpx.Client(transport=transport, base_url="http://gateway", timeout=10)


def ask(access, token: str, *, stream: bool = True) -> httpx.Response:
    with client(access) as http:
        return http.post("/v1/messages?beta=true", headers={"x-api-key": token, "anthropic-version": "2023-06-01"},
                         json={"model": "claude-x", "stream": stream, "messages": []})


def calls(recorded: list, settle_s: float = 2.0) -> list[t.ModelCalled]:
    deadline = time.monotonic() + settle_s
    while time.monotonic() < deadline and not any(isinstance(e, t.ModelCalled) for e in recorded):
        time.sleep(0.02)
    return [e for e in recorded if isinstance(e, t.ModelCalled)]


def test_a_call_with_the_runs_token_reaches_the_api_with_the_real_key_instead(gateway, upstream, recorded):
    access = gateway.open_run("run1", "family", "open")
    response = ask(access, access.token)
    assert response.status_code == 200
    seen = upstream.seen[-1]
    assert seen["headers"]["x-api-key"] == REAL_KEY
    assert access.token not in json.dumps(seen)
    assert seen["query"] == "beta=true" and seen["headers"]["anthropic-version"] == "2023-06-01"
    assert REAL_KEY not in response.text and REAL_KEY not in json.dumps(dict(response.headers))


def test_a_long_conversation_reaches_the_api_whole_however_it_arrives(gateway, upstream):
    """The body is read to its end, not just what the first read returns (the CLI's requests grow)."""
    access = gateway.open_run("run16", "family", "open")
    history = [{"role": "user", "content": f"line {n} " + "x" * 1000} for n in range(3000)]  # about 3 MB
    body = json.dumps({"model": "claude-x", "stream": False, "messages": history}).encode()
    pieces = (body[i:i + 65536] for i in range(0, len(body), 65536))
    with client(access) as http:
        response = http.post("/v1/messages", headers={"x-api-key": access.token}, content=pieces)
    assert response.status_code == 200
    assert upstream.seen[-1]["body"]["messages"] == history


def test_a_request_over_the_cap_is_refused_with_413(gateway, upstream):
    from jobs.model_api import MAX_REQUEST_BYTES

    access = gateway.open_run("run17", "family", "open")
    before = len(upstream.seen)
    with client(access) as http:
        response = http.post("/v1/messages", headers={"x-api-key": access.token},
                             content=b"x" * (MAX_REQUEST_BYTES + 1))
    assert response.status_code == 413 and "capped" in response.json()["error"]["message"]
    assert len(upstream.seen) == before


def test_each_call_is_recorded_with_the_model_and_the_tokens_the_api_reported(gateway, recorded):
    access = gateway.open_run("run2", "family", "open")
    ask(access, access.token)
    [call] = calls(recorded)
    assert (call.run_id, call.folder, call.status, call.model, call.streamed) == \
        ("run2", "family", 200, "claude-upstream", True)
    assert (call.input_tokens, call.output_tokens, call.cache_creation_input_tokens,
            call.cache_read_input_tokens) == (120, 42, 30, 900)
    assert call.duration_ms >= PAUSE_S * 1000 and call.first_byte_ms < call.duration_ms


def test_a_plain_json_answer_is_recorded_too(gateway, recorded):
    access = gateway.open_run("run3", "family", "open")
    assert ask(access, access.token, stream=False).json()["usage"] == {"input_tokens": 7, "output_tokens": 3}
    [call] = calls(recorded)
    assert (call.streamed, call.input_tokens, call.output_tokens) == (False, 7, 3)


def test_the_answer_streams_through_as_it_comes_not_when_it_ends(gateway):
    access = gateway.open_run("run4", "family", "open")
    started = time.monotonic()
    arrivals = []
    with client(access) as http:
        with http.stream("POST", "/v1/messages", headers={"x-api-key": access.token},
                         json={"stream": True, "messages": []}) as response:
            for chunk in response.iter_raw():
                arrivals.append((time.monotonic() - started, chunk))
    assert b"message_start" in arrivals[0][1] and b"message_stop" in arrivals[-1][1]
    assert arrivals[0][0] < PAUSE_S * 0.8 <= arrivals[-1][0]


def test_a_wrong_token_is_refused_and_never_reaches_the_api(gateway, upstream, recorded):
    access = gateway.open_run("run5", "family", "open")
    before = len(upstream.seen)
    response = ask(access, "sk-ant-guess")
    assert response.status_code == 401 and "not this run's token" in response.json()["error"]["message"]
    assert len(upstream.seen) == before
    assert calls(recorded)[0].status == 401


def test_a_token_is_good_only_on_its_own_runs_socket(gateway, upstream):
    mine = gateway.open_run("run6", "family", "open")
    theirs = gateway.open_run("run7", "work", "open")
    before = len(upstream.seen)
    assert ask(theirs, mine.token).status_code == 401
    assert ask(mine, theirs.token).status_code == 401
    assert len(upstream.seen) == before
    assert ask(mine, mine.token).status_code == 200


@pytest.mark.parametrize("settle_s", [0.0, 0.3])
def test_once_the_run_ends_its_sockets_are_gone_and_its_token_is_refused(gateway, upstream, settle_s):
    access = gateway.open_run("run8", "family", "open")
    path = access.directory / API_SOCKET
    assert ask(access, access.token).status_code == 200
    kept = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    kept.connect(str(path))  # a connection opened during the run, used after it ended
    time.sleep(settle_s)     # not yet accepted, or accepted and idle
    gateway.close_run("run8")
    assert not access.directory.exists()
    with pytest.raises(httpx.TransportError):
        ask(access, access.token)
    before = len(upstream.seen)
    try:
        kept.sendall(f"POST /v1/messages HTTP/1.1\r\nHost: x\r\nx-api-key: {access.token}\r\n"
                     f"content-length: 2\r\n\r\n{{}}".encode())
        kept.settimeout(2)
        answer = kept.recv(4096)
    except OSError:  # reset, refused, or left unanswered: never forwarded
        answer = b""
    finally:
        kept.close()
    assert answer == b"" or b" 401 " in answer.split(b"\r\n")[0]
    assert len(upstream.seen) == before


def test_the_runs_sockets_admit_only_the_containers_user(gateway):
    access = gateway.open_run("run9", "family", "open")
    for name in (API_SOCKET, PROXY_SOCKET):
        info = os.stat(access.directory / name)
        assert stat.S_ISSOCK(info.st_mode) and stat.S_IMODE(info.st_mode) == 0o600
        assert info.st_uid == (CONTAINER_UID if os.getuid() == 0 else os.getuid())


def test_an_oauth_login_is_sent_as_a_bearer_token_with_its_beta_flag(root, monkeypatch, upstream, recorded):
    gw = make_gateway(root, monkeypatch, upstream, recorded, CLAUDE_CODE_OAUTH_TOKEN=OAUTH_TOKEN)
    try:
        access = gw.open_run("run10", "family", "open")
        with client(access) as http:
            http.post("/v1/messages", headers={"x-api-key": access.token, "anthropic-beta": "tools-2024"},
                      json={"stream": False})
    finally:
        gw.stop()
    headers = upstream.seen[-1]["headers"]
    assert headers["Authorization"] == f"Bearer {OAUTH_TOKEN}" and "x-api-key" not in headers
    assert headers["anthropic-beta"] == "tools-2024,oauth-2025-04-20"


def test_without_credentials_the_agent_is_told_what_to_set(root, monkeypatch, upstream, recorded):
    for key in ("ANTHROPIC_API_KEY", "CLAUDE_CODE_OAUTH_TOKEN", "ANTHROPIC_AUTH_TOKEN"):
        monkeypatch.delenv(key, raising=False)
    gw = make_gateway(root, monkeypatch, upstream, recorded)
    try:
        access = gw.open_run("run11", "family", "open")
        response = ask(access, access.token)
    finally:
        gw.stop()
    assert response.status_code == 401
    assert "ANTHROPIC_API_KEY" in response.json()["error"]["message"]


def test_an_unreachable_api_is_a_clear_502_and_recorded(root, monkeypatch, recorded):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        dead_port = probe.getsockname()[1]
    monkeypatch.setenv("ANTHROPIC_BASE_URL", f"http://127.0.0.1:{dead_port}")
    monkeypatch.setenv("ANTHROPIC_API_KEY", REAL_KEY)
    settings = load_settings()
    settings.ensure_dirs()
    gw = Gateway(settings, recorded.append)
    try:
        access = gw.open_run("run12", "family", "open")
        response = ask(access, access.token)
    finally:
        gw.stop()
    assert response.status_code == 502 and "failed" in response.json()["error"]["message"]
    assert calls(recorded)[0].status == 502


# --- the run's proxy socket -----------------------------------------------------

from tests.egress_harness import remote  # noqa: E402,F401  (the namespace host fixture)


def proxied(access, url: str) -> httpx.Response:
    """A plain-HTTP GET through the run's proxy socket, as curl with --proxy would send it."""
    transport = httpx.HTTPTransport(uds=str(access.directory / PROXY_SOCKET))
    with httpx.Client(transport=transport, timeout=10) as http:
        return http.request("GET", url, headers={"host": url.split("/")[2]},
                            extensions={"target": url.encode()})


def egress_events(recorded: list, count: int) -> list[t.EgressChecked]:
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline and sum(isinstance(e, t.EgressChecked) for e in recorded) < count:
        time.sleep(0.02)
    time.sleep(0.1)
    return [e for e in recorded if isinstance(e, t.EgressChecked)]


def test_the_proxy_applies_the_runs_policy_and_records_each_destination_once(gateway, recorded, remote):
    access = gateway.open_run("run13", "family", f"allow:{remote.address}")
    for _ in range(3):
        assert proxied(access, f"http://{remote.address}/page").status_code == 200
    refused = proxied(access, "http://127.0.0.1:9/")
    assert refused.status_code == 403 and "127.0.0.1" in refused.text
    events = egress_events(recorded, 2)
    assert [(e.host, e.port, e.allowed, e.policy) for e in events] == [
        (remote.address, 80, True, f"allow:{remote.address}"), ("127.0.0.1", 9, False, f"allow:{remote.address}")]
    assert events[0].run_id == "run13" and events[0].folder == "family" and events[1].reason


def test_model_only_refuses_every_destination_with_a_reason_the_agent_can_read(gateway, recorded, remote):
    access = gateway.open_run("run14", "family", "model-only")
    before = len(remote.http.requests())
    response = proxied(access, f"http://{remote.address}/page")
    assert response.status_code == 403 and "model-only" in response.text
    assert len(remote.http.requests()) == before


def test_a_tunnel_open_when_the_run_ends_is_cut(gateway, remote):
    access = gateway.open_run("run15", "family", "open")
    tunnel = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    tunnel.connect(str(access.directory / PROXY_SOCKET))
    tunnel.sendall(f"CONNECT {remote.address}:80 HTTP/1.1\r\nHost: {remote.address}:80\r\n\r\n".encode())
    tunnel.settimeout(10)
    assert b" 200 " in tunnel.recv(4096).split(b"\r\n")[0]
    gateway.close_run("run15")
    tunnel.settimeout(5)
    assert tunnel.recv(4096) == b""  # closed by the gateway, not left to run on
    tunnel.close()
