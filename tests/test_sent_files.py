"""Files an agent sends: authorized like messages, checked and copied before they are queued, delivered once.

The request goes through the real actions stage over a real event log; the
file is read from a real group folder; delivery runs against the real local
channel and a channel that carries no files. The link attacks from inside a
container are in tests/security/test_sent_files_attacks.py.
"""

from __future__ import annotations

import asyncio
import os
import struct
import zlib
from pathlib import Path

import pytest

from events import consumer, types as t
from events.queries import next_queued_reply, outbound_file
from router.actions import ActionsStage
from router.channels.base import ChannelContext
from router.channels.local import LocalChannel
from router.delivery import Delivery
from rules.groups import group_dir, register_group
from rules.outbox import MAX_FILE_BYTES, media_type, outbox_dir
from tests.test_delivery import RecordingChannel, deliver_all, on_db

MAIN, FAMILY, WORK = "local:me", "local:family", "local:work"


def png(width: int = 2, height: int = 2) -> bytes:
    """A real, tiny PNG (a decoder reads it), made here so the test needs no image library."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    rows = b"".join(b"\x00" + b"\xff\x00\x00" * width for _ in range(height))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b""))


@pytest.fixture
def world(settings, log):
    for jid, name, folder, is_main in ((MAIN, "Me", "main", True), (FAMILY, "Family", "family", False),
                                       (WORK, "Work", "work", False)):
        register_group(log, settings, jid=jid, name=name, folder=folder, is_main=is_main)
        group_dir(settings, folder).mkdir(parents=True, exist_ok=True)
    shots = group_dir(settings, "family") / "browser"
    shots.mkdir()
    (shots / "shot.png").write_bytes(png())
    return log


_names = iter(range(10**6))


def ask(log, settings, folder: str, path: str, jid: str = FAMILY, caption: str = "the page") -> t.Event:
    name = f"{1700000000000 + next(_names)}-abc.json"
    seq = log.append(t.IpcReceived(folder=folder, kind="messages", file=name,
                                   payload={"type": "file", "chatJid": jid, "path": path, "caption": caption}),
                     key=f"ipc:{folder}/messages/{name}").seq
    consumer.drain(log, ActionsStage(settings))
    [effect] = [record.event for record in log.read_since(seq)]
    return effect


def test_a_file_of_the_groups_folder_is_copied_into_the_outbox_and_queued(world, settings):
    queued = ask(world, settings, "family", "/workspace/group/browser/shot.png")
    assert isinstance(queued, t.OutboundQueued) and queued.text == "the page" and queued.origin == "ipc"
    assert queued.file == t.OutboundFile(name="shot.png", path=f"outbox/{queued.outbound_id}/shot.png",
                                         size=len(png()), media_type="image/png")
    assert (settings.data_dir / queued.file.path).read_bytes() == png()
    assert outbound_file(next_queued_reply(world, FAMILY)) == queued.file


def test_what_is_sent_is_what_was_checked_whatever_the_agent_does_after(world, settings):
    queued = ask(world, settings, "family", "browser/shot.png")
    (group_dir(settings, "family") / "browser" / "shot.png").write_bytes(b"changed after the request")
    assert (settings.data_dir / queued.file.path).read_bytes() == png()


@pytest.mark.parametrize("folder, jid, allowed", [
    ("family", FAMILY, True), ("family", WORK, False), ("family", MAIN, False), ("main", FAMILY, True),
    ("stranger", FAMILY, False),
])
def test_files_go_only_where_the_group_may_send_messages(world, settings, folder, jid, allowed):
    if folder in ("main", "stranger"):
        (group_dir(settings, folder) / "browser").mkdir(parents=True, exist_ok=True)
        (group_dir(settings, folder) / "browser" / "shot.png").write_bytes(png())
    effect = ask(world, settings, folder, "browser/shot.png", jid=jid)
    assert isinstance(effect, t.OutboundQueued if allowed else t.IpcRejected), effect


def plant(settings, name: str, make) -> str:
    folder = group_dir(settings, "family")
    make(folder, folder / name)
    return name


BAD_FILES = {
    "a symbolic link": lambda d, p: p.symlink_to("/etc/hostname"),
    "a link to a folder on the way": lambda d, p: (d / "linked").symlink_to(d / "browser"),
    "a hard link": lambda d, p: os.link(d / "browser" / "shot.png", p),
    "a named pipe": lambda d, p: os.mkfifo(p),
    "a folder": lambda d, p: p.mkdir(),
    "empty": lambda d, p: p.write_bytes(b""),
    "over the cap": lambda d, p: p.write_bytes(b"x" * (MAX_FILE_BYTES + 1)),
}
WORDS = {"a symbolic link": "symbolic link", "a link to a folder on the way": "symbolic link",
         "a hard link": "2 hard links", "a named pipe": "not a regular file", "a folder": "not a regular file",
         "empty": "is empty", "over the cap": "files up to"}


@pytest.mark.parametrize("kind", BAD_FILES)
def test_anything_but_a_plain_file_of_the_folder_is_refused_with_the_reason(world, settings, kind):
    name = plant(settings, "bad", BAD_FILES[kind])
    path = "linked/shot.png" if kind == "a link to a folder on the way" else name
    refused = ask(world, settings, "family", path)
    assert isinstance(refused, t.IpcRejected) and WORDS[kind] in refused.reason, refused
    assert refused.reason.startswith("file not sent: ")
    assert not (settings.data_dir / "outbox").exists() or not any((settings.data_dir / "outbox").iterdir())


@pytest.mark.parametrize("path", ["../work/secret.txt", "/etc/passwd", "/workspace/extra/x", "browser/../../x",
                                  "", "missing.png"])
def test_paths_outside_the_folder_or_missing_are_refused(world, settings, path):
    (group_dir(settings, "work") / "secret.txt").write_text("work's")
    refused = ask(world, settings, "family", path)
    assert isinstance(refused, t.IpcRejected), refused


def test_a_long_caption_is_refused_rather_than_cut(world, settings):
    refused = ask(world, settings, "family", "browser/shot.png", caption="x" * 1025)
    assert isinstance(refused, t.IpcRejected) and "1024" in refused.reason


@pytest.mark.parametrize("content, name, expected", [
    (png(), "shot.txt", "image/png"),                 # the content decides, not the name
    (b"%PDF-1.7\n...", "page.pdf", "application/pdf"),
    (b"a,b\n1,2\n", "data.csv", "text/csv"),
    ("plain words, é".encode(), "notes", "text/plain"),
    (b"\x00\x01\x02\xff", "blob.png", "application/octet-stream"),
])
def test_the_media_type_comes_from_the_content(content, name, expected):
    assert media_type(content, name) == expected


def context(settings) -> ChannelContext:
    async def nothing(*args):
        return None
    return ChannelContext(settings, nothing, nothing, lambda fresh=False: {})


def test_the_local_chat_keeps_the_file_and_names_it_once_even_when_sent_twice(world, settings):
    queued = ask(world, settings, "family", "browser/shot.png")
    channel = LocalChannel(context(settings))
    asyncio.run(deliver_all(Delivery(world, [channel], on_db, data_dir=settings.data_dir), world))
    [entry] = [e for e in channel.transcript(FAMILY).read() if e["kind"] == "reply"]
    kept = Path(entry["file"]["path"])
    assert kept.read_bytes() == png() and kept.name == "shot.png"
    assert entry["text"].startswith("the page\n[file shot.png, ") and str(kept) in entry["text"]
    assert not outbox_dir(settings.data_dir, queued.outbound_id).exists()  # the outbox copy is released
    asyncio.run(channel.send_file(FAMILY, queued.file, kept, "the page", outbound_id=queued.outbound_id))
    assert len([e for e in channel.transcript(FAMILY).read() if e["kind"] == "reply"]) == 1


def test_a_channel_that_carries_no_files_says_so_in_the_chat(world, settings):
    register_group(world, settings, jid="test:chat", name="T", folder="tchat")
    (group_dir(settings, "tchat")).mkdir(parents=True, exist_ok=True)
    (group_dir(settings, "tchat") / "a.png").write_bytes(png())
    ask(world, settings, "tchat", "a.png", jid="test:chat", caption="")
    channel = RecordingChannel()
    asyncio.run(deliver_all(Delivery(world, [channel], on_db, data_dir=settings.data_dir), world))
    [(jid, text, _)] = channel.sent
    assert jid == "test:chat" and text == "[a.png, 142 bytes: a file this chat cannot show]".replace(
        "142", str(len(png())))


def test_a_file_whose_delivery_fails_is_recorded_failed_and_released(world, settings):
    register_group(world, settings, jid="test:chat", name="T", folder="tchat")
    (group_dir(settings, "tchat")).mkdir(parents=True, exist_ok=True)
    (group_dir(settings, "tchat") / "a.png").write_bytes(png())
    queued = ask(world, settings, "tchat", "a.png", jid="test:chat")
    channel = RecordingChannel(failures={queued.outbound_id: 3})
    asyncio.run(deliver_all(Delivery(world, [channel], on_db, data_dir=settings.data_dir, backoff_s=0.01), world))
    [row] = world.query("SELECT state, reason FROM outbound WHERE outbound_id = ?", (queued.outbound_id,))
    assert row["state"] == "failed" and "platform said no" in row["reason"]
    assert not outbox_dir(settings.data_dir, queued.outbound_id).exists()


# --- what must never stop the actions stage, or fill the disk ------------------------------------------


def test_a_name_too_long_for_the_file_system_is_refused_and_the_stage_goes_on(world, settings):
    refused = ask(world, settings, "family", "a" * 300)
    assert isinstance(refused, t.IpcRejected) and "could not be read or copied" in refused.reason
    assert isinstance(ask(world, settings, "family", "browser/shot.png"), t.OutboundQueued)  # the next one works


def test_a_full_disk_while_copying_is_a_refusal(world, settings, monkeypatch):
    import errno

    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)
    refused = ask(world, settings, "family", "browser/shot.png")
    assert isinstance(refused, t.IpcRejected) and "No space left on device" in refused.reason


def test_an_unexpected_failure_in_a_request_is_recorded_as_its_refusal_not_raised(world, settings, monkeypatch):
    from router import actions

    def broken(*args, **kwargs):
        raise RuntimeError("something nobody foresaw")

    monkeypatch.setattr(actions, "take_file", broken)
    refused = ask(world, settings, "family", "browser/shot.png")
    assert isinstance(refused, t.IpcRejected) and "something nobody foresaw" in refused.reason


def test_files_waiting_for_one_chat_are_capped(world, settings, monkeypatch):
    from rules import outbox

    monkeypatch.setattr(outbox, "MAX_QUEUED_BYTES", 2 * len(png()))
    first, second, third = (ask(world, settings, "family", "browser/shot.png") for _ in range(3))
    assert isinstance(first, t.OutboundQueued) and isinstance(second, t.OutboundQueued)
    assert isinstance(third, t.IpcRejected) and "wait to be sent already" in third.reason


def test_copies_no_queued_reply_names_are_swept_and_a_reply_no_channel_owns_is_released(world, settings):
    orphan = outbox_dir(settings.data_dir, "ipc-999")
    orphan.mkdir(parents=True)
    (orphan / "left.png").write_bytes(png())
    register_group(world, settings, jid="nowhere:1", name="N", folder="nowhere")
    group_dir(settings, "nowhere").mkdir(parents=True, exist_ok=True)
    (group_dir(settings, "nowhere") / "a.png").write_bytes(png())
    queued = ask(world, settings, "nowhere", "a.png", jid="nowhere:1")
    asyncio.run(deliver_all(Delivery(world, [RecordingChannel()], on_db, data_dir=settings.data_dir), world))
    assert not orphan.exists()
    [row] = world.query("SELECT state, reason FROM outbound WHERE outbound_id = ?", (queued.outbound_id,))
    assert row["state"] == "failed" and "no channel owns" in row["reason"]
    assert not outbox_dir(settings.data_dir, queued.outbound_id).exists()
