"""The local chat: a real channel for a person at a terminal of this machine.

The router listens on a Unix socket under `data/` that only its owner may
open; `nanoclaw chat` talks to it with JSON lines. JIDs are `local:<name>`.
Like a chat platform's servers, the channel keeps every conversation in a
transcript (`data/local/<name>.jsonl`): a reply is delivered once it is
written there, whether or not a terminal is attached, and a reply whose
outbound id is already in the transcript is not written twice.
"""

from __future__ import annotations

import asyncio
import os
import re
import socket
from pathlib import Path

import msgspec
from loguru import logger

from events.timefmt import iso_now
from router.channels import registry
from router.channels.base import Channel, ChannelContext, InboundMessage

PREFIX = "local:"
NAME_RE = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
SOCKET_NAME = "local-chat.sock"
HISTORY_LINES = 20
MAX_LINE_BYTES = 1 << 20


_encoder = msgspec.json.Encoder()


def _line(message: dict) -> bytes:
    return _encoder.encode(message) + b"\n"


class LocalChatError(Exception):
    """The local chat cannot start (another router holds the socket)."""


def socket_path(data_dir: Path) -> Path:
    return data_dir / SOCKET_NAME


def jid_name(jid: str) -> str | None:
    """`me` for `local:me`; None for anything that is not a valid local JID."""
    if not jid.startswith(PREFIX):
        return None
    name = jid[len(PREFIX):]
    return name if NAME_RE.match(name) else None


class Transcript:
    """One local chat's history file, appended to and read back."""

    def __init__(self, directory: Path, name: str):
        self.path = directory / f"{name}.jsonl"
        self._delivered: set[str] | None = None
        self._handle = None
        directory.mkdir(parents=True, exist_ok=True)

    def delivered(self) -> set[str]:
        if self._delivered is None:
            self._delivered = {e["id"] for e in self.read() if e.get("kind") == "reply" and "id" in e}
        return self._delivered

    def append(self, entry: dict, *, durable: bool) -> None:
        """Add a line; `durable` (replies: the proof of delivery) waits for the disk."""
        if self._handle is None:
            self._handle = open(self.path, "a", encoding="utf-8")
        self._handle.write(_line(entry).decode())
        self._handle.flush()
        if durable:
            os.fsync(self._handle.fileno())
        if entry.get("kind") == "reply":
            self.delivered().add(entry["id"])

    def close(self) -> None:
        if self._handle is not None:
            self._handle.close()
            self._handle = None

    def read(self, last: int | None = None) -> list[dict]:
        try:
            lines = self.path.read_text(encoding="utf-8").splitlines()
        except FileNotFoundError:
            return []
        entries = []
        for line in lines[-last:] if last else lines:
            try:
                entries.append(msgspec.json.decode(line))
            except msgspec.DecodeError:
                continue  # a line cut by a crash mid-write
        return entries


