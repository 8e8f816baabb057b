"""The dashboard: `nanoclaw run` serves its pages on 127.0.0.1, behind the login token.

Pages are rendered on the server from the event log and its projections
(the same gatherers as `nanoclaw status`), each query in a worker thread
so the router's loop never waits on one. A page stays live through
server-sent events: `/live` says "changed" whenever the log grows (any
process's append, through the log's waker), at most a few times a second,
and the page's script fetches its own HTML again and swaps it in. When the
service stops, the stream breaks and the page says "service down" over
what it last showed, until the service is back.

Nothing is fetched from the internet: the one script and the styles are
served from nanoclaw/dashboard_static/.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Callable

from aiohttp import web
from loguru import logger

from base.config import Settings
from events import EventLog
from nanoclaw import dashboard_auth as auth, dashboard_pages as pages
from nanoclaw.cli_tasks import change_task
from rules.groups import GroupError

STATIC = Path(__file__).with_name("dashboard_static")
LIVE_EVERY_S = 0.25   # changes are sent at most this often: a busy log does not flood the page
KEEPALIVE_S = 15.0
PUBLIC = ("/login", "/static/")


class Dashboard:
    def __init__(self, settings: Settings, log: EventLog):
        self.settings = settings
        self.log = log
        auth.login_token(settings)  # made now, so `nanoclaw dashboard` and the service agree
        self.runner: web.AppRunner | None = None
        self.url: str | None = None
        self._seq = log.last_seq()
        self._streams: set[asyncio.Event] = set()  # one per open page, set when the log moves
        self._stream_tasks: set[asyncio.Task] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._listening: Callable[[int], None] | None = None

    # ----- lifetime -----------------------------------------------------------------------------
    async def start(self) -> str:
        """Listen; returns the address (`http://127.0.0.1:7390`), without the token."""
        self._loop = asyncio.get_running_loop()
        app = web.Application(middlewares=[self._guard])
        app.router.add_get("/login", self._login)
        app.router.add_get("/live", self._live)
        app.router.add_post("/tasks/{task_id}/{action:pause|resume|cancel}", self._change_task)
        app.router.add_static("/static/", STATIC)
        for path, page in pages.PAGES.items():
            app.router.add_get(path, self._page(page))
        # a page closed ends its stream's handler at once, rather than at its next write
        self.runner = web.AppRunner(app, access_log=None, handler_cancellation=True, shutdown_timeout=2.0)
        await self.runner.setup()
        site = web.TCPSite(self.runner, self.settings.dashboard_bind, self.settings.dashboard_port)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]
        self.hosts = auth.allowed_hosts(self.settings.dashboard_bind, port)
        shown = f"[{self.settings.dashboard_bind}]" if ":" in self.settings.dashboard_bind \
            else self.settings.dashboard_bind
        self.url = f"http://{shown}:{port}"
        self._listening = self._on_append
        self.log.waker.add_listener(self._listening)
        logger.info("dashboard on {} (`nanoclaw dashboard` prints the login URL)", self.url)
        return self.url

    async def stop(self) -> None:
        if self._listening is not None:
            self.log.waker.remove_listener(self._listening)
        for task in list(self._stream_tasks):  # open pages: their streams end, and the page says "service down"
            task.cancel()
        if self.runner is not None:
            await self.runner.cleanup()

    def _on_append(self, seq: int) -> None:
        """From the waker's thread: note the new head and wake the streams."""
        self._seq = seq
        if self._loop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._wake_streams)

    def _wake_streams(self) -> None:
        for changed in self._streams:
            changed.set()

    @property
    def token(self) -> str:
        """Read on every request (a small file): `nanoclaw dashboard --new-token` logs everyone out at once."""
        return auth.login_token(self.settings)

    # ----- who may ask ----------------------------------------------------------------------------
    @web.middleware
    async def _guard(self, request: web.Request, handler):
        if request.host not in self.hosts:
            return web.Response(status=421, text="this dashboard answers only at its own address\n")
        if not request.path.startswith(PUBLIC):
            if not auth.same(request.cookies.get(auth.COOKIE), auth.session_value(self.token)):
                return web.Response(status=401, content_type="text/html", text=pages.refused_page())
            if request.method != "GET" and not self._csrf_ok(request, await request.post()):
                return web.Response(status=403, text="refused: this request did not come from the dashboard\n")
        response = await handler(request)
        response.headers.setdefault("Content-Security-Policy",
                                    "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'")
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        # same-origin: with no-referrer a browser sends `Origin: null` on the page's own form posts
        response.headers.setdefault("Referrer-Policy", "same-origin")
        return response

    def _csrf_ok(self, request: web.Request, form) -> bool:
        origin = request.headers.get("Origin")
        if origin is not None and origin.split("://", 1)[-1] not in self.hosts:
            return False
        return auth.same(form.get("csrf"), auth.csrf_value(self.token))

    async def _login(self, request: web.Request) -> web.StreamResponse:
        if not auth.same(request.query.get("token"), self.token):
            return web.Response(status=401, content_type="text/html", text=pages.refused_page(bad_token=True))
        response = web.HTTPSeeOther("/")
        response.set_cookie(auth.COOKIE, auth.session_value(self.token), httponly=True, samesite="Strict",
                            path="/", max_age=30 * 86400)
        raise response

    # ----- pages ----------------------------------------------------------------------------------
    def _page(self, page: pages.Page):
        async def handler(request: web.Request) -> web.Response:
            seq = self._seq  # read first: what the page shows is at least this fresh
            try:
                html = await asyncio.to_thread(page.render, self.settings, request.match_info,
                                               auth.csrf_value(self.token), "fragment" in request.query, seq)
            except pages.NotFound as exc:
                return web.Response(status=404, content_type="text/html", text=pages.not_found_page(str(exc)))
            return web.Response(content_type="text/html", text=html, headers={"X-Log-Seq": str(seq)})
        return handler

    async def _change_task(self, request: web.Request) -> web.StreamResponse:
        """Pause, resume or cancel: recorded as an event through the CLI's own checks, by `dashboard`."""
        action, task_id = request.match_info["action"], request.match_info["task_id"]

        def change() -> None:
            log = EventLog(self.settings.db_path, sync=self.settings.event_log_sync)
            try:
                change_task(log, action, task_id, by="dashboard")
            finally:
                log.close()
        try:
            await asyncio.to_thread(change)
        except GroupError as exc:
            return web.Response(status=409, content_type="text/html", text=pages.not_found_page(str(exc)))
        raise web.HTTPSeeOther("/tasks")

    async def _live(self, request: web.Request) -> web.StreamResponse:
        """`event: changed` with the log's head whenever it moves; a comment now and then keeps it open."""
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-store"})
        await response.prepare(request)
        changed = asyncio.Event()
        self._streams.add(changed)
        self._stream_tasks.add(asyncio.current_task())
        sent = -1
        try:
            while True:
                changed.clear()
                if self._seq != sent:
                    sent = self._seq
                    await response.write(f"event: changed\ndata: {sent}\n\n".encode())
                    await asyncio.sleep(LIVE_EVERY_S)
                    continue  # what moved meanwhile is sent now, not at the next change
                try:
                    await asyncio.wait_for(changed.wait(), KEEPALIVE_S)
                except asyncio.TimeoutError:
                    await response.write(b": still here\n\n")
        except ConnectionResetError:
            pass
        finally:
            self._streams.discard(changed)
            self._stream_tasks.discard(asyncio.current_task())
        return response
