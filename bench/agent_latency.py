"""How long a person waits for the real agent: message to the model's first request, and to the reply.

Run: .venv/bin/python bench/agent_latency.py [--samples 15]
The real Claude CLI in the `test` image, driven by a real `nanoclaw run`
(router and worker, the local chat as the user, network none, the credential
gateway in front), against the project's stand-in Messages API on 127.0.0.1
that answers at once. In one run, interleaved sample by sample:
(b) cold: a message to a group with no container;
(c) warm: a follow-up piped into a group whose container waits;
(d) the floor for (b): a plain `docker run` of the same image running the
    CLI (`claude -p`, host network, straight at the stand-in) until its
    first request arrives.
For (b) the wait is split at `AgentRunStarted` (the router and the worker)
and at the first request (container, runner, SDK and CLI start).
The ready agents of issue 14, (a), are not built yet; this is the before.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from base.config import load_settings  # noqa: E402
from base.timefmt import parse_iso  # noqa: E402
from bench.e2e import wait_reply as wait_chat_reply  # noqa: E402
from bench.jobs import IMAGE, fresh_root, pct  # noqa: E402
from events import types as t  # noqa: E402
from router.channels.local_client import LocalChatClient  # noqa: E402
from rules.groups import register_group  # noqa: E402
from rules.ipc_folder import request_close  # noqa: E402
from tests.agent_stub_api import RecordedRequest, StubAnthropicAPI  # noqa: E402
from tests.router_process import RouterProcess  # noqa: E402

CLI = "/opt/agent/lib/python3.11/site-packages/claude_agent_sdk/_bundled/claude"
KEY = "sk-ant-api03-bench-host-key"
REPLY = "the stand-in answers at once"
TIMEOUT_S = 120


class TimedStandIn(StubAnthropicAPI):
    """The stand-in, answering every conversation request with one text, noting when each arrived."""

    def __post_init__(self) -> None:
        super().__post_init__()
        self.arrivals: list[tuple[float, RecordedRequest]] = []
        self.arrived = threading.Condition()

    def record(self, request: RecordedRequest) -> None:
        super().record(request)
        with self.arrived:
            self.arrivals.append((time.time(), request))
            self.arrived.notify_all()

    def answer(self, request: RecordedRequest):
        return [{"type": "text", "text": REPLY}], "end_turn"

    def first_after(self, since: float, timeout: float = TIMEOUT_S) -> float:
        """When the first conversation request after `since` arrived (wall clock)."""
        deadline = time.monotonic() + timeout
        with self.arrived:
            while True:
                for at, request in self.arrivals:
                    if at >= since and request.path.startswith("/v1/messages") and "count_tokens" not in request.path:
                        return at
                left = deadline - time.monotonic()
                if left <= 0:
                    raise RuntimeError("the stand-in saw no model request")
                self.arrived.wait(left)


def wait_reply(client: LocalChatClient) -> float:
    return wait_chat_reply(client, clock=time.time)  # wall clock, as the stand-in and the log use


def recorded_at(log, kind: type, folder: str, after_seq: int) -> float:
    """When the first event of `kind` for the group after `after_seq` was recorded (wall clock)."""
    deadline = time.monotonic() + TIMEOUT_S
    while time.monotonic() < deadline:
        for record in log.read_since(after_seq, types=[kind], streams=[folder], limit=1):
            return parse_iso(record.at).timestamp()
        time.sleep(0.01)
    raise RuntimeError(f"{folder}: no {kind.__name__}")


def floor(api: TimedStandIn) -> float:
    """Plain `docker run` of the image running the CLI: start -> its first model request (seconds)."""
    began = time.time()
    proc = subprocess.Popen(
        ["docker", "run", "--rm", "--network", "host", "--user", "1000:1000", "--entrypoint", CLI,
         "-e", f"ANTHROPIC_BASE_URL={api.url}", "-e", f"ANTHROPIC_API_KEY={KEY}", "-e", "HOME=/tmp",
         "-e", "DISABLE_TELEMETRY=1", "-e", "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC=1", IMAGE,
         "-p", "hello from the floor"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        return api.first_after(began) - began
    finally:
        proc.wait(timeout=TIMEOUT_S)


def cold(client: LocalChatClient, api: TimedStandIn, log, folder: str) -> tuple[float, ...]:
    """(message -> AgentRunRequested, -> AgentRunStarted, -> first model request, -> reply), seconds."""
    before = log.last_seq()
    sent = time.time()
    client.send("hello, cold agent")
    reply = wait_reply(client)
    return (recorded_at(log, t.AgentRunRequested, folder, before) - sent,
            recorded_at(log, t.AgentRunStarted, folder, before) - sent, api.first_after(sent) - sent, reply - sent)


def finish(settings, log, folder: str) -> None:
    """Close a cold group's container and wait for its run's end, so no sample waits for a free slot."""
    request_close(settings, folder)
    recorded_at(log, t.AgentRunFinished, folder, 0)


def warm(client: LocalChatClient, api: TimedStandIn) -> tuple[float, float]:
    sent = time.time()
    client.send("a follow-up")
    reply = wait_reply(client)
    return api.first_after(sent) - sent, reply - sent


def line(name: str, values: list[float]) -> str:
    return f"  {name:<52} p50 {statistics.median(values) * 1e3:7.0f} ms  p90 {pct(values, .9) * 1e3:7.0f} ms"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--samples", type=int, default=15)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="nanoclaw-bench-latency-") as tmp, TimedStandIn() as api:
        settings, log = fresh_root(tmp, ANTHROPIC_BASE_URL=api.url, ANTHROPIC_API_KEY=KEY,
                                   MAX_CONCURRENT_CONTAINERS="3")
        os.environ.update(AGENT_PROVIDER="claude", IDLE_TIMEOUT="600000")  # fresh_root's defaults, overridden
        settings = load_settings()
        register_group(log, settings, jid="local:warm", name="Warm", folder="warm", is_main=True)
        for n in range(args.samples + 1):
            register_group(log, settings, jid=f"local:c{n}", name=f"C{n}", folder=f"c{n}", requires_trigger=False)
        service = RouterProcess(settings, worker=True)
        service.wait_ready(timeout=60, worker_too=True)
        try:
            floor(api)  # warm the page cache and the image's layers for both paths
            warm_client = LocalChatClient(service.socket, "local:warm")
            warm_client.send("wake up")
            wait_reply(warm_client)
            floors, requested, started, first, replied, warm_first, warm_reply = [], [], [], [], [], [], []
            for n in range(args.samples + 1):
                client = LocalChatClient(service.socket, f"local:c{n}")
                b = cold(client, api, log, f"c{n}")
                client.close()
                finish(settings, log, f"c{n}")
                d = floor(api)
                c = warm(warm_client, api)
                if n == 0:
                    continue  # the first of each is a warm-up
                requested.append(b[0])
                started.append(b[1])
                first.append(b[2])
                replied.append(b[3])
                floors.append(d)
                warm_first.append(c[0])
                warm_reply.append(c[1])
            warm_client.close()
        finally:
            service.stop(timeout=90)
            log.close()
    print(f"agent latency, the real Claude CLI in {IMAGE} against a stand-in API that answers at once, "
          f"{args.samples} interleaved samples each")
    print("(b) cold group, no container yet:")
    print(line("message -> AgentRunRequested (the router)", requested))
    print(line("message -> AgentRunStarted (+ dispatcher, huey, worker)", started))
    print(line("message -> the model's first request", first))
    print(line("message -> reply in the chat", replied))
    print("(c) follow-up piped into a warm container:")
    print(line("message -> the model's first request", warm_first))
    print(line("message -> reply in the chat", warm_reply))
    print("(d) plain docker run of the image running the CLI:")
    print(line("start -> its first model request (the floor for b)", floors))
    print(f"ratios of medians: (b) first request / (d) {statistics.median(first) / statistics.median(floors):.2f}"
          f" (issue 14 target 1.1);  (b) / (c) first request "
          f"{statistics.median(first) / statistics.median(warm_first):.1f}x")


if __name__ == "__main__":
    main()
