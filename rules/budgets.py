"""Spending caps: a group whose budget is used up starts no run until the period ends.

Caps are in USD per UTC day and month, for every group together
(`DAILY_BUDGET_USD`, `MONTHLY_BUDGET_USD`) and for one group (`nanoclaw
groups set FOLDER --daily-budget USD --monthly-budget USD`). Spend is the
estimate of rules/prices.py over the `usage` projection of the gateway's
model calls; a model without a price counts at the dearest price in the
table (the agent picks the model, so that is no way around a cap). A run is refused
once spend has reached a cap (a run's own cost is not known before it
runs); the messages stay in the log, and the 60 s pass asks for the run
again, which starts once the period has ended or the cap was raised. Each
cap reached is one `BudgetReached` event and one notice in the chat.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from loguru import logger

from base.config import Settings
from events import Transaction, types as t
from events.queries import Group, usage_since
from rules.notices import tell_budget
from rules.prices import PriceTable
from rules.usage import tokens_of


@dataclass(frozen=True)
class Cap:
    scope: str      # group or all
    period: str     # day or month
    limit_usd: float


def caps_of(settings: Settings, group: Group) -> list[Cap]:
    config = group.container_config or t.ContainerConfig()
    found = [Cap("group", "day", config.daily_budget_usd), Cap("group", "month", config.monthly_budget_usd),
             Cap("all", "day", settings.daily_budget_usd), Cap("all", "month", settings.monthly_budget_usd)]
    return [cap for cap in found if cap.limit_usd is not None]


def period_bounds(period: str, now: datetime) -> tuple[str, str]:
    """(first UTC day of the period, ISO time the period ends)."""
    day = now.astimezone(timezone.utc).date()
    if period == "day":
        start, end = day, day + timedelta(days=1)
    else:
        start = day.replace(day=1)
        end = (start + timedelta(days=32)).replace(day=1)
    return start.isoformat(), f"{end.isoformat()}T00:00:00.000Z"


def spent_usd(tx: Transaction, prices: PriceTable, since_day: str, folder: str | None) -> float:
    return sum(prices.cost_at_most(row["model"], tokens_of(row)) for row in usage_since(tx, since_day, folder))


def reached_cap(tx: Transaction, settings: Settings, group: Group,
                now: datetime | None = None) -> t.BudgetReached | None:
    """The first cap the group's spend has reached, as the event to record; None when it may run."""
    caps = caps_of(settings, group)
    if not caps:
        return None
    prices = PriceTable.load_or_defaults(settings.config_dir)
    now = now or datetime.now(timezone.utc)
    for cap in caps:
        since, until = period_bounds(cap.period, now)
        spent = spent_usd(tx, prices, since, group.folder if cap.scope == "group" else None)
        if spent >= cap.limit_usd:
            return t.BudgetReached(folder=group.folder, scope=cap.scope, period=cap.period,  # type: ignore[arg-type]
                                   limit_usd=cap.limit_usd, spent_usd=round(spent, 4), until=until)
    return None


def refuse_if_over(tx: Transaction, settings: Settings, group: Group, chat_jid: str | None = None) -> str | None:
    """Record a reached cap (once) and tell the chat; returns why the run does not start, or None."""
    reached = reached_cap(tx, settings, group)
    if reached is None:
        return None
    appended = tx.append(reached, key=budget_key(reached))
    if appended.created:
        tell_budget(tx, settings, group, reached, chat_jid or group.jid, appended.seq)
        logger.warning("{}: the {} budget of ${:.2f} ({}) is used up (${:.2f}); no run until {}", group.folder,
                       reached.period, reached.limit_usd, reached.scope, reached.spent_usd, reached.until)
    return f"budget reached: the {reached.period} cap of ${reached.limit_usd:.2f} ({reached.scope}) until {reached.until}"


def budget_key(event: t.BudgetReached) -> str:
    """Once per group, cap and period: the same cap reached again next month is a new event."""
    return f"budget:{event.folder}:{event.scope}:{event.period}:{event.limit_usd}:{event.until}"
