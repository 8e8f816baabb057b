"""The marker protocol, however the container's stdout is cut into chunks."""

from __future__ import annotations

import json

import pytest

from jobs.output_parser import END_MARKER, START_MARKER, AgentResult, OutputParser


def framed(payload: dict | str) -> bytes:
    body = payload if isinstance(payload, str) else json.dumps(payload)
    return START_MARKER + b"\n" + body.encode() + b"\n" + END_MARKER + b"\n"


STREAM = (
    b"noise before anything\n"
    + framed({"status": "success", "result": "<internal>x</internal>Yes.", "newSessionId": "s1"})
    + b"---NANOCLAW_OUTPUT_ more noise\n"
    + framed({"status": "success", "result": None})
    + framed({"status": "error", "result": None, "error": "boom"})
)
EXPECTED = [
    AgentResult("success", "<internal>x</internal>Yes.", "s1"),
    AgentResult("success", None),
    AgentResult("error", None, error="boom"),
]


def test_one_read_with_several_results_and_garbage():
    assert OutputParser().feed(STREAM) == EXPECTED


@pytest.mark.parametrize("size", [1, 2, 3, 7, 13, 64])
def test_results_split_across_reads_of_any_size(size):
    parser = OutputParser()
    found = []
    for start in range(0, len(STREAM), size):
        found += parser.feed(STREAM[start : start + size])
    assert found == EXPECTED


def test_a_result_is_reported_as_soon_as_its_end_marker_arrives():
    parser = OutputParser()
    whole = framed({"status": "success", "result": "hi"})
    assert parser.feed(whole[:-3]) == []
    assert parser.feed(whole[-3:]) == [AgentResult("success", "hi")]


def test_a_megabyte_result_survives():
    text = "x" * (1 << 20)
    parser = OutputParser()
    data = framed({"status": "success", "result": text})
    found = []
    for start in range(0, len(data), 65536):
        found += parser.feed(data[start : start + 65536])
    assert [len(r.result) for r in found] == [1 << 20]


@pytest.mark.parametrize("body", ["not json", '{"status": "maybe"}', '{"result": "no status"}', "[1, 2]"])
def test_an_unreadable_result_is_skipped_and_remembered(body):
    parser = OutputParser()
    found = parser.feed(framed(body) + framed({"status": "success", "result": "after"}))
    assert found == [AgentResult("success", "after")]
    assert len(parser.malformed) == 1


def test_garbage_without_markers_does_not_grow_the_buffer():
    parser = OutputParser()
    for _ in range(1000):
        parser.feed(b"x" * 1000)
    assert len(parser._buffer) < len(START_MARKER)
