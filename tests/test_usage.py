"""Usage from the gateway's ModelCalled events: the projection, `nanoclaw usage`, and `status`."""

from __future__ import annotations

import json

import msgspec
import pytest
from freezegun import freeze_time

from events import replay, types as t
from nanoclaw import cli
from nanoclaw.status import gather
from rules.prices import DEFAULT_PRICES, PRICES_FILE, ModelPrice, PriceTable, Tokens

MILLION = 1_000_000


def call(folder: str, model: str | None, *, inp=0, out=0, write=0, read=0, status=200, error=None) -> t.ModelCalled:
    return t.ModelCalled(run_id="r1", folder=folder, method="POST", path="/v1/messages", status=status,
                         duration_ms=12.5, model=model, streamed=True, input_tokens=inp, output_tokens=out,
                         cache_creation_input_tokens=write, cache_read_input_tokens=read, error=error)


@pytest.fixture
def calls(log):
    with freeze_time("2026-11-28 10:00:00"):
        log.append(call("family", "claude-sonnet-4-5-20250929", inp=MILLION, out=MILLION))
    with freeze_time("2026-12-01 09:00:00"):
        log.append(call("family", "claude-sonnet-4-5-20250929", write=MILLION, read=MILLION))
        log.append(call("main", "claude-haiku-4-5", inp=2 * MILLION))
        log.append(call("main", "claude-haiku-4-5", status=401, error="not this run's token"))
    return log


def usage_json(capsys, *args: str) -> list[dict]:
    capsys.readouterr()
    assert cli.main(["usage", "--json", *args]) == 0
    return [json.loads(line) for line in capsys.readouterr().out.splitlines()]


def test_model_calls_are_summed_per_day_group_and_model_and_rebuild_the_same(calls):
    rows = [tuple(r) for r in calls.query("SELECT * FROM usage ORDER BY day, folder, model")]
    assert rows == [
        ("2026-11-28", "family", "claude-sonnet-4-5-20250929", 1, 0, MILLION, MILLION, 0, 0),
        ("2026-12-01", "family", "claude-sonnet-4-5-20250929", 1, 0, 0, 0, MILLION, MILLION),
        ("2026-12-01", "main", "claude-haiku-4-5", 2, 1, 2 * MILLION, 0, 0, 0),
    ]
    assert replay.check(calls) == []  # the projection equals a fresh fold of the log


@freeze_time("2026-12-01 12:00:00")
def test_usage_by_group_prices_each_kind_of_token_from_the_table(calls, capsys):
    by_group = {row["key"]: row for row in usage_json(capsys, "--since", "30d")}
    # sonnet: 1M in ($3) + 1M out ($15) + 1M cache write (1.25 x $3) + 1M cache read (0.1 x $3)
    assert by_group["family"]["cost_usd"] == pytest.approx(3 + 15 + 3.75 + 0.30)
    assert by_group["main"]["cost_usd"] == pytest.approx(2 * 1.0)  # haiku 4.5: $1 per million input
    assert (by_group["main"]["calls"], by_group["main"]["failed"]) == (2, 1)


@freeze_time("2026-12-01 12:00:00")
def test_since_and_group_narrow_the_rows_and_by_day_or_model_regroups_them(calls, capsys):
    assert [r["key"] for r in usage_json(capsys, "--since", "1d")] == ["family", "main"]
    assert usage_json(capsys, "--since", "1d", "--group", "family")[0]["cost_usd"] == pytest.approx(3.75 + 0.30)
    assert [r["key"] for r in usage_json(capsys, "--by", "day")] == ["2026-11-28", "2026-12-01"]
    assert [r["key"] for r in usage_json(capsys, "--by", "model")] == ["claude-haiku-4-5", "claude-sonnet-4-5-20250929"]


@freeze_time("2026-12-01 12:00:00")
def test_a_model_without_a_price_has_no_estimate_and_the_owner_is_told_where_to_add_it(log, settings, capsys):
    log.append(call("family", "claude-future-9", inp=1000))
    [row] = usage_json(capsys)
    assert row["cost_usd"] is None and row["unpriced_models"] == ["claude-future-9"]
    assert cli.main(["usage"]) == 0
    out, err = capsys.readouterr()
    assert out.splitlines()[1].split()[-1] == "?" and "claude-future-9" in err and PRICES_FILE in err


@freeze_time("2026-12-01 12:00:00")
def test_the_owners_price_file_overrides_and_extends_the_table(log, settings, capsys):
    log.append(call("family", "claude-future-9", inp=MILLION))
    settings.config_dir.mkdir(parents=True, exist_ok=True)
    (settings.config_dir / PRICES_FILE).write_text(json.dumps({"claude-future": {"input": 7, "output": 30}}))
    assert usage_json(capsys)[0]["cost_usd"] == pytest.approx(7.0)
    (settings.config_dir / PRICES_FILE).write_text('{"claude-future": {"input": -1, "output": 30}}')
    assert cli.main(["usage"]) == 1
    assert PRICES_FILE in capsys.readouterr().err


def test_the_longest_prefix_wins_and_cache_prices_default_to_the_apis_factors():
    table = PriceTable({"claude-opus-4": ModelPrice(15, 75), "claude-opus-4-5": ModelPrice(5, 25)})
    assert table.price_of("claude-opus-4-5-20251101").input == 5
    assert table.price_of("claude-opus-4-1-20250805").input == 15
    assert table.price_of("gpt-4") is None
    assert ModelPrice(2, 10).cost(Tokens(cache_creation_input_tokens=MILLION, cache_read_input_tokens=MILLION)) \
        == pytest.approx(2 * 1.25 + 2 * 0.1)


def test_a_bad_since_is_a_clear_error(settings, capsys):
    assert cli.main(["usage", "--since", "yesterday"]) == 1
    assert "7d" in capsys.readouterr().err


@freeze_time("2026-12-01 12:00:00")
def test_status_shows_todays_and_this_months_spend(calls, settings):
    usage = gather(settings).usage
    assert usage.today_usd == pytest.approx(3.75 + 0.30 + 2.0)
    assert usage.month_usd == pytest.approx(3.75 + 0.30 + 2.0)  # the 28th of November is last month
    assert msgspec.to_builtins(usage)["today_tokens"] == 4 * MILLION


def test_a_prefix_matches_only_where_a_name_part_ends():
    """claude-opus-4-1 is Opus 4.1 at $15; a later claude-opus-4-10 must get no estimate, not Opus 4.1's."""
    table = PriceTable(dict(DEFAULT_PRICES))
    assert table.price_of("claude-opus-4-10") is None
    assert table.price_of("claude-haiku-4-50-20270101") is None
    assert table.price_of("claude-opus-4-20250514").input == 15   # Opus 4 itself
    assert table.price_of("claude-opus-4-0").input == 15
    assert table.price_of("claude-opus-4-1@20250805").input == 15
    assert table.price_of("claude-sonnet-4-5-20250929").input == 3
    assert PriceTable({"claude-": ModelPrice(1, 1)}).price_of("claude-anything").input == 1  # a catch-all of the owner's


@pytest.mark.parametrize("since", ["0d", "2026-13-45"])
def test_no_days_or_a_date_that_does_not_exist_is_a_clear_error_not_an_empty_table(settings, capsys, since):
    assert cli.main(["usage", "--since", since]) == 1
    assert "7d" in capsys.readouterr().err
