"""How long a person waits for the real agent: message to the model's first request, and to the reply.

Run: .venv/bin/python bench/agent_latency.py [--samples 15]
The real Claude CLI in the `test` image, driven by a real `nanoclaw run`
(router and worker, the local chat as the user, network none, the credential
gateway in front), against the project's stand-in Messages API on 127.0.0.1
that answers at once. In one run, in two services, sample by sample:
first with ready agents off,
(b) cold: a message to a group with no container;
(c) warm: a follow-up piped into a group whose container waits;
(d) the floor for (b): a plain `docker run` of the same image running the
    CLI (`claude -p`, host network, straight at the stand-in) until its
    first request arrives;
then with ready agents on (READY_AGENTS=3),
(a) ready: a message to a group whose ready agent waits (given READY_SETTLE_S
    to come up, as one started at service start or after a run has minutes),
    interleaved with (c) again, which is the figure (a) is held to.
For (b) the wait is split at `AgentRunStarted` (the router and the worker)
and at the first request (container, runner, SDK and CLI start). Last, the
memory of three ready agents (their cgroups, as the worker's watch measures
them) beside READY_AGENTS_MEMORY_MB, and the service's own (router and
worker, resident set), and where a cold start's time goes, from the
runner's own log lines in a third service at LOG_LEVEL=debug.
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
from events.queries import group_by_folder  # noqa: E402
from jobs.ready_agents import container_memory_mb  # noqa: E402
from jobs.runtime import LABEL_GROUP  # noqa: E402
from router.channels.local_client import LocalChatClient  # noqa: E402
from rules.groups import register_group  # noqa: E402
from rules.ipc_folder import request_close  # noqa: E402
from rules.ready import request_ready  # noqa: E402
from tests.agent_stub_api import RecordedRequest, StubAnthropicAPI  # noqa: E402
from tests.router_process import RouterProcess  # noqa: E402

CLI = "/opt/agent/lib/python3.11/site-packages/claude_agent_sdk/_bundled/claude"
KEY = "sk-ant-api03-bench-host-key"
REPLY = "the stand-in answers at once"
TIMEOUT_S = 120
READY_SETTLE_S = 4.0
READY_AGENTS = 3
BREAKDOWN_SAMPLES = 5


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


def finish(settings, log, folder: str, after_seq: int = 0) -> None:
    """Close a group's container and wait for its run's end, so no sample waits for a free slot."""
    request_close(settings, folder)
    recorded_at(log, t.AgentRunFinished, folder, after_seq)


def start_ready(settings, log, folder: str) -> int:
    """Ask for a ready agent for the group, as the service does after a run; returns its start's seq."""
    before = log.last_seq()
    with log.transaction() as tx:
        request_ready(tx, settings, group_by_folder(tx, folder))
    recorded_at(log, t.AgentRunStarted, folder, before)
    return log.read_since(before, types=[t.AgentRunStarted], streams=[folder], limit=1)[0].seq


def ready(client: LocalChatClient, api: TimedStandIn, settings, log, folder: str) -> tuple[float, float]:
    """(message -> first model request, -> reply) for a group whose ready agent waits; then closed."""
    start_ready(settings, log, folder)
    time.sleep(READY_SETTLE_S)
    before = log.last_seq()
    sent = time.time()
    client.send("hello, ready agent")
    reply = wait_reply(client)
    first = api.first_after(sent) - sent
    finish(settings, log, folder, before)
    # it answered well, so a fresh ready agent follows it; close that one too (it is not followed)
    after_end = log.last_seq()
    recorded_at(log, t.AgentRunStarted, folder, after_end)
    finish(settings, log, folder, after_end)
    return first, reply - sent


MARKS = (("the runner is up (container start, Python, the runner's imports)", "[agent-runner] provider "),
         ("the SDK is imported and the CLI spawned", "Using bundled Claude Code CLI"),
         ("the CLI is connected (its own start-up)", "[agent-runner] the CLI is connected"))


