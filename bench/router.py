"""Router figures: message in on the local chat -> `AgentRunRequested`, and inbound throughput.

Run: .venv/bin/python bench/router.py [--messages 600] [--burst 6000]
A real `nanoclaw run` in a temporary root, clients on its Unix socket. A
stand-in worker in this process marks each requested run started and
finished, so every message opens a new request. Latency is the request
event's commit time minus the client's send time (both this machine's clock,
millisecond resolution). Targets (issue 3): p50 < 10 ms, p99 < 50 ms (v1
polls every 2 s: about 1 s on average); >= 2,000 inbound messages/s.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from base.config import load_settings  # noqa: E402
from base.timefmt import parse_iso  # noqa: E402
from events import EventLog  # noqa: E402
from events import types as t  # noqa: E402
from router.channels.local_client import LocalChatClient  # noqa: E402
from rules.groups import register_group  # noqa: E402
from tests.router_process import RouterProcess  # noqa: E402


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def setup(root: Path, groups: int):
    os.environ["NANOCLAW_ROOT"] = str(root)
    os.environ["HOME"] = str(root)
    settings = load_settings()
    settings.ensure_dirs()
    log = EventLog(settings.db_path)
    for g in range(groups):
        register_group(log, settings, jid=f"local:g{g}", name=f"G{g}", folder=f"g{g}", is_main=g == 0,
                       requires_trigger=False)
    return settings, log


def latency(groups: int, messages: int) -> list[float]:
    with tempfile.TemporaryDirectory(prefix="nanoclaw-bench-router-") as tmp:
        settings, log = setup(Path(tmp), groups)
        router = RouterProcess(settings).wait_ready()
        samples: list[float] = []
        try:
            after = log.last_seq()
            for n in range(messages):
                g = n % groups
                # one connection per message: the chat serves at most 64 at once, fewer than the groups
                client = LocalChatClient(router.socket, f"local:g{g}")
                try:
                    sent = time.time()
                    client.send(f"message {n}")
                    request = _wait_request(log, after, f"g{g}")
                finally:
                    client.close()
                samples.append(parse_iso(request.at).timestamp() - sent)
                after = request.seq
                _stand_in_worker(log, request.event, n)
        finally:
            router.stop()
            log.close()
        return samples


def _wait_request(log: EventLog, after: int, folder: str):
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        found = log.read_since(after, types=[t.AgentRunRequested], streams=[folder])
        if found:
            return found[0]
        log.wait(log.last_seq(), 0.05)
    raise RuntimeError("no AgentRunRequested within 10 s")


def _stand_in_worker(log: EventLog, request: t.AgentRunRequested, n: int) -> None:
    run_id = f"bench-{n}"
    log.append(t.AgentRunStarted(run_id=run_id, folder=request.folder, chat_jid=request.chat_jid,
                                 container="none", through_seq=log.last_seq()))
    log.append(t.AgentRunFinished(run_id=run_id, folder=request.folder, chat_jid=request.chat_jid, status="ok"))


def throughput(groups: int, burst: int, senders: int) -> tuple[float, float]:
    """(messages recorded per second, messages through the trigger stage per second)."""
    with tempfile.TemporaryDirectory(prefix="nanoclaw-bench-router-") as tmp:
        settings, log = setup(Path(tmp), groups)
        router = RouterProcess(settings).wait_ready()
        start_seq = log.last_seq()
        per_sender = burst // senders

        def blast(s: int) -> None:
            """One connection per sender, requests pipelined, acknowledgements read at the end."""
            conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            conn.connect(str(router.socket))
            lines = []
            for n in range(per_sender):
                g = (s * per_sender + n) % groups
                lines.append(json.dumps({"op": "send", "jid": f"local:g{g}", "id": f"{s}-{n}",
                                         "text": f"burst {s}:{n}", "sender": f"user{s}"}) + "\n")
            writer = threading.Thread(target=conn.sendall, args=("".join(lines).encode(),))
            writer.start()
            acks = 0
            for line in conn.makefile("rb"):
                acks += json.loads(line).get("op") == "ack"
                if acks == per_sender:
                    break
            writer.join()
            conn.close()

        threads = [threading.Thread(target=blast, args=(s,)) for s in range(senders)]
        started = time.perf_counter()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        recorded = time.perf_counter() - started
        count = len(log.read_since(start_seq, types=[t.MessageReceived], limit=None))
        while log.checkpoint("triggers") < log.last_seq():
            log.wait(log.checkpoint("triggers"), 0.05)
        handled = time.perf_counter() - started
        router.stop()
        log.close()
        return count / recorded, count / handled


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--messages", type=int, default=600)
    parser.add_argument("--burst", type=int, default=6000)
    parser.add_argument("--senders", type=int, nargs="+", default=[8, 32],
                        help="connections sending at once (each waits for its message to be recorded)")
    parser.add_argument("--trials", type=int, default=3)
    args = parser.parse_args()
    print("router benchmark (a real nanoclaw run; local chat over its Unix socket)")
    for groups in (1, 200):
        samples = latency(groups, args.messages)
        print(f"message -> AgentRunRequested, {groups:>3} group(s), {len(samples)} messages: "
              f"p50 {pct(samples, .5) * 1e3:5.1f} ms  p90 {pct(samples, .9) * 1e3:5.1f} ms  "
              f"p99 {pct(samples, .99) * 1e3:5.1f} ms   target p50 < 10 ms, p99 < 50 ms")
    for senders in args.senders:
        runs = [throughput(200, args.burst, senders) for _ in range(args.trials)]
        recorded = statistics.median(r[0] for r in runs)
        handled = statistics.median(r[1] for r in runs)
        print(f"inbound throughput, 200 groups, {args.burst} pipelined messages over {senders} connections, "
              f"median of {args.trials}: {recorded:,.0f} messages/s recorded, {handled:,.0f} messages/s "
              "through the trigger stage   target >= 2,000")


if __name__ == "__main__":
    main()
