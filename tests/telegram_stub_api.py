"""A stand-in for the Telegram Bot API on 127.0.0.1, for the real python-telegram-bot client.

It speaks the wire protocol (`/bot<token>/<method>`, form or JSON bodies,
`{"ok": ..., "result": ...}` answers with Telegram's JSON shapes and error
descriptions): getMe, getUpdates as a long poll with offsets, sendMessage
(checking length and HTML entities as Telegram does), sendPhoto and
sendDocument (multipart uploads; a photo must be an image), sendChatAction
and the start-up calls. Tests play the users (`say`), make it rate-limit or refuse
formatting, and take it away and bring it back on the same port.
"""

from __future__ import annotations

import email
import email.policy
import json
import re
import socket
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

TOKEN = "123456789:AAStandInTokenForTestsOnly_0123456789"
BOT_USER = {"id": 123456789, "is_bot": True, "first_name": "Andy", "username": "andy_test_bot",
            "can_join_groups": True, "can_read_all_group_messages": False, "supports_inline_queries": False}
MAX_TEXT_UNITS = 4096
ALLOWED_TAGS = {"b", "strong", "i", "em", "u", "ins", "s", "strike", "del", "span", "tg-spoiler", "a", "code",
                "pre", "blockquote", "tg-emoji"}
_TAG_RE = re.compile(r"<(/?)([a-zA-Z][a-zA-Z0-9-]*)((?:\s+[a-zA-Z-]+(?:\s*=\s*(?:\"[^\"]*\"|'[^']*'|[^\s>\"']+))?)*)"
                     r"\s*>")
_ENTITY_RE = re.compile(r"&(lt|gt|amp|quot|#\d{1,7}|#x[0-9a-fA-F]{1,6});")
_NAMED = {"lt": "<", "gt": ">", "amp": "&", "quot": '"'}
_JSON_FIELDS = {"allowed_updates", "reply_parameters", "commands", "reply_markup", "link_preview_options"}
_INT_FIELDS = {"offset", "limit", "timeout", "message_id", "message_thread_id"}


class ApiError(Exception):
    """An answer other than ok: HTTP status, Telegram's description, optional parameters."""

    def __init__(self, status: int, description: str, parameters: dict | None = None):
        super().__init__(description)
        self.status, self.description, self.parameters = status, description, parameters


def visible_text(text: str) -> str:
    """What Telegram shows for an HTML-mode message; ApiError(400) where Telegram refuses it."""
    out: list[str] = []
    stack: list[str] = []
    i = 0
    while i < len(text):
        char = text[i]
        if char == "<":
            match = _TAG_RE.match(text, i)
            offset = len(text[:i].encode())
            name = match[2].lower() if match else ""
            if match is None or name not in ALLOWED_TAGS:
                raise _entities_error(f'Unsupported start tag "{name}" at byte offset {offset}')
            if match[1]:
                if not stack or stack[-1] != name:
                    raise _entities_error(f"Unexpected end tag at byte offset {offset}")
                stack.pop()
            else:
                if name == "a" and "href=" not in match[3]:
                    raise _entities_error(f"Can't find the URL of the link at byte offset {offset}")
                stack.append(name)
            i = match.end()
        elif char == "&" and (entity := _ENTITY_RE.match(text, i)):
            code = entity[1]
            out.append(_NAMED.get(code) or chr(int(code[2:], 16) if code[1] == "x" else int(code[1:])))
            i = entity.end()
        else:
            out.append(char)
            i += 1
    if stack:
        raise _entities_error(f'Can\'t find end tag corresponding to start tag "{stack[-1]}"')
    return "".join(out)


def _entities_error(detail: str) -> ApiError:
    return ApiError(400, f"Bad Request: can't parse entities: {detail}")


