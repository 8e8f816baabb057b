"""The dashboard's pages: what each shows, gathered from the log, rendered by Jinja2 (escaped by default).

A page is a name, a template and a function that gathers its data, the
same gatherers `nanoclaw status` uses, so the two never disagree. With
`fragment` only the page's live part is rendered, for the script that
swaps it in when the log moves.
"""

from __future__ import annotations

import time
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Callable

from jinja2 import Environment, PackageLoader, select_autoescape

from base.config import Settings
from base.timefmt import parse_iso
from events import EventLog, types as t
from events.queries import group_by_folder, list_groups, tasks_soonest_first, usage_since
from nanoclaw import status
from nanoclaw.cli_status import ago, duration
from nanoclaw.dashboard_charts import stacked_bars
from nanoclaw.why import WhyError, tell
from rules.budgets import caps_of, period_bounds, spent_usd
from rules.prices import PriceTable
from rules.usage import tokens_of, usage_by, utc_day

_ENV = Environment(loader=PackageLoader("nanoclaw", "dashboard_templates"), autoescape=select_autoescape(),
                   trim_blocks=True, lstrip_blocks=True)
_ENV.filters["ago"] = lambda iso, now: ago(iso, now)
_ENV.filters["duration"] = duration
_ENV.filters["epoch"] = lambda iso: parse_iso(iso).timestamp()


@contextmanager
def _reading(settings: Settings):
    """The page's own connection to the log, closed when the page is gathered."""
    log = EventLog(settings.db_path, sync=settings.event_log_sync)
    try:
        yield log
    finally:
        log.close()


class NotFound(Exception):
    """The page names something the log does not have."""


@dataclass(frozen=True)
class Page:
    name: str
    template: str
    gather: Callable[[Settings, dict], dict[str, Any]]

    def render(self, settings: Settings, args: dict, csrf: str, fragment: bool, seq: int = 0) -> str:
        """The page (or its live part), as of the log's `seq` at least: the script refreshes past it."""
        data = self.gather(settings, dict(args))
        return _ENV.get_template(self.template).render(
            page=self.name, csrf=csrf, fragment=fragment, now=time.time(), pages=NAV, seq=seq, **data)


def _overview(settings: Settings, _: dict) -> dict[str, Any]:
    return {"report": status.gather(settings)}


TASK_HISTORY = 20


def _tasks(settings: Settings, _: dict) -> dict[str, Any]:
    with _reading(settings) as log:
        tasks = [dict(row) for row in tasks_soonest_first(log)]
        history = [(r.at, r.event) for r in log.read_since(0, types=[t.TaskRunFinished], limit=TASK_HISTORY,
                                                           newest=True)]
    return {"tasks": tasks, "history": history, "actions": ACTIONS}


USAGE_DAYS = 30


def _usage(settings: Settings, _: dict) -> dict[str, Any]:
    """Spend and tokens per UTC day and group over the last 30 days, and the caps with what is left."""
    prices = PriceTable.load_or_defaults(settings.config_dir)
    days = [utc_day(offset) for offset in range(1 - USAGE_DAYS, 1)]
    with _reading(settings) as log:
        rows = usage_since(log, days[0])
        by_group = usage_by(log, prices, "group", days[0])
        group_caps = _group_caps(settings, log, prices)
        report = status.gather(settings)
    folders = sorted({row["folder"] for row in rows})
    cost = {folder: [0.0] * len(days) for folder in folders}
    tokens = {folder: [0.0] * len(days) for folder in folders}
    for row in rows:
        i = days.index(row["day"]) if row["day"] in days else None
        if i is None:
            continue
        counted = tokens_of(row)
        tokens[row["folder"]][i] += counted.input_tokens + counted.output_tokens + \
            counted.cache_creation_input_tokens + counted.cache_read_input_tokens
        cost[row["folder"]][i] += prices.cost(row["model"], counted) or 0.0
    spend = report.usage
    left = {"day": None if spend is None or spend.daily_budget_usd is None else
            max(0.0, spend.daily_budget_usd - spend.today_usd),
            "month": None if spend is None or spend.monthly_budget_usd is None else
            max(0.0, spend.monthly_budget_usd - spend.month_usd)}
    return {"spend_chart": stacked_bars(days, cost, "$"), "token_chart": stacked_bars(days, tokens, "tokens"),
            "by_group": by_group, "spend": spend, "left": left, "since": days[0], "group_caps": group_caps}


def _group_caps(settings: Settings, log: EventLog, prices: PriceTable) -> list[dict[str, Any]]:
    """Each group's own caps with what is spent and left, counted as the caps are enforced (rules/budgets.py)."""
    now = datetime.now(timezone.utc)
    found = []
    for group in list_groups(log):
        for cap in caps_of(settings, group):
            if cap.scope != "group":
                continue
            since, until = period_bounds(cap.period, now)
            spent = spent_usd(log, prices, since, group.folder)
            found.append({"folder": group.folder, "period": cap.period, "limit": cap.limit_usd, "spent": spent,
                          "left": max(0.0, cap.limit_usd - spent), "until": until})
    return found


