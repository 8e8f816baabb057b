"""Telling the person when their message cannot be answered (FAILURE_NOTICES, on by default).

A failed run whose messages got no reply leaves a notice in the chat: one
when the first attempt fails (saying it will be tried again, and when), and
one when no attempt will follow (retries used up, or a failure no retry can
fix), never one per retry. A failure in another group is also reported to
the main group, with what to do. Notices are ordinary outbound events with
their own idempotency keys, at most one per chat per NOTICE_INTERVAL_S, except
the one that ends a chain of retries, which the chat was promised. A
spending cap reached is told once per cap and period (rules/budgets.py), and
messages Slack or Discord said while the service was away but it did not
read back, once per gap (router/channels/read_back.py).
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from loguru import logger

from base.config import Settings
from base.timefmt import to_iso
from events import EventLog, Transaction, types as t
from events.queries import Group, main_group, notice_queued_since, reply_thread
from rules.failures import Kind, notice

NOTICE_INTERVAL_S = 60


def tell_failure(tx: Transaction, settings: Settings, group: Group, run_id: str, kind: Kind, *,
                 first: bool, retry_in_s: float | None) -> None:
    """Queue the notices for one failed attempt of `group`'s run, if any are due."""
    final = retry_in_s is None
    if not settings.failure_notices or not (first or final):
        return
    # The end of a chain of retries is never held back: the chat was promised another attempt.
    limit = first
    _queue(tx, group.jid, f"{run_id}-notice", notice(kind, final=final, retry_in_s=retry_in_s,
                                                     for_main=group.is_main), run_id, limit=limit)
    if not group.is_main and (main := main_group(tx)) is not None:
        _queue(tx, main.jid, f"{run_id}-notice-main",
               notice(kind, final=final, retry_in_s=retry_in_s, for_main=True, folder=group.folder), run_id,
               limit=limit)


def tell_budget(tx: Transaction, settings: Settings, group: Group, reached: t.BudgetReached, chat_jid: str,
                seq: int) -> None:
    """The chat (and main, with how to raise the cap) learns why nothing answers until the period ends."""
    whose = "this group's" if reached.scope == "group" else "the"
    every = "" if reached.scope == "group" else " for all groups"
    adjective = "daily" if reached.period == "day" else "monthly"
    text = (f"I am not answering until {reached.until[:10]} 00:00 UTC: {whose} {adjective} budget of "
            f"${reached.limit_usd:.2f}{every} is used up (${reached.spent_usd:.2f} spent). Your messages are kept.")
    flag = "--daily-budget" if reached.period == "day" else "--monthly-budget"
    setting = "DAILY_BUDGET_USD" if reached.period == "day" else "MONTHLY_BUDGET_USD"
    raise_it = (f" To raise it: nanoclaw groups set {group.folder} {flag} USD" if reached.scope == "group"
                else f" To raise it: {setting} in .env, then restart")
    mains = [main.jid] if (main := main_group(tx)) is not None else []
    if not settings.failure_notices:
        return
    _queue(tx, chat_jid, f"budget-{seq}", text + (raise_it + "." if chat_jid in mains else ""), None, limit=False)
    for jid in mains:
        if jid != chat_jid:
            # a cap for every group is reached by every group at once: main hears of it once per period
            main_id = f"budget-all-{reached.period}-{reached.until}" if reached.scope == "all" else f"budget-{seq}-main"
            _queue(tx, jid, main_id, f"In {group.folder}: {text}{raise_it}.", None, limit=False)


def tell_unread(log: EventLog, settings: Settings, jid: str, outbound_id: str, text: str) -> None:
    """The chat learns that messages said while the service was away were not read back (once: the id is
    the gap's)."""
    if settings.failure_notices:
        with log.transaction() as tx:
            _queue(tx, jid, outbound_id, text, None, limit=False)


def _queue(tx: Transaction, jid: str, outbound_id: str, text: str, run_id: str | None, *,
           limit: bool = True) -> None:
    since = to_iso(datetime.now(timezone.utc) - timedelta(seconds=NOTICE_INTERVAL_S))
    if limit and notice_queued_since(tx, jid, since):
        logger.info("{}: a failure notice was sent less than {} s ago; not another", jid, NOTICE_INTERVAL_S)
        return
    tx.append(t.OutboundQueued(outbound_id=outbound_id, chat_jid=jid, text=text, origin="notice", run_id=run_id,
                               thread_id=reply_thread(tx, jid)), key=f"out:{outbound_id}")
