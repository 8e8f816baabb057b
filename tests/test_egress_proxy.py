"""The egress proxy on a real Unix socket, with real clients, against a remote host in a namespace."""

from __future__ import annotations

import socket
import time

import pytest

from jobs.egress_proxy import EgressDecision
from tests.egress_harness import (REMOTE_TIMEOUT_S, client, curl,  # noqa: F401 (fixtures); fmt: skip
                                  host_listener, never_accepted, read_to_end, remote, serve)


def test_an_allowed_get_reaches_the_remote_host_in_origin_form(serve, remote):
    proxy = serve(f"allow:{remote.address}")
    before = len(remote.http.requests())
    with client(proxy, remote) as http:
        answer = http.get(f"{remote.http.url}/hello?x=1", headers={"Proxy-Authorization": "Basic c2VjcmV0"})
    assert answer.status_code == 200
    assert answer.text == f"hello from {remote.address}:80 GET /hello?x=1\n"
    seen = remote.http.requests()[before]
    assert seen["path"] == "/hello?x=1"
    assert seen["headers"]["Host"] == remote.address
    assert seen["headers"]["Connection"] == "close"
    assert "Proxy-Authorization" not in seen["headers"]
    assert proxy.wait_for_decisions(1) == [
        EgressDecision("GET", remote.address, 80, remote.address, True, None, None)
    ]


def test_an_allowed_connect_tunnels_tls_to_the_remote_host(serve, remote):
    proxy = serve(f"allow:{remote.address}")
    before = len(remote.https.requests())
    with client(proxy, remote) as http:
        answer = http.get(f"{remote.https.url}/secure")
    assert answer.text == f"hello from {remote.address}:443 GET /secure\n"
    assert remote.https.requests()[before]["path"] == "/secure"
    assert proxy.wait_for_decisions(1) == [
        EgressDecision("CONNECT", remote.address, 443, remote.address, True, None, 200)
    ]


def test_curl_reaches_the_remote_host_over_http_and_https(serve, remote):
    proxy = serve("open")
    plain = curl(proxy, f"{remote.http.url}/curl")
    secure = curl(proxy, f"{remote.https.url}/curl", "--cacert", str(remote.ca))
    assert plain.stdout == f"hello from {remote.address}:80 GET /curl\n", plain.stderr
    assert secure.stdout == f"hello from {remote.address}:443 GET /curl\n", secure.stderr


def test_a_request_body_is_forwarded_with_its_length(serve, remote):
    proxy = serve("open")
    before = len(remote.http.requests())
    with client(proxy, remote) as http:
        answer = http.post(f"{remote.http.url}/form", content=b"a=1&b=" + b"x" * 100_000)
    assert answer.status_code == 200
    assert remote.http.requests()[before]["body"] == "a=1&b=" + "x" * 100_000


def test_the_destination_sees_the_url_host_not_the_host_header_the_client_sent(serve, remote):
    proxy = serve("open")
    before = len(remote.http.requests())
    with client(proxy, remote) as http:
        http.get(f"{remote.http.url}/", headers={"Host": "evil.org"})
    assert remote.http.requests()[before]["headers"]["Host"] == remote.address


def test_a_host_the_policy_refuses_gets_403_with_the_reason(serve, remote):
    proxy = serve("allow:example.com")
    before = len(remote.http.requests())
    with client(proxy, remote) as http:
        answer = http.get(f"{remote.http.url}/")
    assert answer.status_code == 403
    assert answer.text == f"nanoclaw egress policy allow:example.com refuses {remote.address}:80\n"
    assert len(remote.http.requests()) == before
    assert proxy.wait_for_decisions(1)[0].allowed is False


