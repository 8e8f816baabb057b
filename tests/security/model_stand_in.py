"""A Messages API stand-in for the gateway attack tests, on 127.0.0.1 in a thread of its own.

`/v1/messages` answers at once and records what it got; `/hold` keeps the
call open without reading its body (as a slow API would); `/stall` sends the
head of a streamed answer and then nothing. Any other path is recorded too,
so a test can tell a request that reached somewhere it should not have.
"""

from __future__ import annotations

import asyncio
import threading

from aiohttp import web

HOLD_S = 120


class StandIn:
    """One stand-in server; `seen` lists every request that reached it, whole or not."""

    def __init__(self) -> None:
        self.seen: list[dict] = []
        self.held = 0
        self.port = 0
        self._loop = asyncio.new_event_loop()
        ready = threading.Event()
        threading.Thread(target=self._serve, args=(ready,), daemon=True).start()
        assert ready.wait(10)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _serve(self, ready: threading.Event) -> None:
        asyncio.set_event_loop(self._loop)
        app = web.Application(client_max_size=64 << 20)
        app.router.add_post("/hold", self._hold)
        app.router.add_post("/stall", self._stall)
        app.router.add_route("*", "/{tail:.*}", self._answer)
        runner = web.AppRunner(app, access_log=None)
        self._loop.run_until_complete(runner.setup())
        site = web.TCPSite(runner, "127.0.0.1", 0)
        self._loop.run_until_complete(site.start())
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        ready.set()
        self._loop.run_forever()

    async def _answer(self, request: web.Request) -> web.Response:
        entry = {"method": request.method, "path": request.path, "target": str(request.rel_url),
                 "headers": list(request.headers.items()), "body": b"", "whole": False}
        self.seen.append(entry)
        try:
            entry["body"] = await request.read()
            entry["whole"] = True
        except Exception:  # a body cut short: recorded as not whole
            pass
        return web.json_response({"type": "message", "model": "claude-stand-in", "content": [],
                                  "usage": {"input_tokens": 1, "output_tokens": 1}})

    async def _hold(self, request: web.Request) -> web.Response:
        self.held += 1
        await asyncio.sleep(HOLD_S)
        return web.json_response({})

    async def _stall(self, request: web.Request) -> web.StreamResponse:
        await request.read()
        response = web.StreamResponse(headers={"content-type": "text/event-stream"})
        await response.prepare(request)
        await response.write(b'event: message_start\ndata: {"type":"message_start","message":'
                             b'{"model":"claude-stand-in","usage":{"input_tokens":5}}}\n\n')
        await asyncio.sleep(HOLD_S)
        return response