def breakdown(settings, log, api: TimedStandIn, folders: list[str]) -> list[list[float]]:
    """Where a cold start's time goes, from the worker's debug lines: seconds between marks, per sample.

    A service of its own at LOG_LEVEL=debug (the runner then logs its
    steps), so its extra logging does not touch the other figures.
    """
    os.environ["LOG_LEVEL"] = "debug"
    try:
        service, warm_client = _service(load_settings())
    finally:
        os.environ.pop("LOG_LEVEL")
    steps: list[list[float]] = []
    try:
        for folder in folders:
            client = LocalChatClient(service.socket, f"local:{folder}")
            sent = time.time()
            client.send("hello, cold agent")
            wait_reply(client)
            client.close()
            finish(settings, log, folder)
            lines = service.stderr().splitlines()
            marks = [_line_time(lines, f"{folder}: agent run ")]
            marks += [_line_time(lines, f"{folder} agent: ", needle) for _, needle in MARKS]
            marks.append(_clock_of(api.first_after(sent)))
            steps.append([later - earlier for earlier, later in zip(marks, marks[1:])])
    finally:
        warm_client.close()
        service.stop(timeout=90)
    return steps


def _line_time(lines: list[str], prefix: str, needle: str = "") -> float:
    """Seconds since midnight of the first service log line with `prefix` (and `needle`)."""
    for line in lines:
        if prefix in line and needle in line:
            hours, minutes, seconds = line.split()[0].split(":")
            return int(hours) * 3600 + int(minutes) * 60 + float(seconds)
    raise RuntimeError(f"no log line with {prefix!r} {needle!r}")


def _clock_of(epoch: float) -> float:
    """A wall-clock time as the service's log lines show it (local time, seconds since midnight)."""
    local = time.localtime(epoch)
    return local.tm_hour * 3600 + local.tm_min * 60 + local.tm_sec + epoch % 1


def memory(settings, log, service: RouterProcess, folders: list[str]) -> tuple[list[float], float]:
    """(each ready agent's memory, the service's resident set), in MB, with ready agents for `folders`."""
    import docker

    for folder in folders:
        start_ready(settings, log, folder)
    time.sleep(READY_SETTLE_S * 2)
    engine = docker.from_env()
    try:
        names = [c.name for c in engine.containers.list() if c.labels.get(LABEL_GROUP) in folders]
        held = [container_memory_mb(engine, name) or 0.0 for name in names]
    finally:
        engine.close()
    rss = sum(_rss_mb(pid) for pid in (service.proc.pid, service.worker_pid()))
    for folder in folders:
        finish(settings, log, folder)
    return held, rss


def _rss_mb(pid: int) -> float:
    for row in Path(f"/proc/{pid}/status").read_text().splitlines():
        if row.startswith("VmRSS:"):
            return int(row.split()[1]) / 1024
    return 0.0


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
                                   MAX_CONCURRENT_CONTAINERS="5", READY_AGENTS="0")
        os.environ.update(AGENT_PROVIDER="claude", IDLE_TIMEOUT="600000")  # fresh_root's defaults, overridden
        settings = load_settings()
        register_group(log, settings, jid="local:warm", name="Warm", folder="warm", is_main=True)
        for n in range(args.samples + 1):
            register_group(log, settings, jid=f"local:c{n}", name=f"C{n}", folder=f"c{n}", requires_trigger=False)
            register_group(log, settings, jid=f"local:r{n}", name=f"R{n}", folder=f"r{n}", requires_trigger=False)
        for n in range(BREAKDOWN_SAMPLES):
            register_group(log, settings, jid=f"local:s{n}", name=f"S{n}", folder=f"s{n}", requires_trigger=False)
        cold_figures = _cold_phase(settings, log, api, args.samples)
        steps = breakdown(settings, log, api, [f"s{n}" for n in range(BREAKDOWN_SAMPLES)])
        os.environ["READY_AGENTS"] = str(READY_AGENTS)
        settings = load_settings()
        ready_figures, held, rss = _ready_phase(settings, log, api, args.samples)
        log.close()
    _report(args.samples, *cold_figures, ready_figures, held, rss, settings.ready_agents_memory_mb)
    print(f"where a cold start's time goes, AgentRunStarted to the first model request (medians of "
          f"{BREAKDOWN_SAMPLES}, a service at LOG_LEVEL=debug):")
    names = [name for name, _ in MARKS] + ["the CLI's first turn, to its first model request"]
    for index, name in enumerate(names):
        print(f"  {name:<66} {statistics.median(s[index] for s in steps) * 1e3:6.0f} ms")


