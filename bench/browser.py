"""What the agent's browser costs: opening and reading a page, cold and warm, and the memory it adds.

Run as root: .venv/bin/python bench/browser.py [--samples 15]
A real `nanoclaw run` runs the scripted agent in the full image (the
`nanoclaw-agent:browser-test` tag the tests build) with no network; pages
come from a stand-in web host in a network namespace through the gateway's
proxy, under an `allow:` policy. Each sample is a new container: it answers
"start", sleeps (its memory is read then, before any browser), opens the page
with a cold browser, reads it, then opens it WARM_OPENS times and reads it
WARM_READS times with the browser up. The scripted agent logs each tool
call's duration, read from the container's log. While the container idles
its memory is read again, and `curl` inside it fetches the same page
through the same proxy: the floor a warm open is held to.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import docker  # noqa: E402

from bench.jobs import fresh_root, pct  # noqa: E402
from events import types as t  # noqa: E402
from jobs import image  # noqa: E402
from jobs.ready_agents import container_memory_mb  # noqa: E402
from jobs.runtime import LABEL_GROUP  # noqa: E402
from router.channels.local_client import LocalChatClient  # noqa: E402
from rules.groups import register_group  # noqa: E402
from rules.ipc_folder import request_close  # noqa: E402
from tests.netns_host import NetnsHost  # noqa: E402
from tests.router_process import RouterProcess  # noqa: E402
from tests.test_browser import FORM  # noqa: E402

IMAGE = "nanoclaw-agent:browser-test"
FOLDER, JID = "web", "local:web"
PORT = 8090
WARM_OPENS = 5
WARM_READS = 3
BEFORE_S = 2.0  # the sleep in which the memory without a browser is read
TIMEOUT_S = 120
CALLS = 2 + WARM_OPENS + WARM_READS


def tool(name: str, **args) -> dict:
    return {"tool": name, "args": args, "show": True}


def script(url: str) -> dict:
    turn = [{"reply": "start"}, {"sleep": BEFORE_S}, tool("browser_open", url=url),
            tool("browser_read", format="accessibility")]
    turn += [tool("browser_open", url=url) for _ in range(WARM_OPENS)]
    turn += [tool("browser_read", format="accessibility") for _ in range(WARM_READS)]
    return {FOLDER: {"turns": [turn], "default": "silent"}}


def replies_at(client: LocalChatClient, count: int) -> list[tuple[float, str]]:
    got: list[tuple[float, str]] = []
    deadline = time.monotonic() + TIMEOUT_S
    while len(got) < count:
        if time.monotonic() > deadline:
            raise RuntimeError(f"only {len(got)} of {count} replies: {got}")
        event = client.next_event(0.5)
        if event and event.get("op") == "reply":
            got.append((time.perf_counter(), event["text"]))
    return got


def tool_times(stderr: str) -> list[float]:
    """Each browser tool call's duration (seconds) from the scripted agent's `tool NAME took N ms` lines."""
    found = re.findall(r"\] tool (browser_\w+) took ([\d.]+) ms", stderr)
    if len(found) != CALLS:
        raise RuntimeError(f"expected {CALLS} browser tool lines in the container's log, found {found}")
    return [float(ms) / 1000 for _, ms in found]


def container_of(engine) -> str:
    deadline = time.monotonic() + TIMEOUT_S
    while time.monotonic() < deadline:
        names = [c.name for c in engine.containers.list() if c.labels.get(LABEL_GROUP) == FOLDER]
        if names:
            return names[0]
        time.sleep(0.05)
    raise RuntimeError("no container for the group")


def curl_floor(engine, name: str, url: str) -> float:
    """`curl` in the same container, through the same proxy, fetching the same page (seconds)."""
    container = engine.containers.get(name)
    code, out = container.exec_run(["curl", "-s", "-o", "/dev/null", "-w", "%{time_total}", url], user="1000:1000")
    if code != 0:
        raise RuntimeError(f"curl in the container failed: {out!r}")
    return float(out.decode())


def sample(service, settings, log, engine, url: str) -> dict[str, float]:
    client = LocalChatClient(service.socket, JID)
    before = log.last_seq()
    client.send("browse")
    [(_, text)] = replies_at(client, 1)
    assert text == "start", text
    name = container_of(engine)
    time.sleep(BEFORE_S / 2)
    memory_before = container_memory_mb(engine, name) or 0.0
    rest = replies_at(client, CALLS)
    problems = [text for _, text in rest if " error]" in text.split("\n", 1)[0]]
    if problems:
        raise RuntimeError(f"a browser tool failed: {problems[0]}")
    gaps = tool_times(engine.containers.get(name).logs(stdout=False, stderr=True).decode("utf-8", "replace"))
    memory_after = container_memory_mb(engine, name) or 0.0
    floor = curl_floor(engine, name, url)
    client.close()
    request_close(settings, FOLDER)
    _wait_finished(log, before)
    return {"cold_open": gaps[0], "read": gaps[1], "warm_open": statistics.median(gaps[2:2 + WARM_OPENS]),
            "warm_read": statistics.median(gaps[2 + WARM_OPENS:]), "floor": floor,
            "memory_before": memory_before, "memory_after": memory_after}


def _wait_finished(log, after_seq: int) -> None:
    deadline = time.monotonic() + TIMEOUT_S
    while time.monotonic() < deadline:
        if log.read_since(after_seq, types=[t.AgentRunFinished], limit=1):
            return
        time.sleep(0.05)
    raise RuntimeError("the run did not finish")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=15)
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("bench/browser.py needs root (the stand-in web host is a network namespace)", file=sys.stderr)
        return 2
    if not image.image_exists(IMAGE) or image.image_is_stale(IMAGE):
        print(f"building {IMAGE} (the full target) ...", flush=True)
        image.build_image(target="full", tag=IMAGE, on_progress=lambda line: None)
    with tempfile.TemporaryDirectory(prefix="nanoclaw-bench-browser-") as tmp, NetnsHost() as web:
        pages = Path(tmp) / "pages"
        pages.mkdir()
        (pages / "form.html").write_text(FORM)
        server = web.serve_http(PORT, pages=pages)
        url = f"{server.url}/pages/form.html"
        (Path(tmp) / "scripts.json").write_text(json.dumps(script(url)))
        settings, log = fresh_root(tmp, SCRIPTED_AGENT_FILE=str(Path(tmp) / "scripts.json"), IDLE_TIMEOUT="60000",
                                   READY_AGENTS="0", CONTAINER_IMAGE=IMAGE)
        register_group(log, settings, jid=JID, name="Web", folder=FOLDER, is_main=True,
                       container_config=t.ContainerConfig(egress=f"allow:{web.remote_address}:{PORT}"))
        engine = docker.from_env()
        service = RouterProcess(settings, worker=True).wait_ready(timeout=60, worker_too=True)
        try:
            results = [sample(service, settings, log, engine, url) for _ in range(args.samples)]
        finally:
            service.stop(timeout=90)
            engine.close()
            log.close()
    report(results)
    return 0


def report(results: list[dict[str, float]]) -> None:
    def figures(key: str, scale: float = 1000.0) -> tuple[float, float]:
        values = [r[key] * scale for r in results]
        return statistics.median(values), pct(values, 0.9)

    print(f"browser tools, {len(results)} containers (medians and p90; ms unless said)")
    for key, label in (("cold_open", "open + read text, cold browser (Playwright and Chromium start)"),
                       ("warm_open", f"open + read text, browser up (median of {WARM_OPENS} per container)"),
                       ("read", "accessibility tree, first read after the cold open"),
                       ("warm_read", f"accessibility tree, browser up (median of {WARM_READS} per container)"),
                       ("floor", "floor: curl of the same page in the same container, same proxy")):
        p50, p90 = figures(key)
        print(f"  {label:<72} p50 {p50:8.1f}  p90 {p90:8.1f}")
    ratios = [r["warm_open"] / r["floor"] for r in results if r["floor"] > 0]
    print(f"  warm open / floor, per container: median {statistics.median(ratios):.1f}x")
    before, after = figures("memory_before", 1.0), figures("memory_after", 1.0)
    added = [r["memory_after"] - r["memory_before"] for r in results]
    print(f"  container memory before the browser: median {before[0]:.0f} MB; with it: {after[0]:.0f} MB; "
          f"the browser adds median {statistics.median(added):.0f} MB (p90 {pct(added, 0.9):.0f} MB)")


if __name__ == "__main__":
    sys.exit(main())
