"""Requests an agent crafts on its model socket to send the real key elsewhere, or to read it back.

A real Gateway in front of two stand-ins: the configured API and an
"elsewhere" the agent would like the key sent to. The requests are written
byte by byte on the run's Unix socket, as a hostile process in the container
could: odd request targets and Host headers, its own auth headers in any
case and number, HTTP/1.0, pipelining, upgrades, chunked bodies past the cap.
"""

from __future__ import annotations

import json
import socket
import time

import pytest

from base.config import load_settings
from jobs.gateway import API_SOCKET, Gateway
from jobs.model_api import MAX_REQUEST_BYTES
from tests.security.model_stand_in import StandIn

REAL_KEY = "sk-ant-api03-real-key-of-the-host-5e2b"


@pytest.fixture(scope="module")
def api() -> StandIn:
    return StandIn()


@pytest.fixture(scope="module")
def elsewhere() -> StandIn:
    return StandIn()


def open_gateway(monkeypatch, base_url: str) -> Gateway:
    monkeypatch.setenv("ANTHROPIC_BASE_URL", base_url)
    monkeypatch.setenv("ANTHROPIC_API_KEY", REAL_KEY)
    settings = load_settings()
    settings.ensure_dirs()
    return Gateway(settings, lambda event: None)


@pytest.fixture
def run(root, monkeypatch, api):
    gateway = open_gateway(monkeypatch, api.url)
    yield gateway.open_run("run-a", "family", "model-only")
    gateway.stop()


