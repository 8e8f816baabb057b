"""Next-run computation with Pro's rules: zones, strict values, fixed grids."""

from __future__ import annotations

import re
import time
from datetime import datetime, timezone

import pytest
from freezegun import freeze_time

from rules.schedule import ScheduleError, first_run, next_run_after_run

UTC = timezone.utc
ISO_SHAPE = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$")


def at(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


# --- cron ---------------------------------------------------------------------------


def test_cron_is_evaluated_in_the_configured_time_zone():
    assert first_run("cron", "0 9 * * *", tz="Europe/Berlin", now=at("2026-01-15T10:00:00Z")) \
        == "2026-01-16T08:00:00.000Z"


def test_cron_next_occurrence_is_strictly_after_now():
    assert first_run("cron", "0 9 * * *", tz="UTC", now=at("2026-01-15T09:00:00Z")) == "2026-01-16T09:00:00.000Z"
    assert first_run("cron", "0 9 * * *", tz="UTC", now=at("2026-01-15T08:59:59.999Z")) == "2026-01-15T09:00:00.000Z"


def test_cron_uses_the_tasks_own_time_zone_when_given():
    now = at("2026-07-01T00:00:00Z")
    assert first_run("cron", "0 9 * * *", tz="America/New_York", now=now) == "2026-07-01T13:00:00.000Z"
    assert first_run("cron", "0 9 * * *", tz="Asia/Tokyo", now=now) == "2026-07-02T00:00:00.000Z"


def test_cron_weekday_names_and_steps_are_standard():
    now = at("2026-01-01T12:00:00Z")  # a Thursday
    assert first_run("cron", "0 9 * * MON", tz="UTC", now=now) == "2026-01-05T09:00:00.000Z"
    assert first_run("cron", "*/15 * * * *", tz="UTC", now=now) == "2026-01-01T12:15:00.000Z"


def test_cron_aliases_expand_to_five_fields():
    assert first_run("cron", "@daily", tz="UTC", now=at("2026-01-01T12:00:00Z")) == "2026-01-02T00:00:00.000Z"


@pytest.mark.parametrize("value", [
    "*/5 * * * * *",  # six fields: v1 read seconds first, croniter seconds last; Pro accepts neither
    "0 9 * *",
    "60 * * * *",
    "0 25 * * *",
    "every day",
    "",
    "0 0 31 2 *",  # never matches
])
def test_invalid_cron_is_refused(value):
    with pytest.raises(ScheduleError):
        first_run("cron", value, tz="UTC", now=at("2026-01-01T00:00:00Z"))


def test_a_fixed_hour_cron_runs_once_when_clocks_go_back():
    # 2026-11-01 01:30 happens twice in New York; classic cron runs a 01:30 job once.
    first = first_run("cron", "30 1 * * *", tz="America/New_York", now=at("2026-11-01T04:00:00Z"))
    assert first == "2026-11-01T05:30:00.000Z"
    after = next_run_after_run("cron", "30 1 * * *", tz="America/New_York", previous_due=first,
                               now=at("2026-11-01T05:31:00Z"))
    assert after == "2026-11-02T06:30:00.000Z"


def test_an_every_hour_cron_keeps_running_through_the_repeated_hour():
    after = next_run_after_run("cron", "30 * * * *", tz="America/New_York", previous_due=None,
                               now=at("2026-11-01T05:31:00Z"))
    assert after == "2026-11-01T06:30:00.000Z"


# --- interval -----------------------------------------------------------------------------


def test_interval_is_whole_milliseconds_from_now():
    assert first_run("interval", "300000", tz="UTC", now=at("2026-01-01T10:00:00.250Z")) \
        == "2026-01-01T10:05:00.250Z"


@pytest.mark.parametrize("value", ["5m", "0", "-5", "1.5", " 300", "1e3", "", "abc", "999999999999999999"])
def test_invalid_interval_is_refused_not_read_leniently(value):
    with pytest.raises(ScheduleError):
        first_run("interval", value, tz="UTC", now=at("2026-01-01T10:00:00Z"))


def test_interval_after_a_run_keeps_the_grid_and_skips_missed_slots():
    hour = "3600000"
    assert next_run_after_run("interval", hour, tz="UTC", previous_due="2026-01-01T10:00:00.000Z",
                              now=at("2026-01-01T12:30:00Z")) == "2026-01-01T13:00:00.000Z"


def test_interval_after_a_run_is_strictly_in_the_future_on_a_grid_point():
    assert next_run_after_run("interval", "3600000", tz="UTC", previous_due="2026-01-01T10:00:00.000Z",
                              now=at("2026-01-01T12:00:00Z")) == "2026-01-01T13:00:00.000Z"


def test_interval_run_before_its_due_time_moves_one_step():
    assert next_run_after_run("interval", "60000", tz="UTC", previous_due="2026-01-01T10:00:00.000Z",
                              now=at("2026-01-01T09:59:30Z")) == "2026-01-01T10:01:00.000Z"


def test_interval_without_a_previous_due_time_starts_from_now():
    assert next_run_after_run("interval", "60000", tz="UTC", previous_due=None,
                              now=at("2026-01-01T10:00:00Z")) == "2026-01-01T10:01:00.000Z"


# --- once -----------------------------------------------------------------------------------


def test_once_naive_time_is_in_the_configured_zone():
    assert first_run("once", "2026-06-01T09:00", tz="Europe/Berlin", now=at("2026-01-01T00:00:00Z")) \
        == "2026-06-01T07:00:00.000Z"
    assert first_run("once", "2026-06-01T09:00:30", tz="Europe/Berlin") == "2026-06-01T07:00:30.000Z"


def test_once_ignores_the_host_process_zone(monkeypatch):
    """A naive once time is in the configured (or the task's) zone, never the process's TZ."""
    monkeypatch.setenv("TZ", "America/Los_Angeles")
    time.tzset()
    try:
        assert first_run("once", "2026-06-01T09:00", tz="Europe/Berlin") == "2026-06-01T07:00:00.000Z"
    finally:
        monkeypatch.delenv("TZ")
        time.tzset()


def test_once_explicit_offset_or_z_is_honoured():
    assert first_run("once", "2026-06-01T09:00:00Z", tz="Europe/Berlin") == "2026-06-01T09:00:00.000Z"
    assert first_run("once", "2026-06-01T09:00+05:30", tz="Europe/Berlin") == "2026-06-01T03:30:00.000Z"
    assert first_run("once", "2026-06-01T09:00:00.123Z", tz="UTC") == "2026-06-01T09:00:00.123Z"


def test_once_in_the_past_is_accepted_and_due_at_once():
    assert first_run("once", "2020-01-01T00:00", tz="UTC", now=at("2026-01-01T00:00:00Z")) \
        == "2020-01-01T00:00:00.000Z"


@pytest.mark.parametrize("value", ["2026-06-01", "tomorrow", "2026-13-01T09:00", "2026-06-01T25:00",
                                   "01/06/2026 09:00", "2026-06-01T09:00 Europe/Berlin", ""])
def test_invalid_once_is_refused(value):
    with pytest.raises(ScheduleError):
        first_run("once", value, tz="UTC")


def test_once_after_its_run_is_never_due_again():
    assert next_run_after_run("once", "2026-06-01T09:00", tz="UTC", previous_due="2026-06-01T09:00:00.000Z",
                              now=at("2026-06-01T09:01:00Z")) is None


# --- general --------------------------------------------------------------------------------


def test_cron_after_a_run_does_not_replay_missed_slots():
    """Down for three days: one catch-up run, then the next slot after now."""
    assert next_run_after_run("cron", "0 9 * * *", tz="UTC", previous_due="2026-01-01T09:00:00.000Z",
                              now=at("2026-01-04T12:00:00Z")) == "2026-01-05T09:00:00.000Z"


def test_unknown_schedule_type_and_unknown_zone_are_refused():
    with pytest.raises(ScheduleError, match="schedule_type"):
        first_run("weekly", "x", tz="UTC")
    with pytest.raises(ScheduleError, match="time zone"):
        first_run("cron", "0 9 * * *", tz="Mars/Olympus")
    with pytest.raises(ScheduleError):
        next_run_after_run("hourly", "1", tz="UTC", previous_due=None)


@freeze_time("2026-03-10T08:15:00Z")
def test_now_defaults_to_the_clock_and_output_has_the_log_shape():
    result = first_run("interval", "60000", tz="UTC")
    assert result == "2026-03-10T08:16:00.000Z"
    assert ISO_SHAPE.match(result)
    assert first_run("cron", "0 * * * *", tz="UTC") == "2026-03-10T09:00:00.000Z"
