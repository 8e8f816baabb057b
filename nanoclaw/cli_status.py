"""`nanoclaw status` and `nanoclaw doctor`: one screen for people, `--json` for scripts.

The gathering lives in nanoclaw/status.py and nanoclaw/doctor.py; this file
only lays their results out.
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import TextIO

import msgspec

from base.config import Settings
from base.timefmt import parse_iso
from events.health import RECOVERY_HINT, log_problem
from nanoclaw import doctor, status

SHOW_GROUPS = 10
LEVEL_WORDS = {"ok": "ok", "warn": "warn", "fail": "FAIL"}


def duration(seconds: float) -> str:
    """A short human span: 42 s, 7 min, 3 h 5 min, 2 d 4 h."""
    seconds = max(0, int(seconds))
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min"
    if seconds < 86400:
        return f"{seconds // 3600} h {seconds % 3600 // 60} min"
    return f"{seconds // 86400} d {seconds % 86400 // 3600} h"


def ago(iso: str | None, now: float) -> str:
    return "never" if iso is None else f"{duration(now - parse_iso(iso).timestamp())} ago"


def _service_line(info: status.ServiceInfo, now: float) -> str:
    if info.state == "down":
        return f"DOWN: {info.detail}"
    since = f", up {duration(now - parse_iso(info.started_at).timestamp())}" if info.started_at else ""
    worker = f", worker pid {info.worker_pid}" if info.worker_pid else ", no worker"
    return f"{info.state}: {info.detail}{since}{worker}"


def _containment(info: status.ContainmentInfo, w) -> None:
    network = "none (the gateway is their only way out)" if info.network == "none" else \
        f"{info.network} (UNSAFE opt-out: agents reach that network past their egress policy)"
    w(f"agents      network {network}\n")
    w(f"gateway     model API {info.model_api}, key from {info.credential or 'nowhere (not set)'}, "
      f"{info.open_run_sockets} run socket(s) open\n")
    w(f"chat socket {info.chat_socket} (outside every mount)\n")


def render(report: status.Status, out: TextIO) -> None:
    now = parse_iso(report.generated_at).timestamp()
    w = out.write
    w(f"NanoClaw at {report.root}\n")
    w(f"service     {_service_line(report.service, now)}\n")
    w(f"channels    {', '.join(report.service.channels) or '-'}\n")
    for channel, note in report.channel_notes.items():
        w(f"  {channel:<10}{note}\n")
    for channel, problem in report.service.channel_problems.items():
        w(f"  {channel:<10}PROBLEM: {problem}\n")
    w(f"docker      {'up, ' + report.docker.detail if report.docker.reachable else 'DOWN: ' + report.docker.detail}\n")
    w(f"queue       {report.queue.pending} job(s) waiting, {report.queue.scheduled} scheduled\n")
    w(f"groups      {len(report.groups)} registered\n")
    for g in report.groups[:SHOW_GROUPS]:
        last = f"{ago(g.last_activity_at, now)} ({g.last_activity})" if g.last_activity else "no activity"
        w(f"  {g.folder:<16} {g.jid:<24} {last}  egress {g.egress}{'  [main]' if g.is_main else ''}\n")
    if len(report.groups) > SHOW_GROUPS:
        w(f"  ... and {len(report.groups) - SHOW_GROUPS} more (nanoclaw groups list)\n")
    if report.containment is not None:
        _containment(report.containment, w)
    if report.usage is not None:
        u = report.usage
        unpriced = f" (no price for {', '.join(u.unpriced_models)})" if u.unpriced_models else ""
        day_cap = f" of ${u.daily_budget_usd:.2f}" if u.daily_budget_usd else ""
        month_cap = f" of ${u.monthly_budget_usd:.2f}" if u.monthly_budget_usd else ""
        w(f"usage       today ~${u.today_usd:.2f}{day_cap} ({u.today_tokens:,} tokens), this month "
          f"~${u.month_usd:.2f}{month_cap} ({u.month_tokens:,} tokens), UTC days{unpriced}\n")
    docker_note = "" if report.docker.reachable else " (from the log only: Docker is down)"
    w(f"containers  {len(report.containers)}{docker_note}\n")
    for c in report.containers:
        since = f" {duration(now - parse_iso(c.idle_since).timestamp())}" if c.idle_since else ""
        state = f"{c.state}{since}" if c.state in ("idle", "ready") else c.state
        age = f"age {duration(c.age_s)}" if c.age_s is not None else ""
        w(f"  {c.folder:<16} {state:<14} {age:<14} {c.name}\n")
    w(f"next tasks  {len(report.next_tasks) or 'none'}\n")
    for task in report.next_tasks:
        when = parse_iso(task.next_run).timestamp() - now
        due = f"in {duration(when)}" if when > 0 else f"due {duration(-when)} ago"
        w(f"  {task.group_folder:<16} {due:<14} {task.schedule:<22} {task.id}  {task.prompt[:40]!r}\n")
    w(f"last errors {len(report.errors) or 'none'}\n")
    for error in report.errors:
        w(f"  {ago(error.at, now):<14} {error.where:<16} {error.message[:90]}\n")


def _show(report, as_json: bool, render_text) -> None:
    """One JSON object for machines, or the screen for people."""
    if as_json:
        sys.stdout.write(msgspec.json.encode(report).decode() + "\n")
    else:
        render_text(report, sys.stdout)


def cmd_status(settings: Settings, args: argparse.Namespace) -> int:
    if (problem := log_problem(settings.db_path)) is not None:  # before anything reads it
        info = status.service_info(settings)
        print(f"NanoClaw at {settings.root}\nservice     {_service_line(info, time.time())}\n"
              f"event log   DAMAGED: {settings.db_path} {problem}\n            to recover: {RECOVERY_HINT}",
              file=sys.stderr)
        return 1
    _show(status.gather(settings), args.json, render)
    return 0


def render_doctor(report: doctor.Report, out: TextIO) -> None:
    width = max(len(c.name) for c in report.checks)
    for check in report.checks:
        out.write(f"{LEVEL_WORDS[check.level]:<5} {check.name:<{width}}  {check.detail}\n")
        if check.fix:
            out.write(f"{'':<5} {'':<{width}}  -> {check.fix}\n")
    failed = sum(c.level == "fail" for c in report.checks)
    warned = sum(c.level == "warn" for c in report.checks)
    out.write(f"\n{failed} failure(s), {warned} warning(s)\n" if failed or warned else "\nall good\n")


def cmd_doctor(settings: Settings, args: argparse.Namespace) -> int:
    report = doctor.diagnose(settings)
    _show(report, args.json, render_doctor)
    return 0 if report.ok else 1


def add_parsers(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("status", help="what runs now: service, channels, groups, containers, queue, tasks, errors")
    p.add_argument("--json", action="store_true", help="one JSON object for scripts")
    p.set_defaults(handler=cmd_status)
    d = sub.add_parser("doctor", help="check runtime, image, credentials, channels, folders, allowlists, service, log")
    d.add_argument("--json", action="store_true", help="one JSON object for scripts")
    d.set_defaults(handler=cmd_doctor)
