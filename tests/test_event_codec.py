"""Every event type survives encode -> store -> decode unchanged."""

from __future__ import annotations

import tempfile
from pathlib import Path

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings as hsettings, strategies as st

from events import EventDecodeError, EventLog, types as t
from events.rules import RESERVED_FOLDERS

_json_scalar = st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.text(max_size=20)
_json = st.recursive(_json_scalar, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3), max_leaves=8)

st.register_type_strategy(msgspec.UnsetType, st.just(msgspec.UNSET))


def _field_strategy(field: msgspec.structs.FieldInfo) -> st.SearchStrategy:
    if field.name == "payload":
        return st.dictionaries(st.text(max_size=10), _json, max_size=4)
    if field.name == "folder":  # a folder the log's rules accept (events/rules.py), as every recorded one is
        return st.from_regex(r"\A[a-z0-9][a-z0-9_-]{0,20}\Z").filter(lambda f: f not in RESERVED_FOLDERS)
    return st.from_type(field.type)


def event_strategy(cls: type[msgspec.Struct]) -> st.SearchStrategy:
    fields = msgspec.structs.fields(cls)
    return st.builds(cls, **{f.name: _field_strategy(f) for f in fields})


st.register_type_strategy(int, st.integers(-(2**63), 2**63 - 1))
st.register_type_strategy(float, st.floats(allow_nan=False, allow_infinity=False))  # durations: JSON has no NaN
st.register_type_strategy(t.MountRequest, st.deferred(lambda: event_strategy(t.MountRequest)))
st.register_type_strategy(t.ContainerConfig, st.deferred(lambda: event_strategy(t.ContainerConfig)))


@pytest.mark.parametrize("cls", list(t.EVENT_TYPES.values()), ids=list(t.EVENT_TYPES))
def test_every_event_type_round_trips_through_json(cls):
    @hsettings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(event_strategy(cls))
    def check(event):
        assert t.decode(t.encode(event)) == event

    check()


@pytest.mark.parametrize("cls", list(t.EVENT_TYPES.values()), ids=list(t.EVENT_TYPES))
def test_every_event_type_has_a_docstring_and_a_stream(cls):
    assert cls.__doc__ and cls.__doc__.strip()
    assert cls.STREAM in {f.name for f in msgspec.structs.fields(cls)}


@hsettings(max_examples=10, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.tuples(*[event_strategy(cls) for cls in t.EVENT_TYPES.values()]))
def test_events_round_trip_through_the_log(tmp_path, samples):
    with tempfile.TemporaryDirectory(dir=tmp_path) as scratch:
        log = EventLog(Path(scratch) / "messages.db")
        try:
            for event in samples:
                log.append(event)
            stored = [r.event for r in log.read_since(0, limit=None)]
        finally:
            log.close()
    assert stored == list(samples)


def test_the_type_tag_is_the_class_name():
    event = t.SessionCleared(folder="main", reason="stale")
    assert msgspec.json.decode(t.encode(event))["type"] == "SessionCleared"


def test_a_row_that_fails_to_decode_is_an_error_naming_its_seq(log: EventLog):
    log.append(t.SessionCleared(folder="main", reason="ok"))
    # Inserts are allowed at the SQL level, so a foreign writer can plant a bad row.
    log._writer.execute(
        "INSERT INTO events (at, type, stream, data) VALUES ('x', 'SessionCleared', 'main', '{\"type\":\"SessionCleared\"}')"
    )
    with pytest.raises(EventDecodeError) as err:
        log.read_since(0)
    assert err.value.seq == 2
    assert "seq 2" in str(err.value) and "missing required field" in str(err.value)


def test_a_row_whose_type_column_disagrees_with_its_data_is_refused(log: EventLog):
    data = t.encode(t.SessionCleared(folder="main", reason="ok"))
    log._writer.execute(
        "INSERT INTO events (at, type, stream, data) VALUES ('x', 'SessionUpdated', 'main', ?)", (data,)
    )
    with pytest.raises(EventDecodeError, match="seq 1"):
        log.get(1)