CONVERSATION_EVENTS = 200
CONVERSATION_TYPES = [t.MessageReceived, t.OutboundQueued, t.OutboundSent, t.OutboundFailed, t.AgentRunStarted,
                      t.AgentRunFinished]


def _conversation(settings: Settings, args: dict) -> dict[str, Any]:
    """A group's last messages, replies and runs, oldest first; each message opens its story."""
    with _reading(settings) as log:
        group = group_by_folder(log, args["folder"])
        if group is None:
            raise NotFound(f"no group has the folder {args['folder']!r}")
        records = log.read_since(0, types=CONVERSATION_TYPES, streams=[group.jid, group.folder],
                                 limit=CONVERSATION_EVENTS, newest=True)
        groups = list_groups(log)
    return {"group": group, "records": sorted(records, key=lambda r: r.seq), "groups": groups}


def _story(settings: Settings, args: dict) -> dict[str, Any]:
    with _reading(settings) as log:
        try:
            return {"story": tell(log, settings, args["seq"])}
        except WhyError as exc:
            raise NotFound(str(exc)) from None


RUNS_SHOWN = 50


def _runs(settings: Settings, _: dict) -> dict[str, Any]:
    """The last runs: how long, how they ended, their model calls and tokens."""
    with _reading(settings) as log:
        finished = log.read_since(0, types=[t.AgentRunFinished], limit=RUNS_SHOWN, newest=True)
        calls: dict[str, list] = {}
        if finished:
            first = min(r.seq for r in finished)
            started = log.read_since(0, types=[t.AgentRunStarted], before_seq=first, limit=RUNS_SHOWN,
                                     newest=True)
            after = min([first, *(r.seq for r in started)]) - 1
            for record in log.read_since(after, types=[t.ModelCalled], limit=None):
                calls.setdefault(record.event.run_id, []).append(record.event)
    runs = []
    for record in finished:
        run = record.event
        made = calls.get(run.run_id, [])
        runs.append({"at": record.at, "seq": record.seq, "run": run, "calls": len(made),
                     "tokens": sum((c.input_tokens or 0) + (c.output_tokens or 0) for c in made)})
    return {"runs": runs}


LOG_SHOWN_BYTES = 512 * 1024


def _run_log(settings: Settings, args: dict) -> dict[str, Any]:
    """A run's log as the worker wrote it under logs/runs/ (the host's folder; no agent writes there)."""
    with _reading(settings) as log:
        record = log.get(int(args["seq"]))
    if record is None or not isinstance(record.event, t.AgentRunFinished) or not record.event.log_file:
        raise NotFound(f"no run with a log at seq {args['seq']}")
    runs = (settings.logs_dir / "runs").resolve()
    path = (settings.logs_dir / record.event.log_file).resolve()
    if not path.is_relative_to(runs) or not path.is_file():
        raise NotFound(f"the run's log logs/{record.event.log_file} is gone (logs are cleaned up after a while)")
    with open(path, "rb") as file:
        text = file.read(LOG_SHOWN_BYTES).decode("utf-8", errors="replace")
    return {"run": record.event, "text": text}


EGRESS_SHOWN = 200


def _egress(settings: Settings, _: dict) -> dict[str, Any]:
    """Where each group's agents went, or were stopped going, newest first."""
    with _reading(settings) as log:
        checked = log.read_since(0, types=[t.EgressChecked], limit=EGRESS_SHOWN, newest=True)
    return {"checked": [(r.at, r.event) for r in checked]}


ACTIONS = {"active": ("pause", "cancel"), "paused": ("resume", "cancel"), "completed": ("cancel",)}
NAV = [("/", "Overview"), ("/runs", "Runs"), ("/usage", "Usage"), ("/tasks", "Tasks"), ("/egress", "Egress")]
PAGES: dict[str, Page] = {"/": Page("Overview", "overview.html", _overview),
                          "/groups/{folder}": Page("Conversation", "conversation.html", _conversation),
                          "/messages/{seq:[0-9]+}": Page("Message", "story.html", _story),
                          "/runs": Page("Runs", "runs.html", _runs),
                          "/runs/{seq:[0-9]+}/log": Page("Runs", "run_log.html", _run_log),
                          "/usage": Page("Usage", "usage.html", _usage),
                          "/tasks": Page("Tasks", "tasks.html", _tasks),
                          "/egress": Page("Egress", "egress.html", _egress)}


def refused_page(bad_token: bool = False) -> str:
    return _ENV.get_template("refused.html").render(bad_token=bad_token)


def not_found_page(what: str) -> str:
    return _ENV.get_template("refused.html").render(not_found=what)