def utf16_units(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


@dataclass
class SentFile:
    """One photo or document the bot uploaded, as the stand-in accepted it."""

    chat_id: int
    kind: str  # "photo" or "document"
    filename: str
    data: bytes
    caption: str | None
    parse_mode: str | None
    message_id: int
    topic: int | None = None  # message_thread_id: the forum topic it went to


@dataclass
class Sent:
    """One message the bot sent, as the stand-in accepted it."""

    chat_id: int
    text: str  # what the client posted
    parse_mode: str | None
    shown: str  # what a user sees
    message_id: int
    at: float
    topic: int | None = None  # message_thread_id: the forum topic it went to


class TelegramStub:
    """The Bot API's side of one bot: its chats, pending updates, and what it was sent."""

    def __init__(self, token: str = TOKEN, bot: dict | None = None):
        self.token = token
        self.bot = dict(bot or BOT_USER)
        self.port = 0
        self.sent: list[Sent] = []
        self.files: list[SentFile] = []
        self.stored_files: dict[str, bytes] = {}  # what people sent, by file_id
        self.actions: list[tuple[int, str, float]] = []
        self.action_topics: list[int | None] = []  # beside `actions`: the topic each went to
        self.calls: list[tuple[str, dict, float]] = []
        self.rate_limited: list[float] = []  # when each 429 was answered
        self.refused_formatting: list[str] = []
        self.chats: dict[int, dict] = {}
        self.confirmed_offset = 0
        self._pending: list[dict] = []
        self._delivered: dict[int, dict] = {}
        self._next_update_id = 1000
        self._next_message_id: dict[int, int] = {}
        self._flood: tuple[int, int, int] = (0, 0, 0)  # (answers left, retry_after seconds, from message n)
        self._refuse_formatting = 0
        self._cond = threading.Condition()
        self._server: ThreadingHTTPServer | None = None
        self._connections: set[socket.socket] = set()
        self._closing = False

    # ----- lifetime -----------------------------------------------------------------------------
    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> "TelegramStub":
        """Listen (again, on the same port after a `stop`)."""
        self._closing = False
        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), _handler_for(self))
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        return self

    def stop(self) -> None:
        """Go away: refuse new connections and cut the open ones, as an outage does."""
        with self._cond:
            self._closing = True
            self._cond.notify_all()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        for conn in list(self._connections):
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    # ----- playing the users --------------------------------------------------------------------
    @staticmethod
    def user(user_id: int, first_name: str, last_name: str | None = None, username: str | None = None,
             is_bot: bool = False) -> dict:
        found = {"id": user_id, "is_bot": is_bot, "first_name": first_name}
        found.update({k: v for k, v in (("last_name", last_name), ("username", username)) if v})
        return found

    def private_chat(self, user: dict) -> dict:
        chat = {"id": user["id"], "type": "private", "first_name": user["first_name"]}
        chat.update({k: user[k] for k in ("last_name", "username") if k in user})
        self.chats[chat["id"]] = chat
        return chat

    def group(self, chat_id: int, title: str, kind: str = "supergroup") -> dict:
        chat = {"id": chat_id, "type": kind, "title": title}
        self.chats[chat_id] = chat
        return chat

    def say(self, chat: dict, sender: dict, text: str | None = None, *, reply_to: dict | None = None,
            entities: list[dict] | None = None, **extra: Any) -> dict:
        """A user's message arrives at Telegram; returns the message as the Bot API shapes it."""
        with self._cond:
            message = {"message_id": self._new_message_id(chat["id"]), "from": sender, "chat": chat,
                       "date": int(time.time()), **extra}
            if text is not None:
                message["text"] = text
            if entities:
                message["entities"] = entities
            if reply_to is not None:
                message["reply_to_message"] = reply_to
            self._push({"message": message})
        return message

    def _new_message_id(self, chat_id: int) -> int:
        self._next_message_id[chat_id] = self._next_message_id.get(chat_id, 0) + 1
        return self._next_message_id[chat_id]

    def _push(self, update: dict) -> None:
        self._next_update_id += 1
        update = {"update_id": self._next_update_id, **update}
        self._pending.append(update)
        self._delivered[update["update_id"]] = update
        self._cond.notify_all()

    def deliver_again(self, update_id: int) -> None:
        """Hand an update out once more, as Telegram does when its confirmation was lost."""
        with self._cond:
            self._pending.append(self._delivered[update_id])
            self._cond.notify_all()

    def last_update_id(self) -> int:
        return self._next_update_id

    # ----- misbehaving on request ---------------------------------------------------------------
    def flood_limit(self, answers: int, retry_after_s: int, after: int = 0) -> None:
        """After `after` more accepted messages, answer `answers` sendMessage calls with 429 and `retry_after`."""
        with self._cond:
            self._flood = (answers, retry_after_s, len(self.sent) + after)

    def refuse_formatting(self, answers: int) -> None:
        """Refuse the next `answers` formatted sendMessage calls with "can't parse entities"."""
        with self._cond:
            self._refuse_formatting = answers

    # ----- the API ------------------------------------------------------------------------------
    def call(self, method: str, params: dict) -> Any:
        with self._cond:
            self.calls.append((method, params, time.monotonic()))
        handler = getattr(self, f"api_{method}", None)
        if handler is None:
            raise ApiError(404, "Not Found")
        return handler(params)

    def api_getMe(self, params: dict) -> dict:
        return self.bot

    def add_file(self, data: bytes, **fields: Any) -> dict:
        """A file a person sent, as the Bot API describes it (`file_id`, `file_size`, ...); getFile finds it."""
        with self._cond:
            file_id = f"file{len(self.stored_files) + 1}"
            self.stored_files[file_id] = data
        return {"file_id": file_id, "file_unique_id": f"u{file_id}", "file_size": len(data), **fields}

    def api_getFile(self, params: dict) -> dict:
        file_id = params.get("file_id")
        if file_id not in self.stored_files:
            raise ApiError(400, "Bad Request: invalid file_id")
        return {"file_id": file_id, "file_unique_id": f"u{file_id}", "file_size": len(self.stored_files[file_id]),
                "file_path": f"documents/{file_id}"}

    def api_deleteWebhook(self, params: dict) -> bool:
        return True

    def api_setMyCommands(self, params: dict) -> bool:
        return True

    def api_getMyCommands(self, params: dict) -> list:
        return []

    def api_getUpdates(self, params: dict) -> list[dict]:
        offset, limit = params.get("offset") or 0, min(max(params.get("limit") or 100, 1), 100)
        deadline = time.monotonic() + float(params.get("timeout") or 0)
        with self._cond:
            if offset > 0:
                self._pending = [u for u in self._pending if u["update_id"] >= offset]
                self.confirmed_offset = max(self.confirmed_offset, offset)
            while not self._pending and not self._closing and (left := deadline - time.monotonic()) > 0:
                self._cond.wait(left)
            if self._closing:
                raise ConnectionAbortedError("the stand-in is going away")
            return sorted(self._pending, key=lambda u: u["update_id"])[:limit]

    def api_sendChatAction(self, params: dict) -> bool:
        chat_id = self._known_chat(params)
        with self._cond:
            self.actions.append((chat_id, params.get("action", ""), time.monotonic()))
            self.action_topics.append(params.get("message_thread_id"))
        return True

    def api_sendMessage(self, params: dict) -> dict:
        chat_id = self._known_chat(params)
        text, mode = str(params.get("text") or ""), params.get("parse_mode")
        with self._cond:
            self._check_flood()
            if mode and self._refuse_formatting > 0:
                self._refuse_formatting -= 1
                self.refused_formatting.append(text)
                raise _entities_error("Can't find end of the entity starting at byte offset 0")
        if mode not in (None, "HTML"):
            raise ApiError(400, f"Bad Request: unsupported parse_mode {mode!r} in this stand-in")
        shown = visible_text(text) if mode == "HTML" else text
        if not shown.strip():
            raise ApiError(400, "Bad Request: message text is empty")
        if utf16_units(shown) > MAX_TEXT_UNITS:
            raise ApiError(400, "Bad Request: message is too long")
        with self._cond:
            message_id = self._new_message_id(chat_id)
            self.sent.append(Sent(chat_id, text, mode, shown, message_id, time.monotonic(),
                                  params.get("message_thread_id")))
        return {"message_id": message_id, "from": self.bot, "chat": self.chats[chat_id], "date": int(time.time()),
                "text": shown}

    def api_sendPhoto(self, params: dict) -> dict:
        return self._upload("photo", params)

    def api_sendDocument(self, params: dict) -> dict:
        return self._upload("document", params)

    def _upload(self, kind: str, params: dict) -> dict:
        chat_id = self._known_chat(params)
        upload = params.get(kind)
        if not isinstance(upload, dict) or not upload.get("data"):
            raise ApiError(400, f"Bad Request: there is no {kind} in the request")
        if kind == "photo" and not upload["data"].startswith((b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"RIFF")):
            raise ApiError(400, "Bad Request: IMAGE_PROCESS_FAILED")
        if kind == "photo" and upload["data"].startswith(b"\x89PNG") and _png_too_long(upload["data"]):
            raise ApiError(400, "Bad Request: PHOTO_INVALID_DIMENSIONS")
        caption, mode = params.get("caption"), params.get("parse_mode")
        with self._cond:
            self._check_flood()
            if caption and mode and self._refuse_formatting > 0:
                self._refuse_formatting -= 1
                self.refused_formatting.append(caption)
                raise _entities_error("Can't find end of the entity starting at byte offset 0")
            message_id = self._new_message_id(chat_id)
            self.files.append(SentFile(chat_id, kind, upload["filename"], upload["data"], caption, mode, message_id,
                                       params.get("message_thread_id")))
        shown = {"file_id": f"file-{message_id}", "file_unique_id": f"u{message_id}", "file_size": len(upload["data"])}
        media = [{**shown, "width": 1, "height": 1}] if kind == "photo" else {**shown, "file_name": upload["filename"]}
        answer = {"message_id": message_id, "from": self.bot, "chat": self.chats[chat_id], "date": int(time.time()),
                  kind: media}
        if caption:
            answer["caption"] = visible_text(caption) if mode == "HTML" else caption
        return answer

    def _check_flood(self) -> None:
        answers, retry_after, start = self._flood
        if answers > 0 and len(self.sent) >= start:
            self._flood = (answers - 1, retry_after, start)
            self.rate_limited.append(time.monotonic())
            raise ApiError(429, f"Too Many Requests: retry after {retry_after}", {"retry_after": retry_after})

    def _known_chat(self, params: dict) -> int:
        try:
            chat_id = int(params.get("chat_id"))
        except (TypeError, ValueError):
            raise ApiError(400, "Bad Request: chat_id is empty") from None
        if chat_id not in self.chats:
            raise ApiError(400, "Bad Request: chat not found")
        return chat_id


