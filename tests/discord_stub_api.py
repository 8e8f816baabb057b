"""A stand-in for Discord on 127.0.0.1: the REST API over HTTP and the gateway over a WebSocket.

It speaks Discord's wire protocol (API v10) to the real discord.py: REST
answers JSON with `Content-Type: application/json` exactly (discord.py
parses nothing else), a 429 carries `retry_after` and the rate-limit
headers, and the gateway greets with HELLO, takes heartbeats, IDENTIFY and
RESUME, sends READY and GUILD_CREATE, numbers its dispatches and replays
those after a resumed session's sequence, as Discord does. Each channel and
thread keeps its history, listed by GET /channels/{id}/messages. Tests drive it
from their own thread: every public method is thread-safe.
"""

from __future__ import annotations

import itertools
import json
import threading
import time
import uuid
from dataclasses import dataclass, field
from urllib.parse import quote

from aiohttp import WSMsgType, web

from tests.stub_server import StubServer

TOKEN = "MTExMTExMTExMTExMTExMTEx.StandIn.StandInTokenStandInTokenStandIn"
BOT_ID = "900000000000000001"
APP_ID = "900000000000000002"
GUILD_ID = "910000000000000001"
BOT_NAME = "andy"
MESSAGE_CONTENT = 1 << 15
EPOCH_MS = 1420070400000  # Discord's snowflake epoch
MAX_CONTENT = 2000


def snowflake(at: float | None = None, counter=itertools.count(1)) -> str:
    """An id as Discord makes them: the time in ms since its epoch, then a counter."""
    return str(((int((time.time() if at is None else at) * 1000) - EPOCH_MS) << 22) | (next(counter) & 0x3FFFFF))


@dataclass
class Posted:
    channel: str
    content: str
    files: list[tuple[str, bytes]] = field(default_factory=list)
    reference: str | None = None

    @property
    def shown(self) -> str:
        return self.content


def user(user_id: str, name: str, *, bot: bool = False) -> dict:
    return {"id": user_id, "username": name, "global_name": None if bot else name, "discriminator": "0",
            "avatar": None, "bot": bot}


BOT_USER = user(BOT_ID, BOT_NAME, bot=True)


