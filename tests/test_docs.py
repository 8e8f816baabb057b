"""The maintainer's documentation stays true to the code it describes.

docs/events.md has one row per event type and none for a type that is gone;
every module path and test that docs/ or the README names exists; and no file
points at documents kept outside the repository. PENDING holds what this issue
is making now: it may be named before it exists, and leaves the list once it does.
"""

from __future__ import annotations

import ast
import re
import subprocess
from pathlib import Path

from events.types import EVENT_TYPES

REPO = Path(__file__).resolve().parents[1]
DOCS = [*sorted((REPO / "docs").glob("*.md")), REPO / "README.md"]
CATALOGUE = REPO / "docs" / "events.md"

# Named by the docs before they exist; the lead empties this list as they land.
PENDING: list[str] = []

# `dir/file.py` or `dir/file.sh`, optionally `::test_name`; not a glob, a placeholder or a home path
REPO_PATH = re.compile(r"(?<![\w./~*<>$-])((?:[\w-]+/)+[\w-]+\.(?:py|sh))(?:::(\w+))?(?![\w*])")
CATALOGUE_ROW = re.compile(r"^\| `(\w+)` \|", re.M)
# Pointers at the behaviour and design documents that live beside the repository, never in it.
# Spelled in pieces so that this file does not match itself.
OUTSIDE = re.compile("|".join((
    r"\bS" r"PEC\b",
    r"\bDESIGN" r"\.md\b",
    r"(?i:\bpitfall" r"s? +#?\d)",
    r"(?i:\bdifference" r"s? +#?\d)",
)))


def repo_paths(text: str) -> list[tuple[str, str | None]]:
    """The repository paths a text names: (path, test function or None)."""
    return [(match.group(1), match.group(2)) for match in REPO_PATH.finditer(text)]


def functions_in(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return {node.name for node in ast.walk(tree) if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))}


def repo_files() -> list[Path]:
    """Every file of the repository, committed or new, that git does not ignore."""
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=REPO,
                            capture_output=True, check=True).stdout.decode("utf-8", "surrogateescape")
    return [REPO / name for name in sorted(set(listed.split("\0"))) if name and (REPO / name).is_file()]


def text_of(path: Path) -> str | None:
    data = path.read_bytes()
    if b"\0" in data:
        return None
    return data.decode("utf-8", "replace")


def catalogue_rows() -> list[str]:
    return CATALOGUE_ROW.findall(CATALOGUE.read_text(encoding="utf-8"))


def named_in_docs() -> list[tuple[str, str, str | None]]:
    """(document, path, test) for every repository path the docs and the README name."""
    return [(doc.relative_to(REPO).as_posix(), path, test)
            for doc in DOCS for path, test in repo_paths(doc.read_text(encoding="utf-8"))]


def test_the_path_finder_sees_module_paths_and_test_names_but_not_globs_or_placeholders():
    text = ("`jobs/agent.py`, `tests/test_x.py::test_y`, scripts/lib.sh, `tests/test_egress_*.py`, "
            "`~/.config/nanoclaw/x.py`, `data/ipc/<folder>/input/x.py`, `logs/nanoclaw.log`, protocol.py")
    assert repo_paths(text) == [("jobs/agent.py", None), ("tests/test_x.py", "test_y"), ("scripts/lib.sh", None)]


def test_the_outside_pointer_check_catches_each_form_and_lets_ordinary_words_pass():
    pointers = ["see " + "SP" + "EC 4.2", "as " + "DES" + "IGN.md says", "Pit" + "fall 52 fixed",
                "difference" + " 3 of the list"]
    assert all(OUTSIDE.search(text) for text in pointers)
    ordinary = ["RunSpec(folder)", "the mount spec is parsed", "a difference between tables", "pitfalls remain"]
    assert not any(OUTSIDE.search(text) for text in ordinary)


def test_every_event_type_has_a_row_in_the_catalogue():
    missing = sorted(set(EVENT_TYPES) - set(catalogue_rows()))
    assert not missing, f"docs/events.md has no row for {', '.join(missing)}"


def test_no_catalogue_row_names_an_event_type_that_does_not_exist():
    rows = catalogue_rows()
    unknown = [name for name in rows if name not in EVENT_TYPES and name not in PENDING]
    assert not unknown, f"docs/events.md has rows for types events/types.py does not define: {unknown}"
    twice = sorted({name for name in rows if rows.count(name) > 1})
    assert not twice, f"docs/events.md has more than one row for {twice}"


def test_every_repo_path_the_docs_and_the_readme_name_exists():
    missing = sorted({(doc, path) for doc, path, _ in named_in_docs()
                      if path not in PENDING and not (REPO / path).is_file()})
    assert not missing, "named but not in the repository: " + "; ".join(f"{p} ({d})" for d, p in missing)


def test_every_test_the_docs_and_the_readme_name_exists():
    wrong = []
    for doc, path, test in named_in_docs():
        if test is not None and (REPO / path).is_file() and test not in functions_in(REPO / path):
            wrong.append(f"{path}::{test} ({doc})")
    assert not wrong, "no such test: " + "; ".join(sorted(set(wrong)))


def test_no_file_points_at_documents_outside_the_repository():
    found = []
    for path in repo_files():
        text = text_of(path)
        for number, line in enumerate((text or "").splitlines(), start=1):
            if OUTSIDE.search(line):
                found.append(f"{path.relative_to(REPO)}:{number}: {line.strip()[:100]}")
    assert not found, "say the rule in our own words instead of pointing at it:\n" + "\n".join(found)


def test_pending_names_only_what_does_not_exist_yet():
    landed = [name for name in PENDING if name in EVENT_TYPES or (REPO / name).is_file()]
    assert not landed, f"{landed} exist now: take them off PENDING in tests/test_docs.py"
