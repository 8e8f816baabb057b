"""How much the agents used: model calls, tokens and an estimated cost, from the log.

Every call an agent makes goes through the credential gateway and becomes a
`ModelCalled` event; the `usage` projection sums them per UTC day, group and
model. This module reads that table for `nanoclaw usage` and `status`, and
prices it with rules/prices.py.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Literal

import msgspec

from events import EventLog
from events.queries import usage_since
from rules.prices import PriceTable, Tokens

By = Literal["group", "day", "model"]
COLUMN = {"group": "folder", "day": "day", "model": "model"}


class UsageRow(msgspec.Struct, kw_only=True):
    key: str                      # the group's folder, the day, or the model
    calls: int
    failed: int
    input_tokens: int
    output_tokens: int
    cache_creation_input_tokens: int
    cache_read_input_tokens: int
    cost_usd: float | None        # None when a model in the row has no price
    unpriced_models: list[str] = []


class Spend(msgspec.Struct, kw_only=True):
    today_usd: float
    month_usd: float
    today_tokens: int
    month_tokens: int
    unpriced_models: list[str] = []   # used, but not in the price table: not counted in the sums
    daily_budget_usd: float | None = None     # the caps for every group together, if set
    monthly_budget_usd: float | None = None


def utc_day(offset_days: int = 0, now: datetime | None = None) -> str:
    moment = (now or datetime.now(timezone.utc)) + timedelta(days=offset_days)
    return moment.strftime("%Y-%m-%d")


def usage_by(log: EventLog, prices: PriceTable, by: By, since_day: str, folder: str | None = None) -> list[UsageRow]:
    """Rows of usage from `since_day` (UTC, inclusive), grouped by group, day or model."""
    rows = usage_since(log, since_day, folder, first_by=COLUMN[by])
    grouped: dict[str, list] = {}
    for row in rows:
        grouped.setdefault(row[COLUMN[by]] or "(unknown model)", []).append(row)
    return [_summed(key, members, prices) for key, members in grouped.items()]


def _summed(key: str, rows: list, prices: PriceTable) -> UsageRow:
    total = UsageRow(key=key, calls=0, failed=0, input_tokens=0, output_tokens=0, cache_creation_input_tokens=0,
                     cache_read_input_tokens=0, cost_usd=0.0)
    for row in rows:
        for name in ("calls", "failed", "input_tokens", "output_tokens", "cache_creation_input_tokens",
                     "cache_read_input_tokens"):
            setattr(total, name, getattr(total, name) + row[name])
        cost = prices.cost(row["model"], tokens_of(row))
        if cost is None:
            if tokens_of(row) != Tokens():
                total.unpriced_models = sorted({*total.unpriced_models, row["model"] or "(unknown model)"})
        elif total.cost_usd is not None:
            total.cost_usd += cost
    if total.unpriced_models:
        total.cost_usd = None
    return total


def spend(log: EventLog, prices: PriceTable, now: datetime | None = None) -> Spend:
    """Today's and this month's estimated spend (UTC days), for `status`."""
    today = utc_day(now=now)
    month_rows = usage_since(log, today[:8] + "01")
    result = Spend(today_usd=0.0, month_usd=0.0, today_tokens=0, month_tokens=0)
    unpriced: set[str] = set()
    for row in month_rows:
        tokens = tokens_of(row)
        count = tokens.input_tokens + tokens.output_tokens + tokens.cache_creation_input_tokens \
            + tokens.cache_read_input_tokens
        cost = prices.cost(row["model"], tokens)
        if cost is None and count:
            unpriced.add(row["model"] or "(unknown model)")
        result.month_usd += cost or 0.0
        result.month_tokens += count
        if row["day"] == today:
            result.today_usd += cost or 0.0
            result.today_tokens += count
    result.unpriced_models = sorted(unpriced)
    return result


def tokens_of(row) -> Tokens:
    """The token counts of one `usage` row."""
    return Tokens(row["input_tokens"], row["output_tokens"], row["cache_creation_input_tokens"],
                  row["cache_read_input_tokens"])