def exchange(access, data: bytes, wait_s: float = 3.0) -> bytes:
    """Send raw bytes on the run's model socket; everything the gateway answers until it closes or goes quiet."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
        conn.connect(str(access.directory / API_SOCKET))
        try:
            conn.sendall(data)
        except (BrokenPipeError, ConnectionResetError):  # answered and closed before it read everything
            pass
        conn.settimeout(wait_s)
        answer = b""
        try:
            while chunk := conn.recv(65536):
                answer += chunk
        except (socket.timeout, ConnectionResetError):
            pass
    return answer


def post(target: str, token: str, *, extra: str = "", body: bytes = b"{}", version: str = "1.1") -> bytes:
    return (f"POST {target} HTTP/{version}\r\nHost: api\r\nx-api-key: {token}\r\n{extra}"
            f"content-length: {len(body)}\r\n\r\n").encode() + body


def statuses(answer: bytes) -> list[int]:
    return [int(line.split()[1]) for line in answer.split(b"\r\n") if line.startswith(b"HTTP/1.")]


def key_headers(entry: dict) -> list[tuple[str, str]]:
    return [(k.lower(), v) for k, v in entry["headers"] if k.lower() in ("x-api-key", "authorization")]


TARGET_TRICKS = [
    "http://127.0.0.1:{port}/v1/messages", "//127.0.0.1:{port}/v1/messages", "///127.0.0.1:{port}/x",
    "@127.0.0.1:{port}/v1/messages", ".evil.example/v1/messages", ":{port}/v1/messages",
    "/../../v1/messages", "/%2e%2e/%2e%2e/v1/messages", "/v1/messages?next=http://127.0.0.1:{port}/",
    "127.0.0.1:{port}", "*",
]


@pytest.mark.parametrize("target", TARGET_TRICKS)
def test_no_request_target_sends_the_key_anywhere_but_the_configured_api(run, api, elsewhere, target):
    before = len(api.seen)
    answer = exchange(run, post(target.format(port=elsewhere.port), run.token,
                                extra=f"Host: 127.0.0.1:{elsewhere.port}\r\n"))
    assert elsewhere.seen == []
    assert REAL_KEY.encode() not in answer
    for entry in api.seen[before:]:
        assert key_headers(entry) == [("x-api-key", REAL_KEY)]


HEADER_TRICKS = [
    "X-API-KEY: sk-ant-agent-own\r\n", "x-api-key: sk-ant-second\r\n",
    "Authorization: Bearer sk-ant-agent-bearer\r\nauthorization: Basic Zm9vOmJhcg==\r\n",
    "AUTHORIZATION: Bearer {token}\r\n", "Anthropic-Api-Key: sk-ant-x\r\nProxy-Authorization: Basic eA==\r\n",
]


@pytest.mark.parametrize("extra", HEADER_TRICKS)
def test_the_api_gets_exactly_one_credential_the_real_one_however_the_agent_spells_its_own(run, api, extra):
    before = len(api.seen)
    answer = exchange(run, post("/v1/messages", run.token, extra=extra.format(token=run.token)))
    assert statuses(answer) == [200]
    [entry] = api.seen[before:]
    assert key_headers(entry) == [("x-api-key", REAL_KEY)]
    sent = json.dumps(entry["headers"])
    assert run.token not in sent and "sk-ant-agent" not in sent and "Basic" not in sent


def test_http_1_0_and_pipelined_requests_are_each_checked_for_the_token(run, api):
    before = len(api.seen)
    answer = exchange(run, post("/v1/messages", run.token, version="1.0"))
    assert statuses(answer) == [200] and len(api.seen) == before + 1
    pipelined = (post("/v1/messages", run.token, extra="connection: keep-alive\r\n")
                 + post("/v1/messages", "sk-ant-guess") + post("/v1/messages", ""))
    answer = exchange(run, pipelined)
    first, *rest = statuses(answer)
    assert first == 200 and rest and set(rest) == {401}  # aiohttp may close after a refusal: never a 200
    assert len(api.seen) == before + 2


def test_an_upgrade_to_a_websocket_is_never_passed_on(run, api):
    before = len(api.seen)
    exchange(run, (f"GET /v1/messages HTTP/1.1\r\nHost: api\r\nx-api-key: {run.token}\r\nConnection: Upgrade\r\n"
                   "Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZQ==\r\n"
                   "\r\n").encode())
    for entry in api.seen[before:]:
        assert not any(k.lower() == "upgrade" for k, _ in entry["headers"])


def test_a_huge_header_is_refused_before_anything_is_forwarded(run, api):
    before = len(api.seen)
    answer = exchange(run, post("/v1/messages", run.token, extra=f"x-pad: {'a' * (1 << 20)}\r\n"))
    assert statuses(answer) and statuses(answer)[0] in (400, 431)
    assert len(api.seen) == before


def test_a_chunked_body_past_the_cap_is_refused_and_never_reaches_the_api_whole(run, api):
    before = len(api.seen)
    piece = b"x" * (1 << 20)
    chunks = b"".join(b"%x\r\n%s\r\n" % (len(piece), piece) for _ in range(MAX_REQUEST_BYTES // len(piece) + 2))
    head = (f"POST /v1/messages HTTP/1.1\r\nHost: api\r\nx-api-key: {run.token}\r\n"
            "transfer-encoding: chunked\r\n\r\n").encode()
    answer = exchange(run, head + chunks + b"0\r\n\r\n", wait_s=10)
    assert statuses(answer)[:1] == [413] and b"capped" in answer
    assert not any(entry["whole"] for entry in api.seen[before:])


def test_a_declared_length_past_the_cap_is_refused_without_reading_the_body(run, api):
    before = len(api.seen)
    head = (f"POST /v1/messages HTTP/1.1\r\nHost: api\r\nx-api-key: {run.token}\r\n"
            f"content-length: {MAX_REQUEST_BYTES + 1}\r\n\r\n").encode()
    assert statuses(exchange(run, head))[:1] == [413]
    assert len(api.seen) == before


def test_an_unreachable_api_never_tells_the_agent_the_password_in_its_url(root, monkeypatch):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        dead = probe.getsockname()[1]
    gateway = open_gateway(monkeypatch, f"http://nanoclaw:hunter2-proxy-password@127.0.0.1:{dead}/?key=q-secret")
    try:
        access = gateway.open_run("run-b", "family", "model-only")
        answer = exchange(access, post("/v1/messages", access.token))
    finally:
        gateway.stop()
    assert statuses(answer) == [502] and b"failed" in answer
    assert b"hunter2" not in answer and b"q-secret" not in answer


def test_a_token_stops_working_the_moment_its_run_ends_even_on_a_connection_kept_alive(run, api, root, monkeypatch):
    gateway = open_gateway(monkeypatch, api.url)
    try:
        access = gateway.open_run("run-c", "family", "model-only")
        other = gateway.open_run("run-d", "work", "model-only")
        assert statuses(exchange(other, post("/v1/messages", access.token))) == [401]
        conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        conn.connect(str(access.directory / API_SOCKET))
        conn.sendall(post("/v1/messages", access.token))
        conn.settimeout(5)
        assert b" 200 " in conn.recv(65536)
        gateway.close_run("run-c")
        before = len(api.seen)
        try:
            conn.sendall(post("/v1/messages", access.token))
            later = conn.recv(65536)
        except OSError:
            later = b""
        conn.close()
        assert later == b"" or statuses(later) == [401]
        assert len(api.seen) == before
        time.sleep(0.1)
        assert statuses(exchange(other, post("/v1/messages", other.token))) == [200]
    finally:
        gateway.stop()
