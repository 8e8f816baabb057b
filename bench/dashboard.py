"""The dashboard's cost to the router: message -> `AgentRunRequested` and the service's CPU, with pages open or not.

Run: .venv/bin/python bench/dashboard.py [--messages 300] [--pages 2]
A real `nanoclaw run` (router and dashboard, no worker) in a temporary
root; the local chat sends messages one at a time, a stand-in worker in
this process closes each requested run (as bench/router.py does). Three
rounds in one run, interleaved twice to spread the machine's noise:
no page open, the service's dashboard switched off (the floor), and
`--pages` Chromium pages (Debian's, headless, through Playwright) open on
the conversation page of the busy group, which fetches itself again on
every change. CPU is the service process's own user+system time over the
round (from /proc), per message. Quote the medians and the ratios.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from base.timefmt import parse_iso  # noqa: E402
from bench.router import _stand_in_worker, _wait_request, pct, setup  # noqa: E402
from nanoclaw import dashboard_auth as auth  # noqa: E402
from router.channels.local_client import LocalChatClient  # noqa: E402
from router.heartbeat import read_beat, status_path  # noqa: E402
from tests.router_process import RouterProcess  # noqa: E402

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def one_round(messages: int, pages: int, dashboard: bool) -> tuple[list[float], float, int]:
    with tempfile.TemporaryDirectory(prefix="nanoclaw-bench-dashboard-") as tmp:
        os.environ["DASHBOARD"] = "on" if dashboard else "off"
        os.environ["DASHBOARD_PORT"] = "0"
        settings, log = setup(Path(tmp), 2)
        service = RouterProcess(settings).wait_ready()
        browser = None
        try:
            if pages:
                beat = read_beat(status_path(settings))
                browser = PagesOpen(f"{beat.dashboard}", auth.login_token(settings), pages)
                browser.start()
            samples: list[float] = []
            after = log.last_seq()
            cpu_before = cpu_seconds(service.proc.pid)
            for n in range(messages):
                client = LocalChatClient(service.socket, "local:g1")
                try:
                    sent = time.time()
                    client.send(f"message {n}")
                    request = _wait_request(log, after, "g1")
                finally:
                    client.close()
                samples.append((parse_iso(request.at).timestamp() - sent) * 1000)
                after = request.seq
                _stand_in_worker(log, request.event, n)
            cpu = cpu_seconds(service.proc.pid) - cpu_before
            time.sleep(0.5)  # the pages' last refreshes
        finally:
            if browser is not None:
                browser.stop()
            service.stop()
            log.close()
        return samples, cpu / messages * 1000, browser.refreshes if browser else 0


class PagesOpen(threading.Thread):
    """Chromium with `count` conversation pages open, in a thread of its own, until stopped."""

    def __init__(self, url: str, token: str, count: int):
        super().__init__(daemon=True)
        self.url, self.token, self.count = url, token, count
        self.ready, self._done = threading.Event(), threading.Event()
        self.refreshes = 0

    def run(self) -> None:
        asyncio.run(self._browse())

    async def _browse(self) -> None:
        from playwright.async_api import async_playwright
        async with async_playwright() as playwright:
            browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
            context = await browser.new_context()
            for _ in range(self.count):
                page = await context.new_page()
                page.on("response", lambda r: self._count(r.url))
                await page.goto(f"{self.url}/login?token={self.token}")
                await page.goto(f"{self.url}/groups/g1")
                await page.wait_for_selector("#connection[data-state=live]")
            self.ready.set()
            while not self._done.is_set():
                await asyncio.sleep(0.1)
            await browser.close()

    def _count(self, url: str) -> None:
        if "fragment=1" in url:
            self.refreshes += 1

    def start(self) -> None:
        super().start()
        if not self.ready.wait(60):
            raise RuntimeError("the pages did not open within 60 s")

    def stop(self) -> None:
        self._done.set()
        self.join(30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=300)
    parser.add_argument("--pages", type=int, default=2)
    args = parser.parse_args()
    rounds = {"dashboard off (floor)": (0, False), "dashboard on, no page open": (0, True),
              f"{args.pages} page(s) open": (args.pages, True)}
    latency: dict[str, list[float]] = {name: [] for name in rounds}
    cpu: dict[str, list[float]] = {name: [] for name in rounds}
    refreshes: dict[str, int] = {name: 0 for name in rounds}
    for _ in range(2):  # interleaved: the machine's noise falls on every round alike
        for name, (pages, on) in rounds.items():
            samples, per_message, fetched = one_round(args.messages // 2, pages, on)
            latency[name] += samples
            cpu[name].append(per_message)
            refreshes[name] += fetched
    floor = statistics.median(latency["dashboard off (floor)"])
    floor_cpu = statistics.median(cpu["dashboard off (floor)"])
    print(f"message -> AgentRunRequested, {args.messages} messages per round, ms; service CPU per message, ms")
    print(f"{'round':<30} {'p50':>7} {'p90':>7} {'p99':>7} {'x floor':>8} {'CPU/msg':>8} {'x floor':>8} "
          f"{'page refreshes':>15}")
    for name in rounds:
        values = latency[name]
        median_cpu = statistics.median(cpu[name])
        print(f"{name:<30} {statistics.median(values):7.2f} {pct(values, 0.9):7.2f} {pct(values, 0.99):7.2f} "
              f"{statistics.median(values) / floor:8.2f} {median_cpu:8.2f} {median_cpu / floor_cpu:8.2f} "
              f"{refreshes[name]:15d}")


if __name__ == "__main__":
    main()
