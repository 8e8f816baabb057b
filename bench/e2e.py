"""End-to-end figures: a chat message to its reply through `nanoclaw run`, beside plain `docker run`.

Run: .venv/bin/python bench/e2e.py [--cold 15] [--warm 30] [--groups 200] [--starts 5]
A real `nanoclaw run` (router and worker) in a temporary root with 200
registered groups, the local chat as the user, the `test` agent image with
the scripted provider and network none. Cold: each message goes to a group
with no container, so a container starts, answers once and exits; the floor
is a plain `docker run -i --rm` of the same image with the same kind of
input, timed until its reply is on stdout; the two alternate, medians
compared. Warm: follow-ups to a group whose container waits idle. Then the
RSS of the router and its worker, and the start-up time (process start to
"router live"). Targets (issue 6): cold within 1.15x the floor, warm under
50 ms plus the provider's own time, RSS under 150 MB together, start-up
under 2 s.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.jobs import IMAGE, ONE_SHOT, fresh_root, pct  # noqa: E402
from events import types as t  # noqa: E402
from jobs.contract import OUTPUT_END  # noqa: E402
from router.channels.local_client import LocalChatClient  # noqa: E402
from router.heartbeat import read_beat, status_path  # noqa: E402
from rules.groups import register_group  # noqa: E402
from tests.router_process import RouterProcess  # noqa: E402

PROMPT = "hello from the benchmark"
REPLY_TIMEOUT_S = 120
WARM_IDLE_TIMEOUT_MS = "600000"


def floor_reply() -> float:
    """Plain `docker run -i --rm`: input on stdin, timed until the reply's end marker is on stdout."""
    payload = json.dumps({"prompt": f"<messages>{PROMPT}</messages>", "groupFolder": "floor", "chatJid": "local:floor",
                          "isMain": False, "assistantName": "Andy", "provider": "scripted",
                          "scripted": ONE_SHOT}).encode()
    started = time.perf_counter()
    proc = subprocess.Popen(["docker", "run", "-i", "--rm", "--network", "none", "--user", "1000:1000", IMAGE],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    proc.stdin.write(payload)
    proc.stdin.close()
    elapsed = None
    for line in proc.stdout:
        if OUTPUT_END.encode() in line:
            elapsed = time.perf_counter() - started
            break
    proc.stdout.close()
    proc.wait()
    if elapsed is None:
        raise RuntimeError(f"plain docker run gave no reply (exit {proc.returncode})")
    return elapsed


def wait_reply(client: LocalChatClient, clock=time.perf_counter) -> float:
    """Block until the next reply reaches the terminal; returns when, by `clock`."""
    deadline = time.monotonic() + REPLY_TIMEOUT_S
    while time.monotonic() < deadline:
        event = client.next_event(0.5)
        if event and event.get("op") == "reply":
            return clock()
        if event and event.get("op") == "closed":
            raise RuntimeError("the router closed the chat connection")
    raise RuntimeError(f"no reply on {client.jid} within {REPLY_TIMEOUT_S} s")


def finished_runs(log) -> int:
    return len(log.read_since(0, types=[t.AgentRunFinished], limit=None))


def our_cold_reply(client: LocalChatClient, log) -> float:
    """One message to a group with no container: sent -> reply; then wait for that run to end."""
    before = finished_runs(log)
    started = time.perf_counter()
    client.send(PROMPT)
    elapsed = wait_reply(client) - started
    deadline = time.monotonic() + REPLY_TIMEOUT_S
    while finished_runs(log) == before and time.monotonic() < deadline:
        time.sleep(0.02)
    return elapsed


def warm_replies(client: LocalChatClient, count: int) -> list[float]:
    """Follow-ups piped into the group's idle container: sent -> reply."""
    client.send("wake up")
    wait_reply(client)
    latencies = []
    for n in range(count):
        time.sleep(0.1)
        started = time.perf_counter()
        client.send(f"follow-up {n}")
        latencies.append(wait_reply(client) - started)
    return latencies


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


def startup_s(settings) -> tuple[float, float]:
    """Process start to the "router live" line (messages are recorded), then to the worker consuming."""
    started = time.perf_counter()
    service = RouterProcess(settings, worker=True)
    marks: list[float] = []
    try:
        for mark in ("router live", "worker consuming"):
            while mark not in service.stderr():
                if service.proc.poll() is not None or time.perf_counter() - started > 60:
                    raise RuntimeError(f"the service did not start: {service.stderr()[-500:]}")
                time.sleep(0.005)
            marks.append(time.perf_counter() - started)
        return marks[0], marks[1]
    finally:
        service.stop(timeout=60)


def setup(tmp: str, cold: int, groups: int):
    settings, log = fresh_root(tmp)
    os.environ["IDLE_TIMEOUT"] = WARM_IDLE_TIMEOUT_MS
    scripts = Path(tmp) / "scripts.json"
    scripts.write_text(json.dumps({f"c{n}": ONE_SHOT for n in range(cold + 1)}))  # the warm group echoes and waits
    os.environ["SCRIPTED_AGENT_FILE"] = str(scripts)
    register_group(log, settings, jid="local:warm", name="Warm", folder="warm", is_main=True)
    for n in range(cold + 1):
        register_group(log, settings, jid=f"local:c{n}", name=f"C{n}", folder=f"c{n}", requires_trigger=False)
    for n in range(max(0, groups - cold - 2)):
        register_group(log, settings, jid=f"local:idle{n}", name=f"Idle {n}", folder=f"idle{n}")
    return settings, log


def report(floor: list[float], ours: list[float], warm: list[float], rss: tuple[float, float],
           starts: list[float], groups: int) -> None:
    ms = 1e3
    f50, o50 = statistics.median(floor), statistics.median(ours)
    print(f"cold reply, {len(ours)} interleaved samples each:")
    print(f"  plain docker run -i --rm (floor): p50 {f50 * ms:7.1f} ms  p90 {pct(floor, .9) * ms:7.1f} ms")
    print(f"  nanoclaw run, message -> reply:   p50 {o50 * ms:7.1f} ms  p90 {pct(ours, .9) * ms:7.1f} ms")
    print(f"  ratio of medians: {o50 / f50:.2f}   target <= 1.15")
    print(f"warm reply (follow-up piped into the idle container), {len(warm)} samples: "
          f"p50 {statistics.median(warm) * ms:.1f} ms  p90 {pct(warm, .9) * ms:.1f} ms   "
          f"target < 50 ms + the provider's time (scripted: ~0)")
    router, worker = rss
    print(f"RSS with {groups} groups, after the runs above: router {router:.1f} MB + worker {worker:.1f} MB "
          f"= {router + worker:.1f} MB   target < 150 MB")
    live, consuming = [s[0] for s in starts], [s[1] for s in starts]
    print(f"start-up, process start -> 'router live', {groups} groups, {len(starts)} starts: "
          f"median {statistics.median(live) * ms:.0f} ms  max {max(live) * ms:.0f} ms   target < 2 s")
    print(f"  -> its worker consuming (agents can start): median {statistics.median(consuming) * ms:.0f} ms  "
          f"max {max(consuming) * ms:.0f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cold", type=int, default=15)
    parser.add_argument("--warm", type=int, default=30)
    parser.add_argument("--groups", type=int, default=200)
    parser.add_argument("--starts", type=int, default=5)
    args = parser.parse_args()
    print(f"end-to-end benchmark (a real nanoclaw run; scripted agent in {IMAGE}, network none)")
    with tempfile.TemporaryDirectory(prefix="nanoclaw-bench-e2e-") as tmp:
        settings, log = setup(tmp, args.cold, args.groups)
        service = RouterProcess(settings, worker=True).wait_ready(timeout=60)
        try:
            clients = [LocalChatClient(service.socket, f"local:c{n}") for n in range(args.cold + 1)]
            floor_reply()  # warm both paths once: image layers, page cache
            our_cold_reply(clients[0], log)
            floor, ours = [], []
            for client in clients[1:]:
                floor.append(floor_reply())
                ours.append(our_cold_reply(client, log))
            warm_client = LocalChatClient(service.socket, "local:warm")
            warm = warm_replies(warm_client, args.warm)
            beat = read_beat(status_path(settings))
            rss = (rss_mb(service.proc.pid), rss_mb(beat.worker_pid) if beat and beat.worker_pid else float("nan"))
            for client in [*clients, warm_client]:
                client.close()
        finally:
            service.stop(timeout=60)
        starts = [startup_s(settings) for _ in range(args.starts)]
        log.close()
    report(floor, ours, warm, rss, starts, args.groups)


if __name__ == "__main__":
    main()
