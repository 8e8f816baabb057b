"""The local chat: a real channel for a person at a terminal of this machine.

The router listens on a Unix socket in a private folder outside the install
(`Settings.local_chat_socket`) and serves only its own user and root;
`nanoclaw chat` talks to it with JSON lines. JIDs are `local:<name>`.
Like a chat platform's servers, the channel keeps every conversation in a
transcript (`data/local/<name>.jsonl`): a reply is delivered once it is
written there, whether or not a terminal is attached, and a reply whose
outbound id is already in the transcript is not written twice.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import socket
from pathlib import Path

import msgspec
from loguru import logger

from base.config import Settings
from base.timefmt import iso_now
from events.types import OutboundFile
from router.channels import registry
from router.channels.base import Channel, ChannelContext, InboundMessage, describe_size
from router.channels.local_socket import SocketPlaceError, client_refusal, peer_of, prepare_folder

PREFIX = "local:"
NAME_RE = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
HISTORY_LINES = 20
FILES_DIR = "files"  # beside the transcripts: files the assistant sent, one folder per reply
MAX_MESSAGE_BYTES = 256 * 1024  # one request line (JSON); also bounds each connection's read buffer
MAX_CONNECTIONS = 64  # open at once; more are refused with a message
HANDSHAKE_TIMEOUT_S = 5.0  # for a connection's first complete request; after it, no idle limit
PUSH_TIMEOUT_S = 10.0  # a terminal that reads none of its pushes this long is disconnected
REFUSAL_WRITE_TIMEOUT_S = 1.0


_encoder = msgspec.json.Encoder()


def _line(message: dict) -> bytes:
    return _encoder.encode(message) + b"\n"


class LocalChatError(Exception):
    """The local chat cannot start (another router holds the socket)."""


def socket_path(settings: Settings) -> Path:
    """Where the router listens and `nanoclaw chat` connects (one place decides: the settings)."""
    return settings.local_chat_socket


class Oversize(msgspec.Struct, frozen=True):
    """A request line longer than the limit: `size` bytes, or more when `at_least` (not read to its end)."""

    size: int
    at_least: bool = False


async def read_request(reader: asyncio.StreamReader, *, skip_oversize: bool = True) -> bytes | Oversize | None:
    """The next request line; None at the end; an `Oversize` for one over the reader's limit,
    skipped to its end when `skip_oversize` (else the connection is to be closed)."""
    try:
        return await reader.readuntil(b"\n")
    except asyncio.IncompleteReadError as exc:
        return exc.partial or None  # a last line without its newline still counts
    except asyncio.LimitOverrunError as exc:
        if not skip_oversize:
            return Oversize(exc.consumed, at_least=True)
        return await _skip_line(reader, exc.consumed)


async def _skip_line(reader: asyncio.StreamReader, consumed: int) -> Oversize:
    """Drop the rest of an oversize line, however long, without holding it in memory."""
    skipped = 0
    while True:
        await reader.readexactly(consumed)
        skipped += consumed
        try:
            return Oversize(skipped + len(await reader.readuntil(b"\n")))
        except asyncio.IncompleteReadError as exc:
            return Oversize(skipped + len(exc.partial))
        except asyncio.LimitOverrunError as exc:
            consumed = exc.consumed


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
    """Serves `nanoclaw chat` clients over a Unix socket.

    A connection is refused (one error line, then closed) when its peer is
    not this service's user or root in our pid namespace, or when
    `max_connections` are open. It gets a `hello` line naming the message
    limit, must send its first request within `handshake_timeout_s`, and a
    request over `max_message_bytes` is answered with an error saying so. A
    terminal that reads none of its pushes for `push_timeout_s` is dropped
    so it cannot hold up delivery to the others.
    """

    name = "local"

    def __init__(self, ctx: ChannelContext, *, handshake_timeout_s: float = HANDSHAKE_TIMEOUT_S,
                 max_connections: int = MAX_CONNECTIONS, max_message_bytes: int = MAX_MESSAGE_BYTES,
                 push_timeout_s: float = PUSH_TIMEOUT_S):
        self.ctx = ctx
        self.path = socket_path(ctx.settings)
        self.transcripts_dir = ctx.settings.data_dir / "local"
        self.handshake_timeout_s = handshake_timeout_s
        self.max_connections = max_connections
        self.max_message_bytes = max_message_bytes
        self.push_timeout_s = push_timeout_s
        self._server: asyncio.AbstractServer | None = None
        self._made_folder = False
        self._open = 0
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
        try:
            made = prepare_folder(self.path.parent)
        except (SocketPlaceError, OSError) as exc:
            raise LocalChatError(f"cannot use {self.path.parent} for the local chat socket: {exc}") from exc
        self._made_folder = self.path.parent in made
        self._claim_socket_path()
        old_umask = os.umask(0o177)
        try:
            self._server = await asyncio.start_unix_server(self._serve, path=str(self.path),
                                                           limit=self.max_message_bytes)
        finally:
            os.umask(old_umask)
        os.chmod(self.path, 0o600)
        logger.info("local chat listening on {}", self.path)

    def _claim_socket_path(self) -> None:
        """Remove a socket left by a crashed router; refuse one a live router serves."""
        if not os.path.lexists(self.path):
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
        if self._server is None:
            return  # never listened: the socket there, if any, is another router's
        self._server.close()
        for writers in self._subscribers.values():
            for writer in writers:
                writer.close()
        await self._server.wait_closed()
        self._server = None
        for transcript in self._transcripts.values():
            transcript.close()
        self.path.unlink(missing_ok=True)
        if self._made_folder:
            try:
                self.path.parent.rmdir()
            except OSError:
                pass  # not empty or already gone: harmless either way

    def is_connected(self) -> bool:
        return self._server is not None

    def owns_jid(self, jid: str) -> bool:
        return jid.startswith(PREFIX)

    async def send(self, jid: str, text: str, *, outbound_id: str, thread_id: str | None = None) -> None:
        transcript = self.transcript(jid)
        if outbound_id in transcript.delivered():
            logger.info("local chat {}: reply {} was already delivered; not writing it twice", jid, outbound_id)
            return
        entry = {"kind": "reply", "id": outbound_id, "at": iso_now(), "text": text}
        transcript.append(entry, durable=True)
        await self._push(jid, {"op": "reply", "jid": jid, **entry})

    async def send_file(self, jid: str, file: OutboundFile, path: Path, caption: str, *, outbound_id: str,
                        thread_id: str | None = None) -> None:
        """The person is on this machine: the file is kept beside the transcript and the reply names it."""
        transcript = self.transcript(jid)
        if outbound_id in transcript.delivered():
            logger.info("local chat {}: file {} was already delivered; not writing it twice", jid, outbound_id)
            return
        kept = transcript.path.parent / FILES_DIR / outbound_id / file.name
        kept.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, kept)
        note = f"[file {file.name}, {describe_size(file.size)}, {file.media_type}: {kept}]"
        entry = {"kind": "reply", "id": outbound_id, "at": iso_now(), "text": f"{caption}\n{note}" if caption else note,
                 "file": {"name": file.name, "path": str(kept), "size": file.size, "media_type": file.media_type}}
        transcript.append(entry, durable=True)
        await self._push(jid, {"op": "reply", "jid": jid, **entry})

    async def set_typing(self, jid: str, on: bool) -> None:
        await self._push(jid, {"op": "typing", "jid": jid, "on": on})

    async def _push(self, jid: str, message: dict) -> None:
        data = _line(message)
        for writer in list(self._subscribers.get(jid, ())):
            try:
                writer.write(data)
                await asyncio.wait_for(writer.drain(), self.push_timeout_s)
            except TimeoutError:
                logger.warning("local chat {}: a terminal read nothing for {:g} s; disconnected it (what it "
                               "missed is in the transcript, shown when it attaches again)", jid, self.push_timeout_s)
                self._subscribers[jid].discard(writer)
                writer.close()
            except (ConnectionError, RuntimeError):
                self._subscribers[jid].discard(writer)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        refusal = self._admission(writer)
        if refusal is not None:
            await self._refuse(writer, refusal)
            return
        self._open += 1
        attached: set[str] = set()
        try:
            writer.write(_line({"op": "hello", "max_message_bytes": self.max_message_bytes}))
            await self._converse(reader, writer, attached)
        except (ConnectionError, ValueError) as exc:
            logger.debug("local chat client went away: {}", exc)
        finally:
            self._open -= 1
            for jid in attached:
                self._subscribers.get(jid, set()).discard(writer)
            writer.close()

    def _admission(self, writer: asyncio.StreamWriter) -> str | None:
        """Why this new connection is refused (logged), or None to serve it."""
        peer = peer_of(writer.get_extra_info("socket"))
        if (why := client_refusal(peer)) is not None:
            logger.warning("local chat: refused a connection from uid {} (pid {}): {}", peer.uid, peer.pid, why)
            return why
        if self._open >= self.max_connections:
            logger.warning("local chat: refused a connection from pid {}: {} connections are open, the most "
                           "it serves", peer.pid, self._open)
            return (f"the local chat already has {self._open} connections open, the most it serves; "
                    "close one and try again")
        return None

    async def _refuse(self, writer: asyncio.StreamWriter, reason: str) -> None:
        writer.write(_line({"op": "error", "message": reason}))
        try:
            await asyncio.wait_for(writer.drain(), REFUSAL_WRITE_TIMEOUT_S)
        except (TimeoutError, ConnectionError):
            pass
        writer.close()

    async def _converse(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, attached: set[str]) -> None:
        """Answer requests until the client leaves.

        The first must come within the handshake timeout and fit the limit:
        a connection that has sent nothing valid yet is not worth reading on.
        """
        try:
            request = await asyncio.wait_for(read_request(reader, skip_oversize=False), self.handshake_timeout_s)
        except TimeoutError:
            logger.info("local chat: closed a connection that sent no request within {:g} s",
                        self.handshake_timeout_s)
            writer.write(_line({"op": "error", "message": (
                f"no request within {self.handshake_timeout_s:g} s of connecting; closing")}))
            return
        while request is not None:
            reply = (self._oversize(request) if isinstance(request, Oversize)
                     else await self._handle(request, writer, attached))
            if reply is not None:
                writer.write(_line(reply))
                await writer.drain()
            if isinstance(request, Oversize) and request.at_least:
                return
            request = await read_request(reader)

    def _oversize(self, request: Oversize) -> dict:
        logger.warning("local chat: refused a message of {:,} bytes (the limit is {:,})", request.size,
                       self.max_message_bytes)
        size = f"over {request.size:,}" if request.at_least else f"{request.size:,}"
        return {"op": "error", "message": (
            f"message too large: {size} bytes, and the local chat takes at most "
            f"{self.max_message_bytes:,} bytes ({self.max_message_bytes // 1024} KiB) per message; "
            f"nothing was recorded{'; closing' if request.at_least else ''}")}

    async def _handle(self, line: bytes, writer: asyncio.StreamWriter, attached: set[str]) -> dict | None:
        try:
            request = msgspec.json.decode(line)
            op, jid = request["op"], request["jid"]
            if not isinstance(op, str) or not isinstance(jid, str):
                raise TypeError("op and jid must be strings")
        except (msgspec.DecodeError, KeyError, TypeError):
            return {"op": "error", "message": "each line must be a JSON object with 'op' and 'jid' (strings)"}
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
