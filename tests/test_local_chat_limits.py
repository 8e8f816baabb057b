"""The local chat's limits: a handshake timeout, a connection cap, a message size, a stalled reader.

The real channel on a real socket with small limits, so each test takes a
second; the figures a real router runs with are tested through `nanoclaw run`
in test_local_chat_router.py.
"""

from __future__ import annotations

import socket
import time

import pytest

from router.channels.local_client import ChatClientError, LocalChatClient
from tests.local_chat_harness import ChannelInThread, RawPeer
from tests.waiting import wait_for

HANDSHAKE_S = 0.5


@pytest.fixture
def chat(settings):
    channel = ChannelInThread(settings, ("local:me", "local:other"), handshake_timeout_s=HANDSHAKE_S,
                              max_connections=3, max_message_bytes=1024, push_timeout_s=0.5)
    yield channel
    channel.close()


def test_a_connection_that_sends_nothing_is_closed_after_the_handshake_timeout(chat):
    peer = RawPeer(chat.path)
    assert peer.line()["op"] == "hello"
    started = time.monotonic()
    assert peer.line() == {"op": "error", "message": f"no request within {HANDSHAKE_S:g} s of connecting; closing"}
    assert peer.line() is None
    assert HANDSHAKE_S * 0.8 < time.monotonic() - started < HANDSHAKE_S + 2


def test_a_request_dribbled_without_its_newline_is_closed_after_the_handshake_timeout(chat):
    peer = RawPeer(chat.path)
    peer.line()
    started = time.monotonic()
    with pytest.raises(BrokenPipeError):
        while time.monotonic() - started < HANDSHAKE_S + 5:  # a byte every 0.05 s, never a whole line
            peer.sock.sendall(b"{")
            time.sleep(0.05)
    assert time.monotonic() - started < HANDSHAKE_S + 1
    assert "no request within" in peer.line()["message"]


def test_an_attached_terminal_that_stays_quiet_is_never_cut_off(chat):
    client = LocalChatClient(chat.path, "local:me")
    try:
        time.sleep(HANDSHAKE_S * 4)
        chat.call(chat.channel.send("local:me", "still here?", outbound_id="o1"))
        reply = wait_for(lambda: client.next_event(0.1), what="the reply")
        assert (reply["op"], reply["text"]) == ("reply", "still here?")
        assert client.send("yes")["op"] == "ack"
    finally:
        client.close()


def test_connections_over_the_cap_are_refused_with_a_message_until_one_closes(chat):
    held = [RawPeer(chat.path) for _ in range(3)]
    assert [peer.line()["op"] for peer in held] == ["hello"] * 3
    with pytest.raises(ChatClientError, match="already has 3 connections open, the most it serves"):
        LocalChatClient(chat.path, "local:me")
    held.pop().close()
    wait_for(lambda: chat.channel._open == 2, what="the closed connection to be counted out")
    LocalChatClient(chat.path, "local:me").close()
    for peer in held:
        peer.close()


def test_refused_and_closed_connections_give_their_place_back(chat):
    held = [RawPeer(chat.path) for _ in range(3)]
    for _ in range(10):
        refused = RawPeer(chat.path)
        assert refused.line()["op"] == "error" and refused.line() is None
        refused.close()
    for peer in held:
        peer.close()
    wait_for(lambda: chat.channel._open == 0, what="every connection to be counted out")
    clients = [LocalChatClient(chat.path, "local:me") for _ in range(3)]
    for client in clients:
        client.close()


def test_an_oversize_message_is_answered_with_the_limit_and_nothing_is_recorded(chat):
    client = LocalChatClient(chat.path, "local:me")
    try:
        with pytest.raises(ChatClientError) as caught:
            client.send("x" * 5000)
        assert "message too large" in str(caught.value) and "at most 1,024 bytes (1 KiB)" in str(caught.value)
        assert chat.received == []
        assert client.send("a normal one")["op"] == "ack"  # the connection goes on
    finally:
        client.close()
    assert [m.content for m in chat.received] == ["a normal one"]


def attached_peer(chat) -> RawPeer:
    peer = RawPeer(chat.path)
    peer.line()
    peer.send({"op": "attach", "jid": "local:me"})
    assert peer.line()["op"] == "attached"
    return peer


def test_an_oversize_line_many_times_the_limit_is_skipped_whole(chat):
    peer = attached_peer(chat)
    peer.sock.sendall(b'{"op": "send", "jid": "local:me", "id": "big", "text": "' + b"y" * 200_000 + b'"}\n')
    error = peer.line()
    assert error["op"] == "error" and "200,0" in error["message"]
    peer.send({"op": "send", "jid": "local:me", "id": "small", "text": "after"})
    assert peer.line()["op"] == "ack"
    assert [m.message_id for m in chat.received] == ["small"]


def test_an_oversize_last_line_before_the_client_shuts_down_is_still_answered(chat):
    peer = attached_peer(chat)
    peer.sock.sendall(b"z" * 5000)
    peer.sock.shutdown(socket.SHUT_WR)
    assert "message too large: 5,000 bytes" in peer.line()["message"]
    assert peer.line() is None


def test_an_oversize_first_request_is_answered_and_the_connection_closed_unread(chat):
    peer = RawPeer(chat.path)
    peer.line()
    peer.sock.sendall(b"q" * 3000)  # no newline: a connection that has not said anything valid yet
    error = peer.line()
    assert error["message"].startswith("message too large: over ") and error["message"].endswith("; closing")
    assert peer.line() is None


def test_a_message_just_under_the_limit_is_recorded(chat):
    client = LocalChatClient(chat.path, "local:me")
    try:
        overhead = len(f'{{"op": "send", "jid": "local:me", "id": "{"0" * 32}", "text": "", "sender": '
                       f'"{client.sender}"}}\n')
        assert client.send("w" * (1024 - overhead))["op"] == "ack"
    finally:
        client.close()


def test_a_terminal_that_reads_nothing_is_dropped_and_the_others_still_get_replies(chat):
    stalled = RawPeer(chat.path)
    stalled.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    stalled.line()
    stalled.send({"op": "attach", "jid": "local:me"})
    reader = LocalChatClient(chat.path, "local:me")
    try:
        big = "r" * 100_000
        started = time.monotonic()
        for n in range(8):  # far more than the stalled socket's buffers hold
            chat.call(chat.channel.send("local:me", big, outbound_id=f"o{n}"))
        assert time.monotonic() - started < 5
        replies = [reader.next_event(2) for _ in range(8)]
        assert [r["id"] for r in replies if r and r["op"] == "reply"] == [f"o{n}" for n in range(8)]
        assert len(chat.channel._subscribers["local:me"]) == 1
    finally:
        reader.close()
        stalled.close()


@pytest.mark.parametrize("line", [
    b"not json", b"[1, 2]", b'"text"', b'{"op": "attach"}', b'{"op": 1, "jid": "local:me"}',
    b'{"op": "attach", "jid": 5}', b'{"op": "attach", "jid": "me"}',
])
def test_a_malformed_request_is_answered_and_the_connection_goes_on(chat, line):
    peer = RawPeer(chat.path)
    peer.line()
    peer.sock.sendall(line + b"\n")
    assert peer.line()["op"] == "error"
    peer.send({"op": "send", "jid": "local:me", "id": "ok", "text": "fine"})
    assert peer.line()["op"] == "ack"
    peer.close()
