"""A stand-in for Slack on 127.0.0.1: the Web API over HTTP and Socket Mode over a WebSocket.

It speaks Slack's wire protocol to the real slack-sdk and slack-bolt: Web API
methods answer `{"ok": ...}` JSON (429 with `Retry-After` when told to limit),
`apps.connections.open` hands out a `ws://` URL, and the socket greets with
`hello`, carries `events_api` and `slash_commands` envelopes and takes acks.
An envelope not acknowledged is sent again on the next connection, with its
`retry_attempt` counted up, as Slack does, until `give_up_retries` (Slack
stops after a few minutes). Each channel keeps its history, listed by
`conversations.history` and `conversations.replies` as Slack lists it. Tests drive it from their own
thread: every public method is thread-safe.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import threading
import time
import uuid
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any
from urllib.parse import quote

from aiohttp import WSMsgType, web

from tests.stub_server import StubServer

BOT_TOKEN = "xoxb-1111-2222-StandInBotTokenStandIn"
APP_TOKEN = "xapp-1-A111-3333-StandInAppTokenStandIn"
TEAM = "T0TEAM"
BOT_USER = "U0BOT"
BOT_ID = "B0BOT"
SECTION_MAX_CHARS = 3000  # Slack refuses a section block's text longer than this (`invalid_blocks`)


@dataclass
class Posted:
    """One message the bot posted."""

    channel: str
    text: str
    blocks: list | None
    thread_ts: str | None
    ts: str

    @property
    def shown(self) -> str:
        """What a person sees: the section's mrkdwn when there are blocks, else the text."""
        if self.blocks:
            return "\n".join(b["text"]["text"] for b in self.blocks if b.get("type") == "section")
        return self.text


@dataclass
class Uploaded:
    channel: str
    name: str
    data: bytes
    comment: str | None
    thread_ts: str | None


@dataclass
class _Envelope:
    envelope_id: str
    kind: str
    payload: dict
    retry_attempt: int = 0
    acked: asyncio.Event | None = None
    response: dict | None = None


@dataclass
class _State:
    users: dict[str, dict] = field(default_factory=dict)
    channels: dict[str, dict] = field(default_factory=dict)
    history: dict[str, list[dict]] = field(default_factory=dict)  # channel -> its messages, oldest first


