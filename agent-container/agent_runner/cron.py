"""A 5-field cron syntax check for the scheduling tools.

The image has no cron library and the runner only has to refuse what the
host would refuse: it validates, it never computes run times.
Accepted per field: `*`, numbers, names (months and weekdays), ranges
`a-b`, steps `*/n` and `a-b/n` and `a/n`, and comma lists of those.
"""

from __future__ import annotations

MONTHS = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
WEEKDAYS = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")

# (low, high, names mapped to numbers)
_FIELDS: tuple[tuple[int, int, dict[str, int]], ...] = (
    (0, 59, {}),  # minute
    (0, 23, {}),  # hour
    (1, 31, {}),  # day of month
    (1, 12, {name: i + 1 for i, name in enumerate(MONTHS)}),  # month
    (0, 7, {name: i for i, name in enumerate(WEEKDAYS)}),  # day of week (0 and 7 = Sunday)
)


def is_valid_cron(expression: str) -> bool:
    """True when `expression` is a well-formed 5-field cron expression."""
    fields = expression.split()
    if len(fields) != len(_FIELDS):
        return False
    return all(_valid_field(text, *spec) for text, spec in zip(fields, _FIELDS))


def _valid_field(text: str, low: int, high: int, names: dict[str, int]) -> bool:
    return all(_valid_item(item, low, high, names) for item in text.split(","))


def _valid_item(item: str, low: int, high: int, names: dict[str, int]) -> bool:
    base, slash, step = item.partition("/")
    if slash and not (_is_number(step) and int(step) > 0):
        return False
    if base == "*":
        return True
    first, dash, last = base.partition("-")
    start = _value(first, low, high, names)
    if start is None:
        return False
    if not dash:
        return True
    end = _value(last, low, high, names)
    return end is not None and start <= end


def _value(text: str, low: int, high: int, names: dict[str, int]) -> int | None:
    if _is_number(text):
        number = int(text)
        return number if low <= number <= high else None
    return names.get(text.lower())


def _is_number(text: str) -> bool:
    return text.isascii() and text.isdigit()
