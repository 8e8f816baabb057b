"""Container figures: our runner against a plain `docker run --rm`, and piped-input latency.

Run: .venv/bin/python bench/containers.py [--runs 20] [--image nanoclaw-agent:test]
Both sides start the same image with the same input on stdin (the scripted
provider replies with the prompt, then exits) and are timed from start to
the container being gone; runs are interleaved so machine noise hits both.
Piped input is timed from the rename of an input file to its echo arriving
on the host: an upper bound of the runner's read latency.
Targets (issue 4): overhead under 10% of the plain run; piped input read
within 20 ms (v1 polls every 500 ms).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import msgspec
from loguru import logger

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from base.config import load_settings  # noqa: E402
from jobs.containers import ContainerRunner, RunSpec  # noqa: E402
from jobs.contract import AgentInput  # noqa: E402
from rules.groups import ensure_group_files  # noqa: E402


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def agent_input(scripted: dict | None) -> AgentInput:
    return AgentInput(prompt="hello from the benchmark", groupFolder="bench", chatJid="local:bench", isMain=False,
                      assistantName="Andy", provider="scripted", scripted=scripted, timezone="UTC")


ONE_SHOT = {"turns": [[{"reply_prompt": True}, {"crash": 0}]]}


def plain_run(image: str, payload: bytes) -> float:
    started = time.perf_counter()
    out = subprocess.run(["docker", "run", "--rm", "-i", "--network", "none", "--user", "1000:1000", image],
                         input=payload, capture_output=True, check=False)
    elapsed = time.perf_counter() - started
    if b"hello from the benchmark" not in out.stdout:
        raise RuntimeError(f"plain docker run gave no reply: {out.stderr[-300:]!r}")
    return elapsed


def our_run(runner: ContainerRunner) -> float:
    spec = RunSpec(folder="bench", group_name="Bench", is_main=False, input=agent_input(ONE_SHOT), run_id="bench")
    replies: list[str] = []
    started = time.perf_counter()
    result = runner.run(spec, lambda r: replies.append(r.result))
    elapsed = time.perf_counter() - started
    if result.status != "success" or replies != ["hello from the benchmark"]:
        raise RuntimeError(f"our run failed: {result}")
    return elapsed


def piped_latency(settings, runner: ContainerRunner, samples: int) -> list[float]:
    arrived: dict[str, float] = {}
    first = threading.Event()

    def on_output(result) -> None:
        if result.result:
            arrived[result.result] = time.perf_counter()
        first.set()

    spec = RunSpec(folder="bench", group_name="Bench", is_main=False, input=agent_input(None), run_id="pipe")
    thread = threading.Thread(target=runner.run, args=(spec, on_output))
    thread.start()
    first.wait(60)
    inbox = settings.ipc_dir / "bench" / "input"
    latencies = []
    for n in range(samples):
        text = f"follow-up {n}"
        temp = inbox / f"{n:06d}.json.tmp"
        temp.write_text(json.dumps({"type": "message", "text": text}))
        os.chmod(temp, 0o666)
        sent = time.perf_counter()
        os.replace(temp, inbox / f"{int(time.time() * 1000)}-{n:06d}.json")
        deadline = time.perf_counter() + 10
        while text not in arrived and time.perf_counter() < deadline:
            time.sleep(0.0005)
        latencies.append(arrived[text] - sent)
        time.sleep(0.05)
    (inbox / "_close").touch()
    thread.join(60)
    return latencies


def main() -> None:
    logger.remove()
    logger.add(sys.stderr, level="WARNING")
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--image", default="nanoclaw-agent:test")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="nanoclaw-bench-containers-") as tmp:
        os.environ.update(NANOCLAW_ROOT=tmp, HOME=tmp, CONTAINER_IMAGE=args.image, CONTAINER_NETWORK="none",
                          IDLE_TIMEOUT="60000")
        settings = load_settings()
        settings.ensure_dirs()
        ensure_group_files(settings, "bench", is_main=False)
        runner = ContainerRunner(settings)
        payload = msgspec.json.encode(agent_input(ONE_SHOT))
        plain_run(args.image, payload)  # warm both paths once
        our_run(runner)
        plain, ours = [], []
        for _ in range(args.runs):
            plain.append(plain_run(args.image, payload))
            ours.append(our_run(runner))
        print(f"container benchmark, {args.runs} interleaved runs each, image {args.image}")
        print(f"plain docker run --rm -i:  median {statistics.median(plain) * 1e3:7.1f} ms  p90 {pct(plain, .9) * 1e3:7.1f} ms")
        print(f"our runner (SDK, logs):    median {statistics.median(ours) * 1e3:7.1f} ms  p90 {pct(ours, .9) * 1e3:7.1f} ms")
        overhead = statistics.median(ours) / statistics.median(plain) - 1
        print(f"overhead of our runner: {overhead * 100:+.1f}% of the plain run (median)   target < 10%")
        lat = piped_latency(settings, runner, args.runs)
        print(f"piped input -> its echo on the host: p50 {pct(lat, .5) * 1e3:.1f} ms  p90 {pct(lat, .9) * 1e3:.1f} ms"
              f"  max {max(lat) * 1e3:.1f} ms   target < 20 ms (v1 polls every 500 ms)")


if __name__ == "__main__":
    main()