def _decode_params(query: str, body: bytes, content_type: str) -> dict:
    raw: dict[str, Any] = {k: v[-1] for k, v in parse_qs(query).items()}
    if content_type.startswith("application/json") and body:
        raw.update(json.loads(body))
    elif content_type.startswith("multipart/form-data") and body:
        raw.update(_multipart(body, content_type))
    elif body:
        raw.update({k: v[-1] for k, v in parse_qs(body.decode()).items()})
    params = {}
    for key, value in raw.items():
        if key in _INT_FIELDS and isinstance(value, str):
            value = int(value)
        elif key in _JSON_FIELDS and isinstance(value, str):
            value = json.loads(value)
        params[key] = value
    return params


def _png_too_long(data: bytes) -> bool:
    """Telegram's photo rule: width + height at most 10,000 and a side at most 20 times the other."""
    width, height = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    return width + height > 10_000 or max(width, height) > 20 * max(min(width, height), 1)


def _multipart(body: bytes, content_type: str) -> dict[str, Any]:
    """The fields of a multipart/form-data body: text as str, an uploaded file as {filename, data}."""
    message = email.message_from_bytes(f"Content-Type: {content_type}\r\n\r\n".encode() + body,
                                       policy=email.policy.HTTP)
    fields: dict[str, Any] = {}
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        data = part.get_payload(decode=True) or b""
        filename = part.get_filename()
        fields[name] = {"filename": filename, "data": data} if filename else data.decode()
    return fields