def _service(settings) -> tuple[RouterProcess, LocalChatClient]:
    service = RouterProcess(settings, worker=True)
    service.wait_ready(timeout=60, worker_too=True)
    warm_client = LocalChatClient(service.socket, "local:warm")
    warm_client.send("wake up")
    wait_reply(warm_client)
    return service, warm_client


def _cold_phase(settings, log, api: TimedStandIn, samples: int) -> tuple[list[float], ...]:
    """(b), (c) and (d) interleaved, ready agents off."""
    service, warm_client = _service(settings)
    floors, requested, started, first, replied, warm_first, warm_reply = [], [], [], [], [], [], []
    try:
        floor(api)  # warm the page cache and the image's layers for both paths
        for n in range(samples + 1):
            client = LocalChatClient(service.socket, f"local:c{n}")
            b = cold(client, api, log, f"c{n}")
            client.close()
            finish(settings, log, f"c{n}")
            d = floor(api)
            c = warm(warm_client, api)
            if n == 0:
                continue  # the first of each is a warm-up
            for into, value in zip((requested, started, first, replied, floors, warm_first, warm_reply),
                                   (*b, d, *c)):
                into.append(value)
    finally:
        warm_client.close()
        service.stop(timeout=90)
    return requested, started, first, replied, floors, warm_first, warm_reply


def _ready_phase(settings, log, api: TimedStandIn, samples: int):
    """(a) and (c) interleaved with ready agents on, then the memory of three ready agents."""
    service, warm_client = _service(settings)
    ready_first, ready_reply, warm_first, warm_reply = [], [], [], []
    try:
        for n in range(samples + 1):
            client = LocalChatClient(service.socket, f"local:r{n}")
            a = ready(client, api, settings, log, f"r{n}")
            client.close()
            c = warm(warm_client, api)
            if n == 0:
                continue
            for into, value in zip((ready_first, ready_reply, warm_first, warm_reply), (*a, *c)):
                into.append(value)
        held, rss = memory(settings, log, service, [f"c{n}" for n in range(READY_AGENTS)])
    finally:
        warm_client.close()
        service.stop(timeout=90)
    return (ready_first, ready_reply, warm_first, warm_reply), held, rss


def _first_and_reply(title: str, first: list[float], reply: list[float]) -> None:
    print(title)
    print(line("message -> the model's first request", first))
    print(line("message -> reply in the chat", reply))


def _report(samples: int, requested, started, first, replied, floors, warm_first, warm_reply,
            ready_figures, held: list[float], rss: float, budget_mb: int) -> None:
    ready_first, ready_reply, warm2_first, warm2_reply = ready_figures
    print(f"agent latency, the real Claude CLI in {IMAGE} against a stand-in API that answers at once, "
          f"{samples} interleaved samples each")
    _first_and_reply("(a) a group whose ready agent waits (ready agents on):", ready_first, ready_reply)
    _first_and_reply("(c) follow-up piped into a warm container, in the same service as (a):", warm2_first,
                     warm2_reply)
    print("(b) cold group, no container yet (ready agents off):")
    print(line("message -> AgentRunRequested (the router)", requested))
    print(line("message -> AgentRunStarted (+ dispatcher, huey, worker)", started))
    print(line("message -> the model's first request", first))
    print(line("message -> reply in the chat", replied))
    _first_and_reply("(c) follow-up piped into a warm container, in the same service as (b):", warm_first,
                     warm_reply)
    print("(d) plain docker run of the image running the CLI:")
    print(line("start -> its first model request (the floor for b)", floors))
    med = statistics.median
    print(f"ratios of medians: (a) / (c) reply {med(ready_reply) / med(warm2_reply):.2f}, first request "
          f"{med(ready_first) / med(warm2_first):.2f} (issue 14 target 1.5);  (b) first request / (d) "
          f"{med(first) / med(floors):.2f} (target 1.1);  (b) / (a) reply {med(replied) / med(ready_reply):.1f}x")
    print(f"memory: one ready agent {med(held):.0f} MB (of {len(held)}: "
          f"{', '.join(f'{m:.0f}' for m in held)}), {len(held)} together {sum(held):.0f} MB "
          f"(READY_AGENTS_MEMORY_MB {budget_mb}); the service (router + worker) {rss:.0f} MB resident")


if __name__ == "__main__":
    main()
