"""Where the local chat socket lives, how its folder is guarded, and who may talk through it.

The channel is the real one on a real socket; peers with another uid run as
uid 1000 through `setpriv`, one in another pid namespace through `unshare`,
and a planted router is a real server run by uid 1000.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from loguru import logger

from base.config import ConfigError, load_settings
from router.channels.local import LocalChatError
from router.channels.local_client import ChatClientError, LocalChatClient
from tests.local_chat_harness import ChannelInThread, RawPeer

OTHER_UID = 1000
AS_OTHER_USER = ["setpriv", f"--reuid={OTHER_UID}", f"--regid={OTHER_UID}", "--clear-groups"]
# Connects to the socket in argv[1] and prints the first line the server sends (stdlib only).
FIRST_LINE = ("import socket, sys; s = socket.socket(socket.AF_UNIX); s.settimeout(10); s.connect(sys.argv[1]); "
              "print(s.makefile().readline(), end='')")

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="planting another user's files and switching uid need root")


def env_for(tmp_path: Path, **values: str) -> dict[str, str]:
    return {"NANOCLAW_ROOT": str(tmp_path / "install"), "HOME": str(tmp_path / "home"), **values}


@pytest.fixture
def logged():
    messages: list[str] = []
    sink = logger.add(lambda m: messages.append(m.record["message"]), level="INFO")
    yield messages
    logger.remove(sink)


@pytest.fixture
def shared_dir():
    """A folder under /tmp that uid 1000 may enter (pytest's own tmp folders are root's alone)."""
    path = Path(tempfile.mkdtemp(prefix="nanoclaw-test-"))
    path.chmod(0o711)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def open_to_everyone(channel: ChannelInThread, up_to: Path) -> None:
    """What a careless admin might do: make the socket reachable by any user (the folders and the file)."""
    folder = channel.path.parent
    while folder != up_to.parent:
        folder.chmod(0o711)
        folder = folder.parent
    channel.path.chmod(0o666)


# --- where it lives ------------------------------------------------------------------


def test_the_socket_is_outside_the_install_root(tmp_path):
    settings = load_settings(env_for(tmp_path))
    assert not settings.local_chat_socket.is_relative_to(settings.root)
    assert settings.local_chat_socket.name == "local-chat.sock"


def test_two_installs_on_one_machine_get_different_sockets(tmp_path):
    one = load_settings(env_for(tmp_path / "a"))
    two = load_settings(env_for(tmp_path / "b"))
    assert one.local_chat_socket != two.local_chat_socket
    assert one.local_chat_socket == load_settings(env_for(tmp_path / "a")).local_chat_socket


def test_the_socket_is_in_the_users_runtime_dir_when_there_is_one(tmp_path):
    runtime = tmp_path / "run"
    runtime.mkdir()
    socket_path = load_settings(env_for(tmp_path, XDG_RUNTIME_DIR=str(runtime))).local_chat_socket
    assert socket_path.parent.parent == runtime / "nanoclaw"


def test_without_a_runtime_dir_the_socket_is_in_a_private_folder_of_tmp(tmp_path):
    if Path(f"/run/user/{os.geteuid()}").is_dir():
        pytest.skip("this machine has /run/user/<uid>, which comes before /tmp")
    socket_path = load_settings(env_for(tmp_path)).local_chat_socket
    assert socket_path.parent.parent == Path(f"/tmp/nanoclaw-{os.geteuid()}")


@pytest.mark.parametrize("value,problem", [
    ("relative/chat.sock", "not an absolute path"),
    ("/run/folder/", "not an absolute path"),
    ("INSTALL/data/chat.sock", "inside the install root"),
    ("INSTALL/../install/x.sock", "inside the install root"),
    ("/tmp/" + "x" * 120 + ".sock", "over the 107 a Unix socket path may have"),
])
def test_a_bad_LOCAL_CHAT_SOCKET_is_one_clear_error(tmp_path, value, problem):
    (tmp_path / "install").mkdir()
    with pytest.raises(ConfigError) as caught:
        load_settings(env_for(tmp_path, LOCAL_CHAT_SOCKET=value.replace("INSTALL", str(tmp_path / "install"))))
    assert caught.value.key == "LOCAL_CHAT_SOCKET" and problem in str(caught.value)


def test_LOCAL_CHAT_SOCKET_through_a_link_into_the_install_is_refused(tmp_path):
    (tmp_path / "install").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "install")
    with pytest.raises(ConfigError, match="inside the install root"):
        load_settings(env_for(tmp_path, LOCAL_CHAT_SOCKET=str(tmp_path / "link" / "chat.sock")))


def test_a_runtime_dir_too_deep_for_a_socket_path_is_a_clear_error(tmp_path):
    deep = tmp_path / ("d" * 90)
    deep.mkdir()
    with pytest.raises(ConfigError, match="set LOCAL_CHAT_SOCKET to a shorter path"):
        load_settings(env_for(tmp_path, XDG_RUNTIME_DIR=str(deep)))


# --- its folder --------------------------------------------------------------------------


def channel_at(tmp_path: Path, socket_path: Path) -> ChannelInThread:
    settings = load_settings(env_for(tmp_path, LOCAL_CHAT_SOCKET=str(socket_path)))
    return ChannelInThread(settings)


def test_the_folders_made_for_the_socket_are_private_and_the_socket_is_owner_only(tmp_path):
    channel = channel_at(tmp_path, tmp_path / "run" / "nanoclaw" / "chat.sock")
    try:
        modes = [oct(p.stat().st_mode & 0o777) for p in (tmp_path / "run", tmp_path / "run" / "nanoclaw")]
        assert modes == ["0o700", "0o700"]
        assert oct(channel.path.stat().st_mode & 0o777) == "0o600"
    finally:
        channel.close()
    assert not (tmp_path / "run" / "nanoclaw").exists()  # its own folder goes when it stops


def test_a_link_planted_where_the_socket_folder_goes_is_refused(tmp_path):
    (tmp_path / "elsewhere").mkdir(mode=0o700)
    (tmp_path / "run").symlink_to(tmp_path / "elsewhere")
    with pytest.raises(LocalChatError, match="is a symbolic link"):
        channel_at(tmp_path, tmp_path / "run" / "chat.sock")
    assert list((tmp_path / "elsewhere").iterdir()) == []


@needs_root
def test_a_socket_folder_of_another_user_is_refused(tmp_path):
    (tmp_path / "run").mkdir(mode=0o700)
    os.chown(tmp_path / "run", OTHER_UID, OTHER_UID)
    with pytest.raises(LocalChatError, match=f"belongs to uid {OTHER_UID}"):
        channel_at(tmp_path, tmp_path / "run" / "chat.sock")


def test_a_socket_folder_open_to_others_is_refused_with_the_chmod_to_run(tmp_path):
    (tmp_path / "run").mkdir()
    (tmp_path / "run").chmod(0o755)
    with pytest.raises(LocalChatError, match="open to other users .*chmod 700"):
        channel_at(tmp_path, tmp_path / "run" / "chat.sock")


def test_a_folder_above_that_anyone_may_write_is_refused_unless_it_is_sticky_like_tmp(tmp_path):
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)
    with pytest.raises(LocalChatError, match="writable by other users"):
        channel_at(tmp_path, shared / "mine" / "chat.sock")
    shared.chmod(0o1777)
    channel_at(tmp_path, shared / "mine" / "chat.sock").close()


@needs_root
def test_a_folder_planted_in_tmp_by_another_user_is_refused(tmp_path, shared_dir):
    planted = shared_dir / "nanoclaw-0"
    planted.mkdir(mode=0o700)
    os.chown(planted, OTHER_UID, OTHER_UID)
    with pytest.raises(LocalChatError, match=f"belongs to uid {OTHER_UID}"):
        channel_at(tmp_path, planted / "abc" / "chat.sock")


# --- who may talk ---------------------------------------------------------------------------


@needs_root
def test_a_peer_with_another_uid_is_refused_with_one_line_and_the_refusal_is_logged(tmp_path, shared_dir, logged):
    channel = channel_at(tmp_path, shared_dir / "chat" / "chat.sock")
    try:
        open_to_everyone(channel, shared_dir)
        result = subprocess.run([*AS_OTHER_USER, "/usr/bin/python3", "-c", FIRST_LINE, str(channel.path)],
                                capture_output=True, text=True, timeout=30)
        assert result.returncode == 0, result.stderr
        assert '"op":"error"' in result.stdout and f"uid {OTHER_UID} may not use this chat" in result.stdout
        assert any(f"refused a connection from uid {OTHER_UID}" in m for m in logged)
        assert channel.received == []
        own = LocalChatClient(channel.path, "local:me")  # the service's own user still gets in
        own.close()
    finally:
        channel.close()


@needs_root
def test_a_root_peer_in_another_pid_namespace_is_refused(tmp_path, logged):
    channel = channel_at(tmp_path, tmp_path / "run" / "chat.sock")
    try:
        result = subprocess.run(["unshare", "--pid", "--fork", sys.executable, "-c", FIRST_LINE, str(channel.path)],
                                capture_output=True, text=True, timeout=30)
        assert result.returncode == 0, result.stderr
        assert "another pid namespace (a container)" in result.stdout
        assert any("refused a connection from uid 0" in m for m in logged)
    finally:
        channel.close()


@needs_root
def test_the_chat_client_refuses_a_socket_served_by_another_user(shared_dir):
    """A router planted by uid 1000 where ours would be never gets the message."""
    path = shared_dir / "planted.sock"
    serve = ("import socket, sys, time; s = socket.socket(socket.AF_UNIX); s.bind(sys.argv[1]); s.listen(); "
             "print('up', flush=True); c, _ = s.accept(); print(c.recv(65536).decode() or '-', flush=True)")
    shared_dir.chmod(0o777)
    planted = subprocess.Popen([*AS_OTHER_USER, "/usr/bin/python3", "-c", serve, str(path)],
                               stdout=subprocess.PIPE, text=True)
    try:
        assert planted.stdout.readline() == "up\n"
        with pytest.raises(ChatClientError, match=f"served by uid {OTHER_UID}, neither you nor root"):
            LocalChatClient(path, "local:me")
        assert planted.stdout.readline() == "-\n"  # the connection closed with nothing sent
    finally:
        planted.kill()
        planted.wait()


def test_a_raw_peer_of_our_own_user_is_greeted_with_the_message_limit(tmp_path):
    channel = channel_at(tmp_path, tmp_path / "run" / "chat.sock")
    try:
        peer = RawPeer(channel.path)
        assert peer.line() == {"op": "hello", "max_message_bytes": channel.channel.max_message_bytes}
        peer.close()
    finally:
        channel.close()
