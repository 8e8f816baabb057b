"""What the credential gateway adds to one model call, beside a direct connection.

Run: .venv/bin/python bench/gateway.py [--calls 400] [--events 40]
A stand-in Messages API on 127.0.0.1 (aiohttp) answers every call with a
streamed answer of `--events` server-sent events. One httpx client with a
kept-alive connection calls it three ways, interleaved call by call so the
machine's noise falls on all three alike:
  direct     TCP to the stand-in (the floor),
  gateway    the run's api.sock of a real jobs.gateway.Gateway (token check,
             real key added, usage read, ModelCalled recorded),
  container  the image's forwarder (agent_runner/forwarder.py, run here on
             the host) on a loopback port in front of that socket: the path
             the CLI in a container takes.
Printed: first byte and total, p50 and p99, and the added milliseconds at
p50 against direct. Target (issue 11): under 2 ms added at p50.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "agent-container"))

import httpx  # noqa: E402
from aiohttp import web  # noqa: E402

KEY = "sk-ant-bench-real-key"


def stand_in(events: int) -> str:
    """Start the stand-in API in a thread; returns its base URL."""
    body = b"".join(
        [b'event: message_start\ndata: {"type":"message_start","message":{"model":"m","usage":'
         b'{"input_tokens":10,"output_tokens":1}}}\n\n']
        + [f'event: content_block_delta\ndata: {{"type":"content_block_delta","index":0,"delta":'
           f'{{"type":"text_delta","text":"word {i} "}}}}\n\n'.encode() for i in range(events)]
        + [b'event: message_delta\ndata: {"type":"message_delta","usage":{"output_tokens":40}}\n\n',
           b'event: message_stop\ndata: {"type":"message_stop"}\n\n'])
    ready, box = threading.Event(), {}

    async def messages(request: web.Request) -> web.StreamResponse:
        await request.read()
        response = web.StreamResponse(headers={"content-type": "text/event-stream"})
        await response.prepare(request)
        await response.write(body[:200])      # the first event at once, the rest right after
        await response.write(body[200:])
        await response.write_eof()
        return response

    def serve() -> None:
        loop = asyncio.new_event_loop()
        app = web.Application()
        app.router.add_post("/v1/messages", messages)
        runner = web.AppRunner(app, access_log=None)
        loop.run_until_complete(runner.setup())
        site = web.TCPSite(runner, "127.0.0.1", 0)
        loop.run_until_complete(site.start())
        box["port"] = site._server.sockets[0].getsockname()[1]
        ready.set()
        loop.run_forever()

    threading.Thread(target=serve, daemon=True).start()
    ready.wait(10)
    return f"http://127.0.0.1:{box['port']}"


def timed_call(client: httpx.Client, token: str) -> tuple[float, float]:
    """(first byte, total) in ms for one streamed call."""
    started = time.perf_counter()
    first = None
    with client.stream("POST", "/v1/messages", headers={"x-api-key": token},
                       content=json.dumps({"stream": True, "messages": []})) as response:
        for _ in response.iter_raw():
            if first is None:
                first = time.perf_counter()
    assert response.status_code == 200, response.status_code
    return (first - started) * 1000, (time.perf_counter() - started) * 1000


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=400)
    parser.add_argument("--events", type=int, default=40)
    args = parser.parse_args()
    url = stand_in(args.events)
    tmp = tempfile.mkdtemp(prefix="nanoclaw-bench-gateway-")
    os.environ.update(NANOCLAW_ROOT=tmp, HOME=tmp, ANTHROPIC_BASE_URL=url, ANTHROPIC_API_KEY=KEY)

    from loguru import logger

    logger.remove()  # the gateway's per-run debug lines would be timed too
    from agent_runner.forwarder import start_forwarders
    from agent_runner.protocol import GatewayAccess

    from base.config import load_settings
    from events import EventLog
    from jobs.gateway import API_SOCKET, Gateway

    settings = load_settings()
    settings.ensure_dirs()
    log = EventLog(settings.db_path)
    gateway = Gateway(settings, log.append)
    access = gateway.open_run("bench", "bench", "model-only")
    start_forwarders(GatewayAccess(access.token, str(access.directory), 39129, 39128))
    clients = {
        "direct": (httpx.Client(base_url=url, timeout=30), "direct-needs-no-token"),
        "gateway": (httpx.Client(transport=httpx.HTTPTransport(uds=str(access.directory / API_SOCKET)),
                                 base_url="http://gateway", timeout=30), access.token),
        "container": (httpx.Client(base_url="http://127.0.0.1:39129", timeout=30), access.token),
    }
    figures: dict[str, tuple[list[float], list[float]]] = {name: ([], []) for name in clients}
    for warm in range(20):
        for client, token in clients.values():
            timed_call(client, token)
    for _ in range(args.calls):
        for name, (client, token) in clients.items():
            first, total = timed_call(client, token)
            figures[name][0].append(first)
            figures[name][1].append(total)
    time.sleep(0.5)
    recorded = log.query("SELECT count(*) FROM events WHERE type = 'ModelCalled'")[0][0]
    gateway.stop()
    report(figures, args, recorded)
    return 0


def report(figures, args, recorded: int) -> None:
    print(f"gateway benchmark: {args.calls} streamed calls per path, {args.events} events each, interleaved")
    print(f"{'path':<10} {'first p50':>10} {'first p99':>10} {'total p50':>10} {'total p99':>10}  (ms)")
    for name, (first, total) in figures.items():
        print(f"{name:<10} {pct(first, .5):>10.2f} {pct(first, .99):>10.2f} {pct(total, .5):>10.2f} "
              f"{pct(total, .99):>10.2f}")
    direct_first, direct_total = (statistics.median(v) for v in figures["direct"])
    for name in ("gateway", "container"):
        first, total = (statistics.median(v) for v in figures[name])
        print(f"added by {name:<9} at p50: first byte {first - direct_first:+.2f} ms, total "
              f"{total - direct_total:+.2f} ms (target: < 2 ms)")
    print(f"ModelCalled events recorded: {recorded} (expected {2 * (args.calls + 20)})")


if __name__ == "__main__":
    sys.exit(main())