class DiscordStub(StubServer):
    def __init__(self, token: str = TOKEN, heartbeat_ms: int = 5000):
        super().__init__()
        self.token = token
        self.heartbeat_ms = heartbeat_ms
        self.message_content_enabled = True  # the Message Content intent switched on in the developer portal
        self.sent: list[Posted] = []
        self.typing: list[str] = []
        self.identified = 0
        self.resumed = 0
        self.rate_limited = 0
        self.attachments: dict[str, bytes] = {}
        self._lock = threading.Lock()
        self._flood: list[float] = []  # [answers, retry_after_s, after]
        self._dispatches: list[tuple[int, str, dict]] = []  # (sequence, event, data), replayed on RESUME
        self._sessions: set[str] = set()
        self._live: set[web.WebSocketResponse] = set()  # sockets past IDENTIFY or RESUME: dispatches go there
        self._channels: dict[str, dict] = {}
        self._threads: dict[str, dict] = {}
        self._dms: dict[str, dict] = {}  # channel id -> the person
        self._history: dict[str, list[dict]] = {}  # channel (or thread) id -> its messages, oldest first
        self.history_reads: list[str] = []  # channel ids whose history was asked for
        self.history_refused = False  # the bot lacks Read Message History

    def routes(self, app: web.Application) -> None:
        app.router.add_get("/gateway", self._gateway)
        app.router.add_get("/attachments/{attachment}/{name}", self._attachment)
        app.router.add_route("*", "/api/v10/{path:.*}", self._rest)

    @property
    def gateway_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/gateway"

    # ----- the server's world -------------------------------------------------------------------
    def text_channel(self, channel_id: str, name: str) -> str:
        with self._lock:
            self._channels[channel_id] = {"id": channel_id, "type": 0, "name": name, "guild_id": GUILD_ID,
                                          "position": len(self._channels), "permission_overwrites": [],
                                          "nsfw": False, "parent_id": None, "topic": None}
        return channel_id

    def thread(self, thread_id: str, parent_id: str, name: str) -> str:
        with self._lock:
            self._threads[thread_id] = {
                "id": thread_id, "type": 11, "name": name, "guild_id": GUILD_ID, "parent_id": parent_id,
                "owner_id": BOT_ID, "member_count": 2, "message_count": 0,
                "thread_metadata": {"archived": False, "auto_archive_duration": 1440, "locked": False,
                                    "archive_timestamp": "2026-01-01T00:00:00+00:00"}}
        return thread_id

    def dm(self, channel_id: str, person: dict) -> str:
        with self._lock:
            self._dms[channel_id] = person
        return channel_id

    def _guild(self) -> dict:
        return {"id": GUILD_ID, "name": "Family", "icon": None, "owner_id": "1", "unavailable": False,
                "member_count": 3, "large": False, "features": [], "emojis": [], "stickers": [],
                "roles": [{"id": GUILD_ID, "name": "@everyone", "permissions": "2248473465835073", "position": 0,
                           "color": 0, "hoist": False, "managed": False, "mentionable": False}],
                "channels": list(self._channels.values()), "threads": list(self._threads.values()),
                "members": [{"user": BOT_USER, "roles": [], "joined_at": "2026-01-01T00:00:00+00:00",
                             "deaf": False, "mute": False, "flags": 0}],
                "voice_states": [], "presences": [], "stage_instances": [], "guild_scheduled_events": [],
                "mfa_level": 0, "verification_level": 0, "explicit_content_filter": 0, "premium_tier": 0,
                "preferred_locale": "en-US", "system_channel_flags": 0, "nsfw_level": 0}

    # ----- what people do -----------------------------------------------------------------------
    def say(self, channel_id: str, author: dict, content: str, *, mentions: list[dict] | None = None,
            attachments: list[tuple[str, bytes, str]] | None = None, webhook: bool = False,
            at: float | None = None) -> dict:
        """A message appears in the channel (a thread, a DM), said now or `at` a time since the epoch; the
        MESSAGE_CREATE sent, returned for `deliver_again`."""
        data = self._message(channel_id, author, content, mentions=mentions or [], at=at)
        for name, body, content_type in attachments or []:
            attachment = snowflake()
            self.attachments[attachment] = body
            data["attachments"].append({"id": attachment, "filename": name, "size": len(body),
                                        "content_type": content_type,
                                        "url": f"{self.url}/attachments/{attachment}/{quote(name, safe='')}",
                                        "proxy_url": f"{self.url}/attachments/{attachment}/{quote(name, safe='')}"})
        if webhook:
            data["webhook_id"] = snowflake()
        self._keep(data)
        self.dispatch("MESSAGE_CREATE", data)
        return data

    def _keep(self, data: dict) -> None:
        with self._lock:
            self._history.setdefault(data["channel_id"], []).append(data)

    def deliver_again(self, data: dict) -> None:
        """The same message dispatched again (as a resumed session replays it)."""
        self.dispatch("MESSAGE_CREATE", data)

    def _message(self, channel_id: str, author: dict, content: str, *, mentions: list[dict],
                 at: float | None = None) -> dict:
        data = {"id": snowflake(at), "channel_id": channel_id, "author": author, "content": content,
                "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime(at)), "edited_timestamp": None,
                "tts": False, "mention_everyone": False, "mentions": mentions, "mention_roles": [],
                "attachments": [], "embeds": [], "pinned": False, "type": 0, "flags": 0, "components": []}
        if channel_id in self._channels or channel_id in self._threads:
            data["guild_id"] = GUILD_ID
            data["member"] = {"roles": [], "joined_at": "2026-01-01T00:00:00+00:00", "deaf": False, "mute": False,
                              "nick": None, "flags": 0}
        return data

    def dispatch(self, event: str, data: dict) -> None:
        async def send():
            with self._lock:
                sequence = len(self._dispatches) + 1
                self._dispatches.append((sequence, event, data))
            for ws in list(self._sockets):
                if ws in self._live:
                    await ws.send_str(json.dumps({"op": 0, "t": event, "s": sequence, "d": data}))
        self._run(send())

    def ready(self) -> bool:
        """A client is past IDENTIFY or RESUME: what is said now reaches it."""
        return bool(self._live)

    # ----- misbehaviour on request --------------------------------------------------------------
    def flood_limit(self, answers: int = 1, retry_after_s: float = 1.0, after: int = 0) -> None:
        """The next `answers` message posts (after `after` more go through) get 429 with `retry_after`."""
        with self._lock:
            self._flood = [answers, retry_after_s, after]

    # ----- REST ---------------------------------------------------------------------------------
    async def _rest(self, request: web.Request) -> web.StreamResponse:
        if request.headers.get("Authorization") != f"Bot {self.token}":
            return _json({"message": "401: Unauthorized", "code": 0}, 401)
        path, method = request.match_info["path"], request.method
        if method == "GET" and path == "users/@me":
            return _json(BOT_USER)
        if method == "GET" and path == "oauth2/applications/@me":
            return _json({"id": APP_ID, "name": "Andy", "description": "", "icon": None, "bot_public": True,
                          "bot_require_code_grant": False, "owner": user("1", "owner"), "verify_key": "00",
                          "flags": 1 << 19, "summary": "", "team": None})
        if method == "GET" and path in ("gateway", "gateway/bot"):
            return _json({"url": self.gateway_url, "shards": 1, "session_start_limit": {
                "total": 1000, "remaining": 999, "reset_after": 0, "max_concurrency": 1}})
        parts = path.split("/")
        if len(parts) == 3 and parts[0] == "channels" and parts[2] == "typing" and method == "POST":
            with self._lock:
                self.typing.append(parts[1])
            return web.Response(status=204)
        if len(parts) == 3 and parts[0] == "channels" and parts[2] == "messages" and method == "POST":
            return await self._post_message(parts[1], request)
        if len(parts) == 3 and parts[0] == "channels" and parts[2] == "messages" and method == "GET":
            return self._history_of(parts[1], request.query)
        if len(parts) == 2 and parts[0] == "channels" and method == "GET":
            channel = self._channels.get(parts[1]) or self._threads.get(parts[1])
            if channel is None and parts[1] in self._dms:
                channel = {"id": parts[1], "type": 1, "recipients": [self._dms[parts[1]]], "last_message_id": None}
            return _json(channel) if channel else _json({"message": "Unknown Channel", "code": 10003}, 404)
        if method == "POST" and path == "users/@me/channels":
            body = await request.json()
            person = body.get("recipient_id")
            channel = next((c for c, p in self._dms.items() if p["id"] == person), None)
            return _json({"id": channel, "type": 1, "recipients": [self._dms.get(channel)], "last_message_id": None})
        return _json({"message": f"stand-in has no {method} {path}", "code": 0}, 404)

    async def _post_message(self, channel_id: str, request: web.Request) -> web.StreamResponse:
        limited = self._limited()  # discord.py takes a 429 without `Via` for a Cloudflare ban, as Discord sends it
        if limited is not None:
            return _json({"message": "You are being rate limited.", "retry_after": limited, "global": False}, 429,
                         {"Retry-After": str(int(limited) or 1), "X-RateLimit-Limit": "5",
                          "X-RateLimit-Remaining": "0", "X-RateLimit-Reset-After": str(limited),
                          "X-RateLimit-Bucket": "stand-in-messages", "X-RateLimit-Scope": "user",
                          "Via": "1.1 google"})
        files: list[tuple[str, bytes]] = []
        if request.content_type.startswith("multipart/"):
            payload = {}
            async for part in await request.multipart():
                if part.name == "payload_json":
                    payload = json.loads(await part.text())
                else:
                    files.append((part.filename, bytes(await part.read())))
        else:
            payload = await request.json()
        content = payload.get("content") or ""
        if len(content) > MAX_CONTENT:
            return _json({"message": "Invalid Form Body", "code": 50035,
                          "errors": {"content": {"_errors": [{"code": "BASE_TYPE_MAX_LENGTH",
                                                              "message": "Must be 2000 or fewer in length."}]}}},
                         400)
        reference = (payload.get("message_reference") or {}).get("message_id")
        with self._lock:
            self.sent.append(Posted(channel_id, content, files, reference))
        posted = self._message(channel_id, BOT_USER, content, mentions=[])
        self._keep(posted)
        return _json(posted)

    def _history_of(self, channel_id: str, query) -> web.Response:
        """GET /channels/{id}/messages: newest first; `before` the newest ones before an id, `after` the oldest
        ones after it (Discord's own quirk: still listed newest first), at most `limit` (1 to 100)."""
        if channel_id not in self._channels and channel_id not in self._threads and channel_id not in self._dms:
            return _json({"message": "Unknown Channel", "code": 10003}, 404)
        with self._lock:
            self.history_reads.append(channel_id)
        if self.history_refused:
            return _json({"message": "Missing Access", "code": 50001}, 403)
        limit = min(max(int(query.get("limit", 50)), 1), 100)
        with self._lock:
            history = sorted(self._history.get(channel_id, []), key=lambda m: int(m["id"]))
        if "after" in query:
            listed = [m for m in history if int(m["id"]) > int(query["after"])][:limit]
        else:
            before = int(query["before"]) if "before" in query else None
            listed = [m for m in history if before is None or int(m["id"]) < before][-limit:]
        return _json(list(reversed(listed)))

    def _limited(self) -> float | None:
        with self._lock:
            if not self._flood or self._flood[0] <= 0:
                return None
            if self._flood[2] > 0:
                self._flood[2] -= 1
                return None
            self._flood[0] -= 1
            self.rate_limited += 1
            return self._flood[1]

    async def _attachment(self, request: web.Request) -> web.StreamResponse:
        body = self.attachments.get(request.match_info["attachment"])
        if body is None:
            return web.Response(status=404)
        return web.Response(body=body, content_type="application/octet-stream")

    # ----- the gateway --------------------------------------------------------------------------
    async def _gateway(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        self._sockets.add(ws)
        try:
            await ws.send_str(json.dumps({"op": 10, "d": {"heartbeat_interval": self.heartbeat_ms}}))
            async for message in ws:
                if message.type != WSMsgType.TEXT:
                    continue
                frame = json.loads(message.data)
                if frame["op"] == 1:
                    await ws.send_str(json.dumps({"op": 11}))
                elif frame["op"] == 2:
                    await self._identify(ws, frame["d"])
                elif frame["op"] == 6:
                    await self._resume(ws, frame["d"])
        finally:
            self._sockets.discard(ws)
            self._live.discard(ws)
        return ws

    async def _identify(self, ws: web.WebSocketResponse, data: dict) -> None:
        if data.get("token") != self.token:
            await ws.close(code=4004, message=b"Authentication failed.")
            return
        if data.get("intents", 0) & MESSAGE_CONTENT and not self.message_content_enabled:
            await ws.close(code=4014, message=b"Disallowed intent(s).")
            return
        session = uuid.uuid4().hex
        with self._lock:
            self._sessions.add(session)
            self.identified += 1
            sequence = len(self._dispatches)
        ready = {"v": 10, "user": BOT_USER, "guilds": [{"id": GUILD_ID, "unavailable": True}],
                 "session_id": session, "resume_gateway_url": self.gateway_url, "shard": [0, 1],
                 "application": {"id": APP_ID, "flags": 1 << 19}, "private_channels": [], "relationships": []}
        await ws.send_str(json.dumps({"op": 0, "t": "READY", "s": sequence, "d": ready}))
        await ws.send_str(json.dumps({"op": 0, "t": "GUILD_CREATE", "s": sequence, "d": self._guild()}))
        self._live.add(ws)

    async def _resume(self, ws: web.WebSocketResponse, data: dict) -> None:
        if data.get("token") != self.token or data.get("session_id") not in self._sessions:
            await ws.send_str(json.dumps({"op": 9, "d": False}))
            return
        with self._lock:
            self.resumed += 1
            missed = [d for d in self._dispatches if d[0] > (data.get("seq") or 0)]
        for sequence, event, payload in missed:
            await ws.send_str(json.dumps({"op": 0, "t": event, "s": sequence, "d": payload}))
        await ws.send_str(json.dumps({"op": 0, "t": "RESUMED", "s": len(self._dispatches), "d": {}}))
        self._live.add(ws)


def _json(body: dict, status: int = 200, headers: dict | None = None) -> web.Response:
    """JSON as discord.py reads it: its Content-Type exactly `application/json` (no charset)."""
    return web.Response(body=json.dumps(body).encode(), status=status,
                        headers={"Content-Type": "application/json", **(headers or {})})
