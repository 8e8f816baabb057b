"""How the code is shaped: the figures a refactoring is judged by.

Run: .venv/bin/python bench/structure.py [--no-trace]
Static, from the syntax trees of the service's packages (everything but
`tests/` and `bench/`; `agent-container/` is the program inside the image and
is counted apart): lines, the longest function, imports written inside
functions, module import circles (in-function imports included, since they
only hide a circle), and imports that run against the layering below.
Dynamic: the files whose functions run while one message goes from the
local chat to its reply, through a real `nanoclaw run` (router and worker)
with the scripted agent in the `test` image, traced by a profile hook in
both processes; beside it, the files that run in an idle stretch as long.
"""

from __future__ import annotations

import argparse
import ast
import json
import sys
import tempfile
import textwrap
import time
from collections import defaultdict
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
HOST_PACKAGES = ("base", "events", "rules", "router", "jobs", "nanoclaw")
# Lowest first. A package may import its own layer's modules only when it is that package; router and
# jobs share a layer and must not import each other.
LAYERS = {"base": 0, "events": 1, "rules": 2, "router": 3, "jobs": 3, "nanoclaw": 4}


def host_files() -> list[Path]:
    return sorted(p for pkg in HOST_PACKAGES if (REPO / pkg).is_dir() for p in (REPO / pkg).rglob("*.py"))