class SlackStub(StubServer):
    def __init__(self, bot_token: str = BOT_TOKEN, app_token: str = APP_TOKEN):
        super().__init__()
        self.bot_token = bot_token
        self.app_token = app_token
        self.state = _State()
        self.sent: list[Posted] = []
        self.uploads: list[Uploaded] = []
        self.reactions: list[tuple[str, str, str, str]] = []  # (add|remove, channel, ts, name)
        self.calls: list[str] = []
        self.listed: list[str] = []  # channels whose history was asked for
        self.connections = 0
        self.rate_limited = 0
        self._lock = threading.Lock()
        self._ts = itertools.count(1)
        self._flood: list[int] = []  # [answers, retry_after_s, after]
        self._refuse_formatting = 0
        self._refusals: dict[str, str] = {}  # Web API method -> the error it answers
        self._slow: dict[str, float] = {}  # Web API method -> seconds it takes to answer
        self._envelopes: dict[str, _Envelope] = {}
        self._pending_uploads: dict[str, dict] = {}
        self._files: dict[str, bytes] = {}
        self.user(BOT_USER, "andy", is_bot=True)

    def routes(self, app: web.Application) -> None:
        app.router.add_route("*", "/api/{method}", self._api)
        app.router.add_get("/link", self._socket)
        app.router.add_post("/upload/{file_id}", self._upload)
        app.router.add_get("/files/{file_id}/{name}", self._download)

    # ----- the workspace ------------------------------------------------------------------------
    def user(self, user_id: str, name: str, *, is_bot: bool = False, real_name: str | None = None) -> str:
        with self._lock:
            self.state.users[user_id] = {"id": user_id, "name": name.lower(), "real_name": real_name or name,
                                         "is_bot": is_bot, "profile": {"display_name": name,
                                                                       "real_name": real_name or name}}
        return user_id

    def channel(self, channel_id: str, name: str, *, kind: str = "channel", member: bool = True) -> str:
        """kind: channel (public), group (private), im (a DM with `name` the person's id), mpim."""
        with self._lock:
            self.state.channels[channel_id] = {"id": channel_id, "name": name, "kind": kind, "member": member}
        return channel_id

    def next_ts(self) -> str:
        return f"{int(time.time())}.{next(self._ts):06d}"

    # ----- what people do -----------------------------------------------------------------------
    def say(self, channel: str, user: str | None, text: str, *, thread_ts: str | None = None,
            bot_id: str | None = None, subtype: str | None = None, files: list[dict] | None = None,
            ts: str | None = None, unsent: bool = False) -> tuple[str | None, str]:
        """A message posted in a channel; returns (envelope id, message ts). `unsent`: in the history only, as
        one said while the app had no socket, once Slack stopped retrying it."""
        kind = self.state.channels[channel]["kind"]
        event: dict[str, Any] = {"type": "message", "channel": channel, "text": text, "ts": ts or self.next_ts(),
                                 "channel_type": kind, "event_ts": None, "team": TEAM}
        event["event_ts"] = event["ts"]
        if user is not None:
            event["user"] = user
        if thread_ts:
            event["thread_ts"] = thread_ts
        if bot_id:
            event["bot_id"] = bot_id
        if subtype:
            event["subtype"] = subtype
        if files:
            event["files"] = files
            event.setdefault("subtype", "file_share")
        self._keep({k: v for k, v in event.items() if k not in ("channel", "channel_type", "event_ts", "team")},
                   channel)
        if unsent:
            return None, event["ts"]
        payload = {"token": "verification", "team_id": TEAM, "api_app_id": "A0APP", "event": event,
                   "type": "event_callback", "event_id": f"Ev{uuid.uuid4().hex[:10]}", "event_time": int(time.time()),
                   "authorizations": [{"team_id": TEAM, "user_id": BOT_USER, "is_bot": True}]}
        return self._send(_Envelope(str(uuid.uuid4()), "events_api", payload)), event["ts"]

    def slash(self, channel: str, user: str, command: str = "/chatid", text: str = "") -> str:
        payload = {"token": "verification", "team_id": TEAM, "channel_id": channel,
                   "channel_name": self.state.channels[channel]["name"], "user_id": user, "command": command,
                   "text": text, "api_app_id": "A0APP", "trigger_id": "1.2.3", "response_url": f"{self.url}/respond"}
        return self._send(_Envelope(str(uuid.uuid4()), "slash_commands", payload))

    def add_file(self, name: str, data: bytes, mimetype: str, *, size: int | None = None) -> dict:
        """A file a person shared, as a message's `files` entry (downloaded with the bot token)."""
        file_id = f"F{uuid.uuid4().hex[:8].upper()}"
        with self._lock:
            self._files[file_id] = data
        return {"id": file_id, "name": name, "mimetype": mimetype, "size": len(data) if size is None else size,
                "url_private_download": f"{self.url}/files/{file_id}/{quote(name, safe='')}", "mode": "hosted"}

    def _send(self, envelope: _Envelope) -> str:
        async def send():
            envelope.acked = asyncio.Event()
            self._envelopes[envelope.envelope_id] = envelope
            for ws in list(self._sockets):
                await self._push(ws, envelope)
                break
        self._run(send())
        return envelope.envelope_id

    def _keep(self, message: dict, channel: str) -> None:
        """Into the channel's history; a reply in a thread counts on its parent, as Slack's history shows it."""
        with self._lock:
            history = self.state.history.setdefault(channel, [])
            history.append(message)
            thread = message.get("thread_ts")
            if thread and thread != message["ts"]:
                for parent in history:
                    if parent["ts"] == thread:
                        parent["reply_count"] = parent.get("reply_count", 0) + 1
                        parent["latest_reply"] = message["ts"]

    def give_up_retries(self) -> None:
        """Time passes: Slack retries an event nobody acknowledged three times over a few minutes, then drops it."""
        with self._lock:
            for envelope_id, envelope in list(self._envelopes.items()):
                if envelope.acked is None or not envelope.acked.is_set():
                    del self._envelopes[envelope_id]

    def deliver_again(self, envelope_id: str) -> None:
        """Slack sends an envelope again (as it does when it thinks the ack was lost)."""
        async def again():
            envelope = self._envelopes[envelope_id]
            envelope.retry_attempt += 1
            for ws in list(self._sockets):
                await self._push(ws, envelope)
                break
        self._run(again())

    def acked(self, envelope_id: str) -> bool:
        envelope = self._envelopes.get(envelope_id)
        return bool(envelope and envelope.acked and envelope.acked.is_set())

    def response(self, envelope_id: str) -> dict | None:
        return self._envelopes[envelope_id].response

    # ----- what the server does ------------------------------------------------------------------
    def flood_limit(self, answers: int, retry_after_s: int, after: int = 0) -> None:
        """Answer the next `answers` posts (after `after` more go through) with 429 Retry-After."""
        with self._lock:
            self._flood = [answers, retry_after_s, after]

    def refuse(self, method: str, error: str | None) -> None:
        """Answer every call of a Web API method with an error (`missing_scope` for an app without the scope);
        None answers it again."""
        with self._lock:
            if error is None:
                self._refusals.pop(method, None)
            else:
                self._refusals[method] = error

    def slow(self, method: str, seconds: float) -> None:
        """Answer a Web API method only after `seconds` (a busy Slack, or one pacing the app)."""
        with self._lock:
            self._slow[method] = seconds

    def refuse_formatting(self, answers: int) -> None:
        """Refuse the next `answers` posts that carry blocks with `invalid_blocks`."""
        with self._lock:
            self._refuse_formatting = answers

    # ----- HTTP ---------------------------------------------------------------------------------
    async def _params(self, request: web.Request) -> dict:
        params = dict(request.query)
        if request.content_type == "application/json":
            params.update(await request.json())
        elif request.can_read_body:
            params.update(dict(await request.post()))
        return params

    def _token(self, request: web.Request, params: dict) -> str:
        header = request.headers.get("Authorization", "")
        return header.removeprefix("Bearer ") if header.startswith("Bearer ") else str(params.get("token", ""))

    async def _api(self, request: web.Request) -> web.Response:
        method = request.match_info["method"]
        params = await self._params(request)
        token = self._token(request, params)
        self.calls.append(method)
        wanted = self.app_token if method == "apps.connections.open" else self.bot_token
        if token != wanted:
            return _answer({"ok": False, "error": "invalid_auth"})
        handler = getattr(self, "api_" + method.replace(".", "_"), None)
        if method in self._refusals:
            return _answer({"ok": False, "error": self._refusals[method]})
        if handler is None:
            return _answer({"ok": False, "error": "unknown_method"})
        if method in ("chat.postMessage", "files.completeUploadExternal") and (limit := self._flooded()):
            self.rate_limited += 1
            return web.json_response({"ok": False, "error": "ratelimited"}, status=429,
                                     headers={"Retry-After": str(limit)})
        answer = handler(params)
        if method in self._slow:  # the answer is as things were when the request arrived
            await asyncio.sleep(self._slow[method])
        return _answer(answer)

    def _flooded(self) -> int:
        with self._lock:
            if not self._flood or self._flood[0] <= 0:
                return 0
            if self._flood[2] > 0:
                self._flood[2] -= 1
                return 0
            self._flood[0] -= 1
            return self._flood[1]

    def api_auth_test(self, params: dict) -> dict:
        return {"ok": True, "url": "https://standin.slack.com/", "team": "Stand-in", "user": "andy", "team_id": TEAM,
                "user_id": BOT_USER, "bot_id": BOT_ID, "is_enterprise_install": False}

    def api_apps_connections_open(self, params: dict) -> dict:
        return {"ok": True, "url": f"ws://127.0.0.1:{self.port}/link?ticket={uuid.uuid4().hex}"}

    def api_users_info(self, params: dict) -> dict:
        user = self.state.users.get(str(params.get("user")))
        return {"ok": True, "user": user} if user else {"ok": False, "error": "user_not_found"}

    def api_conversations_info(self, params: dict) -> dict:
        channel = self.state.channels.get(str(params.get("channel")))
        if channel is None:
            return {"ok": False, "error": "channel_not_found"}
        kind = channel["kind"]
        info = {"id": channel["id"], "is_channel": kind == "channel", "is_group": kind == "group",
                "is_im": kind == "im", "is_mpim": kind == "mpim", "is_private": kind != "channel",
                "is_member": channel["member"]}
        info["user" if kind == "im" else "name"] = channel["name"]
        return {"ok": True, "channel": info}

    def _writable(self, channel_id: str) -> dict | None:
        channel = self.state.channels.get(channel_id)
        if channel is None:
            return {"ok": False, "error": "channel_not_found"}
        if not channel["member"]:
            return {"ok": False, "error": "not_in_channel"}
        return None

    def api_chat_postMessage(self, params: dict) -> dict:
        channel = str(params.get("channel"))
        if refused := self._writable(channel):
            return refused
        text, blocks = params.get("text") or "", params.get("blocks")
        if isinstance(blocks, str):
            blocks = json.loads(blocks)
        if not text and not blocks:
            return {"ok": False, "error": "no_text"}
        if len(text) > 40_000:
            return {"ok": False, "error": "msg_too_long"}
        if blocks:
            with self._lock:
                refuse = self._refuse_formatting > 0
                self._refuse_formatting -= int(refuse)
            if refuse or any(len(b.get("text", {}).get("text", "")) > SECTION_MAX_CHARS for b in blocks):
                return {"ok": False, "error": "invalid_blocks", "errors": ["must be less than 3001 characters"]}
        ts = self.next_ts()
        with self._lock:
            self.sent.append(Posted(channel, text, blocks, params.get("thread_ts"), ts))
        posted = {"type": "message", "user": BOT_USER, "bot_id": BOT_ID, "text": text, "ts": ts}
        if params.get("thread_ts"):
            posted["thread_ts"] = params["thread_ts"]
        self._keep(posted, channel)
        return {"ok": True, "channel": channel, "ts": ts, "message": {"text": text, "ts": ts, "bot_id": BOT_ID}}

    def api_conversations_history(self, params: dict) -> dict:
        """The channel's messages (threads' replies left out), newest first, between `oldest` and `latest`,
        a page of `limit` at a time (`cursor`)."""
        channel = str(params.get("channel"))
        if channel not in self.state.channels:
            return {"ok": False, "error": "channel_not_found"}
        with self._lock:
            self.listed.append(channel)
            listed = [m for m in _in_order(self.state.history.get(channel, []))
                      if m.get("thread_ts") in (None, m["ts"]) and _within(m, params)]
        return _page(list(reversed(listed)), params)

    def api_conversations_replies(self, params: dict) -> dict:
        """A thread: its parent, then its replies after `oldest`, oldest first, a page at a time."""
        channel, thread = str(params.get("channel")), str(params.get("ts"))
        with self._lock:
            history = _in_order(self.state.history.get(channel, []))
            parent = [m for m in history if m["ts"] == thread]
            replies = [m for m in history if m.get("thread_ts") == thread and m["ts"] != thread and _within(m, params)]
        if not parent:
            return {"ok": False, "error": "thread_not_found"}
        return _page(parent + replies, params)

    def delete(self, channel: str, ts: str) -> None:
        """A person deletes a message (and, with it, the replies of its thread)."""
        with self._lock:
            self.state.history[channel] = [m for m in self.state.history.get(channel, [])
                                           if ts not in (m["ts"], m.get("thread_ts"))]

    def api_reactions_add(self, params: dict) -> dict:
        return self._reaction("add", params)

    def api_reactions_remove(self, params: dict) -> dict:
        return self._reaction("remove", params)

    def _reaction(self, op: str, params: dict) -> dict:
        channel = str(params.get("channel"))
        if refused := self._writable(channel):
            return refused
        with self._lock:
            self.reactions.append((op, channel, str(params.get("timestamp")), str(params.get("name"))))
        return {"ok": True}

    def api_files_getUploadURLExternal(self, params: dict) -> dict:
        file_id = f"F{uuid.uuid4().hex[:8].upper()}"
        self._pending_uploads[file_id] = {"name": params.get("filename"), "length": int(params.get("length", 0))}
        return {"ok": True, "upload_url": f"{self.url}/upload/{file_id}", "file_id": file_id}

    def api_files_completeUploadExternal(self, params: dict) -> dict:
        files = json.loads(params.get("files", "[]"))
        channel = str(params.get("channel_id"))
        if refused := self._writable(channel):
            return refused
        done = []
        for entry in files:
            pending = self._pending_uploads.pop(entry["id"], None)
            if pending is None or "data" not in pending:
                return {"ok": False, "error": "file_not_found"}
            with self._lock:
                self.uploads.append(Uploaded(channel, pending["name"], pending["data"], params.get("initial_comment"),
                                             params.get("thread_ts")))
            done.append({"id": entry["id"], "name": pending["name"], "title": entry.get("title")})
        return {"ok": True, "files": done}

    async def _upload(self, request: web.Request) -> web.Response:
        pending = self._pending_uploads.get(request.match_info["file_id"])
        if pending is None:
            return web.Response(status=404, text="unknown upload")
        pending["data"] = await request.read()
        return web.Response(text=f"OK - {len(pending['data'])}")

    async def _download(self, request: web.Request) -> web.StreamResponse:
        if request.headers.get("Authorization") != f"Bearer {self.bot_token}":
            return web.Response(status=200, text="<html>sign in</html>", content_type="text/html")
        data = self._files.get(request.match_info["file_id"])
        if data is None:
            return web.Response(status=404)
        return web.Response(body=data, content_type="application/octet-stream")

    # ----- Socket Mode ---------------------------------------------------------------------------
    async def _socket(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(autoping=True)
        await ws.prepare(request)
        self._sockets.add(ws)
        self.connections += 1
        await ws.send_json({"type": "hello", "num_connections": len(self._sockets),
                            "debug_info": {"host": "applink-standin", "approximate_connection_time": 18060},
                            "connection_info": {"app_id": "A0APP"}})
        for envelope in list(self._envelopes.values()):  # what was never acknowledged comes again
            if not envelope.acked.is_set():
                envelope.retry_attempt += 1
                await self._push(ws, envelope)
        try:
            async for message in ws:
                if message.type != WSMsgType.TEXT:
                    continue
                body = json.loads(message.data)
                envelope = self._envelopes.get(body.get("envelope_id", ""))
                if envelope is not None:
                    envelope.response = body.get("payload")
                    envelope.acked.set()
        finally:
            self._sockets.discard(ws)
        return ws

    @staticmethod
    async def _push(ws: web.WebSocketResponse, envelope: _Envelope) -> None:
        body = {"envelope_id": envelope.envelope_id, "payload": envelope.payload, "type": envelope.kind,
                "accepts_response_payload": envelope.kind == "slash_commands"}
        if envelope.kind == "events_api":
            body["retry_attempt"] = envelope.retry_attempt
            body["retry_reason"] = "timeout" if envelope.retry_attempt else ""
        try:
            await ws.send_json(body)
        except ConnectionError:
            pass


def _in_order(messages: list[dict]) -> list[dict]:
    return sorted(messages, key=lambda m: Decimal(m["ts"]))


def _within(message: dict, params: dict) -> bool:
    """Whether a message lies between a listing's `oldest` and `latest` (with `inclusive`, at them too)."""
    ts, inclusive = Decimal(message["ts"]), str(params.get("inclusive", "")).lower() in ("1", "true")
    oldest, latest = Decimal(str(params.get("oldest") or "0")), params.get("latest")
    if ts < oldest or (ts == oldest and not inclusive):
        return False
    return latest is None or ts < Decimal(str(latest)) or (ts == Decimal(str(latest)) and inclusive)


def _page(messages: list[dict], params: dict) -> dict:
    """One page of a listing: `limit` messages from the offset its `cursor` names."""
    offset, limit = int(params.get("cursor") or 0), int(params.get("limit") or 100)
    rest = offset + limit < len(messages)
    return {"ok": True, "messages": [dict(m) for m in messages[offset:offset + limit]], "has_more": rest,
            "response_metadata": {"next_cursor": str(offset + limit) if rest else ""}}


def _answer(body: dict) -> web.Response:
    return web.json_response(body)
