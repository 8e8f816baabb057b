"""An aiohttp server on 127.0.0.1 in a thread of its own: the base of the stand-ins that speak WebSockets.

The stand-in keeps its port across `go_away` and `come_back`, so a client
that reconnects finds it where it was, as after a real outage. Tests call
it from their own thread (or event loop); `_run` hands coroutines to the
server's loop and waits for them.
"""

from __future__ import annotations

import asyncio
import threading

from aiohttp import web


class StubServer:
    def __init__(self):
        self.port = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._runner: web.AppRunner | None = None
        self._sockets: set[web.WebSocketResponse] = set()

    def routes(self, app: web.Application) -> None:
        raise NotImplementedError

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self):
        ready = threading.Event()
        threading.Thread(target=self._serve, args=(ready,), daemon=True, name=type(self).__name__).start()
        if not ready.wait(10):
            raise RuntimeError(f"{type(self).__name__} did not start")
        return self

    def _serve(self, ready: threading.Event) -> None:
        self._loop = asyncio.new_event_loop()
        self._loop.run_until_complete(self._listen())
        ready.set()
        self._loop.run_forever()

    async def _listen(self) -> None:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        self.routes(app)
        self._runner = web.AppRunner(app, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", self.port, reuse_address=True)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]

    def _run(self, coro, timeout: float = 10):
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    def stop(self) -> None:
        if self._loop is None:
            return
        self.go_away()
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._loop = None

    def go_away(self) -> None:
        """The server is gone: sockets cut, nothing listening on the port."""
        async def close():
            await self._close_sockets(1001)
            if self._runner is not None:
                await self._runner.cleanup()
                self._runner = None
        self._run(close())

    def drop_sockets(self, code: int = 1001) -> None:
        """The WebSocket connections are cut with `code` (the server stays): clients open new ones."""
        self._run(self._close_sockets(code))

    async def _close_sockets(self, code: int) -> None:
        for ws in list(self._sockets):
            await ws.close(code=code)

    def come_back(self) -> None:
        """Listening again on the same port."""
        self._run(self._listen())

    def connected(self) -> bool:
        return bool(self._sockets)