def _handler_for(stub: TelegramStub):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def setup(self) -> None:
            super().setup()
            stub._connections.add(self.connection)

        def finish(self) -> None:
            stub._connections.discard(self.connection)
            try:
                super().finish()
            except OSError:
                pass

        def log_message(self, *args) -> None:
            pass

        def do_GET(self) -> None:
            self._serve()

        def do_POST(self) -> None:
            self._serve()

        def _serve(self) -> None:
            parts = urlsplit(self.path)
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            match = re.fullmatch(r"/bot([^/]+)/(\w+)", parts.path)
            download = re.fullmatch(r"/file/bot([^/]+)/documents/(\w+)", unquote(parts.path))
            if download is not None and download[1] == stub.token and download[2] in stub.stored_files:
                data = stub.stored_files[download[2]]
                self.send_response(200)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
                return
            try:
                if match is None or match[1] != stub.token:
                    raise ApiError(401 if match else 404, "Unauthorized" if match else "Not Found")
                params = _decode_params(parts.query, body, self.headers.get("Content-Type", ""))
                answer, status = {"ok": True, "result": stub.call(match[2], params)}, 200
            except ApiError as exc:
                answer = {"ok": False, "error_code": exc.status, "description": exc.description}
                if exc.parameters:
                    answer["parameters"] = exc.parameters
                status = exc.status
            except ConnectionAbortedError:
                self.close_connection = True
                return
            data = json.dumps(answer).encode()
            try:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
            except OSError:  # the client gave up on a long poll (a router that stopped)
                self.close_connection = True

    return Handler