def test_the_policy_judges_the_host_the_proxy_would_connect_to(serve, remote):
    proxy = serve(f"allow:{remote.address}")
    answer = proxy.exchange(f"GET http://127.0.0.1#@{remote.address}/ HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    assert answer.endswith(f"allow:{remote.address} refuses 127.0.0.1:80\n".encode())


def test_bytes_sent_right_after_connect_go_through_the_tunnel(serve, remote):
    proxy = serve("open")
    early = "GET /early HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    answer = proxy.exchange(f"CONNECT {remote.address}:80 HTTP/1.1\r\nHost: x\r\n\r\n{early}".encode())
    assert answer.startswith(b"HTTP/1.1 200 Connection established\r\n\r\nHTTP/1.1 200 OK\r\n")
    assert answer.endswith(f"hello from {remote.address}:80 GET /early\n".encode())


def test_a_connection_header_cannot_strip_the_body_length(serve, remote):
    proxy = serve("open")
    before = len(remote.http.requests())
    head = f"POST {remote.http.url}/len HTTP/1.1\r\nHost: x\r\nConnection: content-length\r\nContent-Length: 5\r\n\r\n"
    answer = proxy.exchange(head.encode() + b"hello")
    assert answer.startswith(b"HTTP/1.1 200 OK\r\n")
    assert remote.http.requests()[before]["body"] == "hello"


def test_a_refused_connect_gets_403_with_the_reason(serve, remote):
    proxy = serve("model-only")
    before = len(remote.https.requests())
    answer = proxy.exchange(f"CONNECT {remote.address}:443 HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    assert answer.startswith(b"HTTP/1.1 403 Forbidden\r\n")
    assert answer.endswith(f"nanoclaw egress policy model-only refuses {remote.address}:443\n".encode())
    assert len(remote.https.requests()) == before


@pytest.mark.parametrize(
    "target",
    ["127.0.0.1", "127.9.9.9", "[::1]", "localhost", "localhost.", "LOCALHOST", "[::ffff:127.0.0.1]",
     "{local}", "[::ffff:{local}]", "0.0.0.0", "[::]", "169.254.169.254", "10.1.2.3", "192.168.1.1",
     "172.17.0.1", "100.64.0.1", "224.0.0.1", "[fe80::1]", "[fc00::1]", "[::127.0.0.1]", "[64:ff9b::7f00:1]",
     "[2002:7f00:1::]", "255.255.255.255", "11.22.33.{broadcast}"],
)  # fmt: skip
@pytest.mark.parametrize("method", ["GET", "CONNECT"])
def test_addresses_that_are_not_public_or_are_this_machines_are_refused_even_when_open(
    serve, remote, host_listener, target, method
):
    port = host_listener.getsockname()[1]
    broadcast = int(remote.address.rsplit(".", 1)[1]) + 1
    host = target.format(local=remote.host.local_address, broadcast=broadcast)
    proxy = serve("open")
    request = f"GET http://{host}:{port}/ HTTP/1.1" if method == "GET" else f"CONNECT {host}:{port} HTTP/1.1"
    answer = proxy.exchange(f"{request}\r\nHost: {host}:{port}\r\n\r\n".encode())
    assert answer.startswith(b"HTTP/1.1 403 Forbidden\r\n"), answer
    assert b"whatever the policy" in answer
    assert never_accepted(host_listener)
    (decision,) = proxy.wait_for_decisions(1)
    assert decision.allowed is False and decision.status == 403


def _resolver(table: dict[str, list[str]], calls: list[str]):
    async def resolve(host: str, port: int) -> list[str]:
        calls.append(host)
        return table[host]

    return resolve


def test_a_name_with_any_private_address_is_refused(serve, remote, host_listener):
    calls: list[str] = []
    names = {"mixed.test": [remote.address, "127.0.0.1"]}
    proxy = serve("open", resolver=_resolver(names, calls))
    answer = proxy.exchange(b"GET http://mixed.test/ HTTP/1.1\r\nHost: mixed.test\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 403 Forbidden\r\n")
    assert b"127.0.0.1 is a loopback address" in answer


def test_a_name_is_resolved_once_and_the_checked_address_is_the_one_connected(serve, remote):
    calls: list[str] = []
    answers = iter([[remote.address]] + [["127.0.0.1"]] * 10)

    async def rebinding(host: str, port: int) -> list[str]:
        calls.append(host)
        return next(answers)

    proxy = serve("allow:remote.test", resolver=rebinding)
    answer = proxy.exchange(b"GET http://remote.test/rebind HTTP/1.1\r\nHost: remote.test\r\n\r\n")
    assert answer.endswith(f"hello from {remote.address}:80 GET /rebind\n".encode())
    assert calls == ["remote.test"]
    assert remote.http.requests()[-1]["headers"]["Host"] == "remote.test"


def test_a_second_request_on_one_connection_never_reaches_another_destination(serve, remote):
    proxy = serve("open")
    before = len(remote.other.requests())
    first = f"GET {remote.http.url}/first HTTP/1.1\r\nHost: a\r\n\r\n"
    second = f"GET {remote.other.url}/second HTTP/1.1\r\nHost: b\r\n\r\n"
    answer = proxy.exchange((first + second).encode())
    assert answer.count(b"HTTP/1.1 ") == 1
    assert answer.endswith(f"hello from {remote.address}:80 GET /first\n".encode())
    assert len(remote.other.requests()) == before
    assert len(proxy.wait_for_decisions(1)) == 1


def test_a_keep_alive_client_gets_a_fresh_decision_for_each_destination(serve, remote):
    proxy = serve(f"allow:{remote.address}")
    with client(proxy, remote) as http:
        assert http.get(f"{remote.http.url}/one").status_code == 200
        assert http.get(f"{remote.other.url}/two").status_code == 403
    decisions = proxy.wait_for_decisions(2)
    assert [(d.port, d.allowed) for d in decisions] == [(80, True), (8080, False)]


@pytest.mark.parametrize(
    ("head", "says"),
    [
        (b"GET /path HTTP/1.1\r\nHost: example.com\r\n\r\n", b"absolute http URL"),
        (b"GET https://example.com/ HTTP/1.1\r\nHost: example.com\r\n\r\n", b"absolute http URL"),
        (b"GET ftp://example.com/ HTTP/1.1\r\nHost: example.com\r\n\r\n", b"absolute http URL"),
        (b"GET http://user:pw@example.com/ HTTP/1.1\r\nHost: example.com\r\n\r\n", b"credentials"),
        (b"CONNECT example.com HTTP/1.1\r\nHost: example.com\r\n\r\n", b"host:port"),
        (b"CONNECT evil.org#@example.com:443 HTTP/1.1\r\nHost: x\r\n\r\n", b"cannot read the destination"),
        (b"CONNECT example.com:99999 HTTP/1.1\r\nHost: x\r\n\r\n", b"port"),
        (b"GET http://exa mple.com/ HTTP/1.1\r\n\r\n", b"cannot read the request"),
        (b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n", b"cannot read the request"),
        (b"GET http://example.com/ HTTP/1.1\r\nHost: example.com\r\n" + b"X: " + b"a" * 20000 + b"\r\n\r\n",
         b"over 16384 bytes"),
    ],
)  # fmt: skip
def test_anything_but_a_proxy_request_gets_400(serve, head, says):
    proxy = serve("open")
    answer = proxy.exchange(head)
    assert answer.startswith(b"HTTP/1.1 400 Bad Request\r\n"), answer
    assert says in answer
    assert proxy.wait_for_decisions(1)[0].status == 400


def test_a_head_that_never_ends_gets_400_at_the_size_cap(serve):
    proxy = serve("open", max_head_bytes=1024)
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as raw:
        raw.settimeout(REMOTE_TIMEOUT_S)
        raw.connect(str(proxy.socket_path))
        raw.sendall(b"GET http://example.com/ HTTP/1.1\r\n" + b"X-Pad: " + b"p" * 4096)
        assert raw.recv(65536).startswith(b"HTTP/1.1 400 Bad Request\r\n")


def test_a_silent_client_gets_408_and_is_closed(serve):
    proxy = serve("open", head_timeout_s=0.3)
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as silent:
        silent.settimeout(REMOTE_TIMEOUT_S)
        silent.connect(str(proxy.socket_path))
        assert read_to_end(silent).startswith(b"HTTP/1.1 408 Request Timeout\r\n")


def test_a_destination_that_refuses_connections_gives_502(serve, remote):
    proxy = serve("open")
    answer = proxy.exchange(f"CONNECT {remote.address}:81 HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    assert answer.startswith(b"HTTP/1.1 502 Bad Gateway\r\n")
    assert f"{remote.address}:81 refused the connection".encode() in answer
    (decision,) = proxy.wait_for_decisions(1)
    assert decision.allowed is True and decision.status == 502


def test_a_destination_that_never_answers_gives_504(serve, remote):
    remote.host.run(["iptables", "-A", "INPUT", "-p", "tcp", "--dport", "82", "-j", "DROP"])
    proxy = serve("open", connect_timeout_s=0.5)
    answer = proxy.exchange(f"GET http://{remote.address}:82/ HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    assert answer.startswith(b"HTTP/1.1 504 Gateway Timeout\r\n")
    assert b"no answer from" in answer


def test_a_name_that_does_not_resolve_gives_502(serve):
    proxy = serve("open")
    answer = proxy.exchange(b"GET http://nothing.invalid/ HTTP/1.1\r\nHost: x\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 502 Bad Gateway\r\n")
    assert b"cannot resolve nothing.invalid" in answer


def test_a_connection_that_cannot_be_recorded_is_refused(serve, remote):
    def failing(decision):
        raise RuntimeError("the event log is gone")

    proxy = serve("open", record=failing)
    before = len(remote.https.requests())
    answer = proxy.exchange(f"CONNECT {remote.address}:443 HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    assert answer.startswith(b"HTTP/1.1 500 ")
    assert len(remote.https.requests()) == before


def test_connections_over_the_limit_get_503(serve, remote):
    proxy = serve("open", max_connections=1)
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as held:
        held.settimeout(REMOTE_TIMEOUT_S)
        held.connect(str(proxy.socket_path))
        held.sendall(f"CONNECT {remote.address}:80 HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        assert held.recv(65536).startswith(b"HTTP/1.1 200 ")
        second = proxy.exchange(f"CONNECT {remote.address}:80 HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    assert second.startswith(b"HTTP/1.1 503 ")
    assert b"limit of 1 connections" in second


def test_a_client_over_the_limit_that_writes_after_the_refusal_still_reads_the_503(serve, remote):
    """The proxy answers an over-limit connection at once and closes it: the answer is there to read."""
    proxy = serve("open", max_connections=1)
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as held, \
            socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as late:
        held.settimeout(REMOTE_TIMEOUT_S)
        held.connect(str(proxy.socket_path))
        held.sendall(f"CONNECT {remote.address}:80 HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        assert held.recv(65536).startswith(b"HTTP/1.1 200 ")
        late.settimeout(REMOTE_TIMEOUT_S)
        late.connect(str(proxy.socket_path))
        time.sleep(0.3)  # the refusal is written and the connection closed before the client writes
        try:
            late.sendall(f"CONNECT {remote.address}:80 HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        except BrokenPipeError:
            pass
        assert read_to_end(late, tolerate_reset=True).startswith(b"HTTP/1.1 503 ")


def test_an_idle_tunnel_is_closed(serve, remote):
    proxy = serve("open", idle_timeout_s=0.5)
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as raw:
        raw.settimeout(REMOTE_TIMEOUT_S)
        raw.connect(str(proxy.socket_path))
        raw.sendall(f"CONNECT {remote.address}:80 HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        started = time.monotonic()
        assert read_to_end(raw) == b"HTTP/1.1 200 Connection established\r\n\r\n"
    assert time.monotonic() - started < 3


def test_every_connection_is_recorded_once(serve, remote):
    proxy = serve(f"allow:{remote.address}")
    with client(proxy, remote) as http:
        http.get(f"{remote.http.url}/a")
        http.get(f"{remote.https.url}/b")
        http.get("http://example.com/")
    proxy.exchange(b"garbage\r\n\r\n")
    proxy.exchange(b"")
    decisions = proxy.wait_for_decisions(5)
    time.sleep(0.2)
    assert [(d.method, d.status) for d in decisions] == [
        ("GET", None), ("CONNECT", 200), ("GET", 403), ("", 400), ("", None)
    ]  # fmt: skip
