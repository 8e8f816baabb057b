"""The host/runner contract: both halves declare the same thing, and the stdout parser reads it.

jobs/contract.py is the host's half; agent-container/agent_runner/protocol.py,
loaded here by path as the image runs it, is the container's. A field,
type, default or marker that differs fails with the difference named.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import io
import json
import sys
import types
import typing
from pathlib import Path

import msgspec
import pytest

from base.config import AGENT_PROVIDERS
from events import types as t
from jobs.contract import OUTPUT_END, OUTPUT_START, AgentInput, AgentResult, OutputParser
from jobs.gateway import RunAccess

AGENT_RUNNER = Path(__file__).resolve().parents[1] / "agent-container" / "agent_runner"


def _load(path: Path) -> types.ModuleType:
    """A module of the runner as the image imports it, without putting agent_runner on sys.path."""
    spec = importlib.util.spec_from_file_location(f"runner_side_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses and get_type_hints find a class's module by name
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def runner():
    module = _load(AGENT_RUNNER / "protocol.py")
    yield module
    sys.modules.pop(module.__name__, None)


def _classes(annotation) -> set[type]:
    """The classes a value of `annotation` may have: `str | None` is {str, NoneType}."""
    union = typing.get_origin(annotation) in (typing.Union, types.UnionType)
    return {typing.get_origin(arg) or arg for arg in (typing.get_args(annotation) if union else (annotation,))}


def _default(field: msgspec.structs.FieldInfo):
    if field.default_factory is not msgspec.NODEFAULT:
        return field.default_factory()
    return None if field.default is msgspec.NODEFAULT else field.default


def _dataclass_default(field: dataclasses.Field):
    if field.default_factory is not dataclasses.MISSING:
        return field.default_factory()
    return None if field.default is dataclasses.MISSING else field.default


def _differences(host: dict[str, tuple], runner: dict[str, tuple], aspects: tuple[str, ...]) -> list[str]:
    found = [f"field {name!r} is only on the host" for name in host.keys() - runner.keys()]
    found += [f"field {name!r} is only in the runner" for name in runner.keys() - host.keys()]
    for name in host.keys() & runner.keys():
        for aspect, ours, theirs in zip(aspects, host[name], runner[name]):
            if ours != theirs:
                found.append(f"field {name!r}: {aspect} {ours!r} on the host, {theirs!r} in the runner")
    return sorted(found)


def test_the_runner_reads_the_input_fields_the_host_writes_with_the_same_types_and_defaults(runner):
    host = {f.encode_name: (_classes(f.type), f.required, _default(f)) for f in msgspec.structs.fields(AgentInput)}
    defaults = {f.name: _dataclass_default(f) for f in dataclasses.fields(runner.RunnerInput)}
    theirs = {key: (set(accepted), required, defaults[attr])
              for key, (attr, accepted, required) in runner.INPUT_FIELDS.items()}
    problems = _differences(host, theirs, ("types", "required", "default"))
    assert not problems, "AgentInput and the runner's INPUT_FIELDS differ:\n" + "\n".join(problems)


def test_the_host_reads_the_output_fields_the_runner_writes_with_the_same_types_and_defaults(runner):
    host = {f.encode_name: (f.type, _default(f)) for f in msgspec.structs.fields(AgentResult)}
    hints = typing.get_type_hints(runner.RunnerOutput)
    theirs = {f.name: (hints[f.name], _dataclass_default(f)) for f in dataclasses.fields(runner.RunnerOutput)}
    problems = _differences(host, theirs, ("type", "default"))
    assert not problems, "AgentResult and the runner's RunnerOutput differ:\n" + "\n".join(problems)


def test_both_sides_frame_outputs_with_the_same_markers(runner):
    host, theirs = (OUTPUT_START, OUTPUT_END), (runner.OUTPUT_START, runner.OUTPUT_END)
    assert host == theirs, f"output markers differ: {host} on the host, {theirs} in the runner"


def test_the_runner_accepts_exactly_the_providers_the_settings_allow(runner):
    assert runner.PROVIDERS == AGENT_PROVIDERS, \
        f"providers differ: AGENT_PROVIDERS {AGENT_PROVIDERS} on the host, PROVIDERS {runner.PROVIDERS} in the runner"


def test_the_agents_tools_offer_the_schedule_kinds_and_context_modes_the_host_accepts():
    schema = _load(AGENT_RUNNER / "tool_specs.py").TOOL_SPECS["schedule_task"].schema["properties"]
    offered = (tuple(schema["schedule_type"]["enum"]), tuple(schema["context_mode"]["enum"]))
    accepted = (typing.get_args(t.ScheduleType), typing.get_args(t.ContextMode))
    assert offered == accepted, f"the schedule_task tool offers {offered}, the host accepts {accepted}"


def test_the_send_file_tool_checks_the_limits_the_host_applies():
    from router.actions import MAX_CAPTION_CHARS
    from rules.outbox import MAX_FILE_BYTES

    sys.path.insert(0, str(AGENT_RUNNER.parent))
    try:
        from agent_runner import tools
    finally:
        sys.path.remove(str(AGENT_RUNNER.parent))
    assert (tools.SEND_FILE_MAX_BYTES, tools.CAPTION_MAX_CHARS) == (MAX_FILE_BYTES, MAX_CAPTION_CHARS)


def test_a_request_the_host_encodes_arrives_in_the_runner_field_for_field(runner):
    access = RunAccess("run-1", "family", Path("/tmp/gateway-run-1"), "token-run-1", "open")
    sent = AgentInput(prompt="hi", groupFolder="family", chatJid="tg:1", isMain=True, assistantName="Bo",
                      sessionId="s-1", isScheduledTask=True, script="echo {}", provider="scripted",
                      scripted={"turns": []}, gateway=access.runner_field(), timezone="Europe/Berlin",
                      verbose=True)
    got = runner.parse_input(msgspec.json.encode(sent))
    for key, (attr, _, _) in runner.INPUT_FIELDS.items():
        if key != "gateway":
            assert getattr(got, attr) == getattr(sent, key), key
    gateway = got.gateway
    assert {"token": gateway.token, "socketDir": gateway.socket_dir, "apiPort": gateway.api_port,
            "proxyPort": gateway.proxy_port} == access.runner_field()


def test_what_the_runner_prints_the_host_reads_back(runner):
    stream = io.BytesIO()
    out = runner.Emitter(stream, inputs=lambda: ["1000-a.json"])
    out.success("first")
    out.session_id = "s-2"
    out.error("it broke")
    assert OutputParser().feed(stream.getvalue()) == [
        AgentResult("success", "first", inputs=["1000-a.json"]),
        AgentResult("error", None, "s-2", "it broke", ["1000-a.json"]),
    ]


# --- the stdout parser, however the container's stdout is cut into chunks ---


def framed(payload: dict | str) -> bytes:
    body = payload if isinstance(payload, str) else json.dumps(payload)
    return f"{OUTPUT_START}\n{body}\n{OUTPUT_END}\n".encode()


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
    assert len(parser._buffer) < len(OUTPUT_START)


@pytest.fixture
def runner_package(monkeypatch):
    """The runner's own package, imported as the image imports it (for modules that import their siblings)."""
    monkeypatch.syspath_prepend(str(AGENT_RUNNER.parent))
    import agent_runner.inbox
    import agent_runner.workspace

    yield agent_runner
    for name in [n for n in sys.modules if n == "agent_runner" or n.startswith("agent_runner.")]:
        sys.modules.pop(name)


def test_the_input_folder_is_where_the_runner_looks_and_what_the_host_writes_the_runner_reads(
        settings, runner_package):
    from rules import ipc_folder

    assert runner_package.inbox.CLOSE_SENTINEL == ipc_folder.CLOSE_SENTINEL
    workspace = runner_package.workspace.Workspace(Path("/workspace"))
    # the host mounts data/ipc/<folder>/<name> at /workspace/ipc/<name> (jobs/workspace.base_mounts)
    assert workspace.input_dir == Path("/workspace/ipc") / ipc_folder.INPUT_DIR
    written = [ipc_folder.write_input(settings, "main", f"follow-up {n}") for n in range(50)]  # within ms
    inbox = runner_package.inbox.Inbox(ipc_folder.input_dir(settings, "main"))
    assert inbox.drain() == [f"follow-up {n}" for n in range(50)]  # read in the order they were written
    assert inbox.take_consumed() == [path.name for path in written]
    assert not inbox.close_requested()
    assert ipc_folder.request_close(settings, "main")
    assert inbox.close_requested()