class LocalChannel(Channel):
    """Serves `nanoclaw chat` clients over a Unix socket."""

    name = "local"

    def __init__(self, ctx: ChannelContext):
        self.ctx = ctx
        self.path = socket_path(ctx.settings.data_dir)
        self.transcripts_dir = ctx.settings.data_dir / "local"
        self._server: asyncio.AbstractServer | None = None
        self._subscribers: dict[str, set[asyncio.StreamWriter]] = {}
        self._transcripts: dict[str, Transcript] = {}

    def transcript(self, jid: str) -> Transcript:
        name = jid_name(jid)
        if name is None:
            raise ValueError(f"not a local JID: {jid!r}")
        if jid not in self._transcripts:
            self._transcripts[jid] = Transcript(self.transcripts_dir, name)
        return self._transcripts[jid]

    async def connect(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._claim_socket_path()
        old_umask = os.umask(0o177)
        try:
            self._server = await asyncio.start_unix_server(self._serve, path=str(self.path), limit=MAX_LINE_BYTES)
        finally:
            os.umask(old_umask)
        os.chmod(self.path, 0o600)
        logger.info("local chat listening on {}", self.path)

    def _claim_socket_path(self) -> None:
        """Remove a socket left by a crashed router; refuse one a live router serves."""
        if not self.path.exists():
            return
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            probe.connect(str(self.path))
        except OSError:
            self.path.unlink(missing_ok=True)
            return
        finally:
            probe.close()
        raise LocalChatError(f"another router is already serving {self.path}; stop it first")

    async def disconnect(self) -> None:
        if self._server is not None:
            self._server.close()
            for writers in self._subscribers.values():
                for writer in writers:
                    writer.close()
            await self._server.wait_closed()
            self._server = None
        for transcript in self._transcripts.values():
            transcript.close()
        self.path.unlink(missing_ok=True)

    def is_connected(self) -> bool:
        return self._server is not None

    def owns_jid(self, jid: str) -> bool:
        return jid.startswith(PREFIX)

    async def send(self, jid: str, text: str, *, outbound_id: str) -> None:
        transcript = self.transcript(jid)
        if outbound_id in transcript.delivered():
            logger.info("local chat {}: reply {} was already delivered; not writing it twice", jid, outbound_id)
            return
        entry = {"kind": "reply", "id": outbound_id, "at": iso_now(), "text": text}
        transcript.append(entry, durable=True)
        await self._push(jid, {"op": "reply", "jid": jid, **entry})

    async def set_typing(self, jid: str, on: bool) -> None:
        await self._push(jid, {"op": "typing", "jid": jid, "on": on})

    async def _push(self, jid: str, message: dict) -> None:
        data = _line(message)
        for writer in list(self._subscribers.get(jid, ())):
            try:
                writer.write(data)
                await writer.drain()
            except (ConnectionError, RuntimeError):
                self._subscribers[jid].discard(writer)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        attached: set[str] = set()
        try:
            while line := await reader.readline():
                reply = await self._handle(line, writer, attached)
                if reply is not None:
                    writer.write(_line(reply))
                    await writer.drain()
        except (ConnectionError, asyncio.LimitOverrunError, ValueError) as exc:
            logger.debug("local chat client went away: {}", exc)
        finally:
            for jid in attached:
                self._subscribers.get(jid, set()).discard(writer)
            writer.close()

    async def _handle(self, line: bytes, writer: asyncio.StreamWriter, attached: set[str]) -> dict | None:
        try:
            request = msgspec.json.decode(line)
            op, jid = request["op"], request["jid"]
        except (msgspec.DecodeError, KeyError, TypeError):
            return {"op": "error", "message": "each line must be a JSON object with 'op' and 'jid'"}
        if jid_name(jid) is None:
            return {"op": "error", "message": f"{jid!r} is not a local chat id (local:<name>)"}
        if jid not in self.ctx.registered_groups() and jid not in self.ctx.registered_groups(fresh=True):
            return {"op": "error", "jid": jid, "message": (
                f"{jid} is not a registered group; register it with "
                f"'nanoclaw groups add {jid} --name NAME --folder FOLDER'")}
        if op == "attach":
            self._subscribers.setdefault(jid, set()).add(writer)
            attached.add(jid)
            return {"op": "attached", "jid": jid, "history": self.transcript(jid).read(last=HISTORY_LINES)}
        if op == "send":
            return await self._receive(jid, request)
        return {"op": "error", "jid": jid, "message": f"unknown op {op!r}"}

    async def _receive(self, jid: str, request: dict) -> dict:
        text = str(request.get("text") or "")
        message_id = str(request.get("id") or "")
        if not text.strip() or not message_id:
            return {"op": "error", "jid": jid, "message": "a message needs an 'id' and some 'text'"}
        sender = str(request.get("sender") or os.environ.get("USER") or "me")
        now = iso_now()
        await self.ctx.on_chat_metadata(jid, now, jid_name(jid), self.name, False)
        message = InboundMessage(chat_jid=jid, message_id=message_id, sender=f"local:{sender}",
                                 sender_name=sender, content=text, timestamp=now)
        seq = await self.ctx.on_message(self.name, message)
        if seq is not None:
            self.transcript(jid).append({"kind": "message", "id": message_id, "at": now, "from": sender, "text": text},
                                          durable=False)
        return {"op": "ack", "jid": jid, "id": message_id, "seq": seq}


def _factory(ctx: ChannelContext) -> Channel | None:
    return LocalChannel(ctx)


registry.register("local", _factory, jid_prefix=PREFIX)