def module_of(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(tree: ast.AST, modules: set[str] | dict) -> list[tuple[str, bool, int]]:
    """(imported module, written inside a function, line of the statement) for every import of a host package."""
    found: list[tuple[str, bool, int]] = []

    def visit(node: ast.AST, in_function: bool) -> None:
        for child in ast.iter_child_nodes(node):
            inner = in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
            if isinstance(child, ast.Import):
                found.extend((alias.name, in_function, child.lineno) for alias in child.names)
            elif isinstance(child, ast.ImportFrom) and child.level == 0 and child.module:
                # `from pkg import module` depends on that module (Python runs pkg/__init__ first anyway,
                # as for any import below a package); `from pkg import name` depends on pkg itself
                for alias in child.names:
                    below = f"{child.module}.{alias.name}"
                    found.append((below if below in modules else child.module, in_function, child.lineno))
            visit(child, inner)

    visit(tree, False)
    return [entry for entry in found if entry[0].split(".")[0] in HOST_PACKAGES]


def static_figures() -> dict:
    modules = {module_of(p): p for p in host_files()}
    graph: dict[str, set[str]] = defaultdict(set)
    upward: set[tuple[str, str]] = set()
    in_function = 0
    longest = ("", 0)
    lines = code_lines = 0
    for module, path in modules.items():
        source = path.read_text()
        lines += source.count("\n")
        code_lines += sum(1 for line in source.splitlines() if line.strip() and not line.strip().startswith("#"))
        tree = ast.parse(source)
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                length = node.end_lineno - node.lineno + 1
                if length > longest[1]:
                    longest = (f"{module}.{node.name}", length)
        found = imports_of(tree, modules)
        in_function += len({line for _, inner, line in found if inner})  # statements, not names
        for name, _, _ in found:
            target = name if name in modules else (name.rsplit(".", 1)[0] if name.rsplit(".", 1)[0] in modules
                                                   else None)
            if target is None or target == module:
                continue
            graph[module].add(target)
            source_pkg, target_pkg = module.split(".")[0], target.split(".")[0]
            if source_pkg != target_pkg and LAYERS[target_pkg] >= LAYERS[source_pkg]:
                upward.add((source_pkg, target_pkg))
    return {"files": len(modules), "lines": lines, "code_lines": code_lines, "longest": longest,
            "in_function_imports": in_function, "circles": _circles(graph),
            "upward": sorted(upward)}


def _circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    sys.setrecursionlimit(10_000)

    def connect(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in graph.get(node, ()):
            if nxt not in index:
                connect(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in list(graph):
        if node not in index:
            connect(node)
    return found


def container_lines() -> int:
    return sum(p.read_text().count("\n") for p in (REPO / "agent-container").rglob("*.py"))


SITECUSTOMIZE = textwrap.dedent('''
    """Installed by bench/structure.py: records which repository files run while its flag names a window."""
    import json, os, sys, threading, time
    _repo, _flag, _out = os.environ["TRACE_REPO"], os.environ["TRACE_FLAG"], os.environ["TRACE_OUT"]
    _seen, _window = {}, [None]
    def _profile(frame, event, arg):
        if event == "call" and _window[0] is not None:
            name = frame.f_code.co_filename
            if name.startswith(_repo):
                _seen.setdefault(_window[0], set()).add(name)
    def _poll():
        while True:
            try:
                with open(_flag) as f:
                    _window[0] = f.read().strip() or None
            except OSError:
                _window[0] = None
            with open(f"{_out}.{os.getpid()}", "w") as f:
                json.dump({k: sorted(v) for k, v in list(_seen.items())}, f)
            time.sleep(0.02)
    threading.setprofile(_profile)
    sys.setprofile(_profile)
    threading.Thread(target=_poll, daemon=True).start()
''')


def traced_files() -> tuple[list[str], list[str]]:
    """(files run for one message, files run in an idle stretch as long), repository-relative."""
    sys.path.insert(0, str(REPO))
    from bench.e2e import wait_reply
    from bench.jobs import fresh_root
    from router.channels.local_client import LocalChatClient
    from rules.groups import register_group
    from tests.router_process import RouterProcess

    with tempfile.TemporaryDirectory(prefix="nanoclaw-bench-structure-") as tmp:
        site = Path(tmp) / "site"
        site.mkdir()
        (site / "sitecustomize.py").write_text(SITECUSTOMIZE)
        flag, out = Path(tmp) / "window", Path(tmp) / "trace"
        settings, log = fresh_root(str(Path(tmp) / "root"))
        register_group(log, settings, jid="local:me", name="Me", folder="main", is_main=True)
        service = RouterProcess(settings, worker=True, PYTHONPATH=f"{site}:{REPO}", TRACE_REPO=str(REPO),
                                TRACE_FLAG=str(flag), TRACE_OUT=str(out)).wait_ready(timeout=60, worker_too=True)
        try:
            client = LocalChatClient(service.socket, "local:me")
            client.send("@Andy warm up")  # image layers and first-use paths, outside the windows
            wait_reply(client)
            time.sleep(2.5)  # its container idles out
            flag.write_text("message")
            started = time.monotonic()
            client.send("@Andy hello")
            wait_reply(client)
            time.sleep(1.5)  # the run's end and the reply's delivery record
            took = time.monotonic() - started
            flag.write_text("idle")
            time.sleep(took)
            flag.write_text("")
            time.sleep(0.2)
            client.close()
        finally:
            service.stop(timeout=60)
        windows: dict[str, set[str]] = defaultdict(set)
        for dump in Path(tmp).glob("trace.*"):
            for window, files in json.loads(dump.read_text() or "{}").items():
                windows[window].update(str(Path(f).relative_to(REPO)) for f in files)
        log.close()
    keep = lambda files: sorted(f for f in files if f.split("/")[0] in HOST_PACKAGES)  # noqa: E731
    return keep(windows["message"]), keep(windows["idle"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--no-trace", action="store_true", help="static figures only (no service, no Docker)")
    parser.add_argument("--list", action="store_true", help="name the files of the traced message")
    args = parser.parse_args()
    figures = static_figures()
    print(f"host packages: {figures['files']} files, {figures['lines']} lines ({figures['code_lines']} "
          f"not blank or comment); agent-container: {container_lines()} lines")
    print(f"longest function: {figures['longest'][0]} ({figures['longest'][1]} lines)")
    print(f"imports inside functions (of host modules): {figures['in_function_imports']}")
    print(f"import circles: {len(figures['circles'])}   target 0")
    for circle in figures["circles"]:
        print(f"  {' <-> '.join(circle)}")
    print(f"package arrows running upward or between equals: {len(figures['upward'])}   target 0")
    for source, target in figures["upward"]:
        print(f"  {source} -> {target}")
    if not args.no_trace:
        message, idle = traced_files()
        print(f"files whose code runs for one message, local chat to reply (host side): {len(message)}; "
              f"in an idle stretch as long: {len(idle)}; for the message alone: {len(set(message) - set(idle))}")
        if args.list:
            for name in message:
                print(f"  {name}{'' if name in idle else '  *'}")


if __name__ == "__main__":
    main()
