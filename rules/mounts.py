"""Which extra host folders a group's container may see, and how.

Only folders under a root the owner listed in `~/.config/nanoclaw/
mount-allowlist.json` (outside every mount, so no agent can widen it) are
granted; never the install, the allowlists' folder, the Claude login or the
local chat socket's folder (nor a folder holding one of them), never a
credentials folder, and read-only unless asked otherwise. Every mount rule
lives here, so "why was this mount refused" is one file.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import msgspec
from loguru import logger

from base.config import Settings
from events.types import MountRequest

CONTAINER_EXTRA_DIR = "/workspace/extra"
CLAUDE_LOGIN_DIR = ".claude"  # under home: Claude Code's login, with the real OAuth token
MOUNT_SPEC_FORMAT = "HOST_PATH[:CONTAINER_PATH][:rw|:ro]"
MOUNT_MODES = ("rw", "ro")

DEFAULT_BLOCKED_PATTERNS: tuple[str, ...] = (
    ".ssh", ".gnupg", ".gpg", ".aws", ".azure", ".gcloud", ".kube", ".docker",
    "credentials", ".env", ".netrc", ".npmrc", ".pypirc", "id_rsa", "id_ed25519",
    "private_key", ".secret",
)

NonEmptyStr = Annotated[str, msgspec.Meta(min_length=1)]
PathLike = str | os.PathLike[str]


class AllowedRoot(msgspec.Struct, frozen=True, kw_only=True, rename="camel"):
    """A folder (with everything below it) that groups may mount."""

    path: NonEmptyStr
    allow_read_write: bool
    description: str | None = None


class MountAllowlist(msgspec.Struct, frozen=True, kw_only=True, rename="camel"):
    """The parsed allowlist file; `blocked_patterns` includes the defaults once loaded."""

    allowed_roots: tuple[AllowedRoot, ...]
    blocked_patterns: tuple[NonEmptyStr, ...]
    non_main_read_only: bool


@dataclass(frozen=True)
class ValidatedMount:
    """A mount that passed every rule: the real host path and where it appears."""

    host_path: str
    container_path: str
    readonly: bool


@dataclass(frozen=True)
class Rejection:
    """A refused mount and the reason, for the log."""

    request: MountRequest
    reason: str


def default_allowlist_path(home: PathLike) -> Path:
    """Where Settings puts the allowlist for this home directory."""
    return Settings(root=Path(home), home=Path(home)).mount_allowlist_path


def merge_patterns(custom: Iterable[str]) -> tuple[str, ...]:
    """The default blocked patterns, then the custom ones, each once."""
    return tuple(dict.fromkeys((*DEFAULT_BLOCKED_PATTERNS, *custom)))


class AllowlistLoader:
    """Reads the allowlist once for the life of the loader (the process).

    A valid file is cached; so is a broken one (logged once, every extra
    mount refused until restart). A missing file is looked for again on
    every call, with a warning each time.
    """

    def __init__(self, path: PathLike):
        self.path = Path(path)
        self._allowlist: MountAllowlist | None = None
        self._failed = False

    def load(self) -> MountAllowlist | None:
        if self._allowlist is not None or self._failed:
            return self._allowlist
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            logger.warning(
                "mount allowlist {} not found: every additional mount is refused "
                "(create it to allow some)", self.path,
            )
            return None
        except OSError as exc:
            return self._fail(f"cannot read it ({exc.strerror})")
        try:
            parsed = msgspec.json.decode(data, type=MountAllowlist)
        except msgspec.DecodeError as exc:
            return self._fail(str(exc))
        self._allowlist = msgspec.structs.replace(
            parsed, blocked_patterns=merge_patterns(parsed.blocked_patterns)
        )
        logger.info(
            "mount allowlist {} loaded: {} allowed roots, {} blocked patterns",
            self.path, len(self._allowlist.allowed_roots), len(self._allowlist.blocked_patterns),
        )
        return self._allowlist

    def _fail(self, problem: str) -> None:
        self._failed = True
        logger.error(
            "mount allowlist {} is invalid: {}; every additional mount is refused "
            "until the service restarts", self.path, problem,
        )


def expand_path(path: str, home: PathLike) -> str:
    """`~` and `~/x` against `home`; any other relative path against the cwd.

    `~/x` is joined as text, so `~//etc` stays under home (`os.path.join`
    would jump to `/etc`).
    """
    if path == "~":
        return os.fspath(home)
    if path.startswith("~/"):
        return f"{os.fspath(home)}/{path[2:]}"
    return os.path.join(os.getcwd(), path)


def real_path(path: str, home: PathLike) -> str:
    """The expanded path with every symlink resolved; OSError if it does not exist."""
    return os.path.realpath(expand_path(path, home), strict=True)


def container_path_problem(container_path: str) -> str | None:
    """Why a container path is unusable, or None."""
    if not container_path.strip():
        return "it is empty"
    if ".." in container_path:
        return "it contains '..'"
    if container_path.startswith("/"):
        return "it must be relative (it starts with '/')"
    if ":" in container_path:
        return "it contains ':'"
    return None


def blocked_pattern(path: str, patterns: Iterable[str]) -> str | None:
    """The first pattern found anywhere in the real path, or None.

    A component equal to or containing a pattern is a special case of the
    whole path containing it, so one substring test covers all three rules.
    """
    return next((pattern for pattern in patterns if pattern in path), None)


def is_within(path: str, root: str) -> bool:
    """True if `path` is `root` or below it (`/a/b2` is not below `/a/b`)."""
    return os.path.commonpath([path, root]) == root


def matching_root(path: str, roots: Iterable[AllowedRoot], home: PathLike) -> AllowedRoot | None:
    """The first allowed root that is or contains `path`; missing roots are skipped."""
    for root in roots:
        try:
            root_real = real_path(root.path, home)
        except OSError:
            logger.warning("allowed mount root {} does not exist; skipping it", root.path)
            continue
        if is_within(path, root_real):
            return root
    return None


@dataclass(frozen=True)
class Protected:
    """A host folder no mount may be, be inside, or contain, whatever the allowlist says."""

    path: str  # real path (links resolved as far as they exist)
    what: str
    why: str


def protected_places(install_root: PathLike, home: PathLike, allowlist_path: PathLike,
                     local_chat_socket: PathLike | None = None) -> list[Protected]:
    places = [
        Protected(os.path.realpath(install_root), "the install root", "an agent would read .env and the event log"),
        Protected(os.path.realpath(os.path.dirname(os.fspath(allowlist_path))), "the allowlists' folder",
                  "an agent would read the allowlists, and widen them where it may write"),
        Protected(os.path.realpath(os.path.join(home, CLAUDE_LOGIN_DIR)), "the Claude login folder",
                  "it holds the real OAuth token (.credentials.json)"),
    ]
    if local_chat_socket is not None:
        places.append(Protected(os.path.realpath(os.path.dirname(os.fspath(local_chat_socket))),
                                "the local chat socket's folder", "an agent could post to the chats as their owner"))
    return places


def protected_reason(host_real: str, places: Iterable[Protected]) -> str | None:
    """Why the real host path may not be mounted because of a protected place, or None."""
    for place in places:
        if host_real == place.path:
            relation = "is"
        elif is_within(host_real, place.path):
            relation = "is inside"
        elif is_within(place.path, host_real):
            relation = "contains"
        else:
            continue
        return f"Path {host_real} {relation} {place.what} {place.path}: {place.why}"
    return None


def readonly_reason(
    request: MountRequest, *, is_main: bool, allowlist: MountAllowlist, root: AllowedRoot
) -> str | None:
    """Why the mount is read-only, or None when it may be written."""
    if request.readonly:
        return "read-only was requested (the default)"
    if not is_main and allowlist.non_main_read_only:
        return "nonMainReadOnly makes every mount of a non-main group read-only"
    if not root.allow_read_write:
        return f"allowed root {root.path} does not allow read-write"
    return None


def validate_mount(
    request: MountRequest,
    *,
    is_main: bool,
    allowlist: MountAllowlist | None,
    home: PathLike,
    install_root: PathLike,
    allowlist_path: PathLike | None = None,
    local_chat_socket: PathLike | None = None,
) -> ValidatedMount | Rejection:
    """Apply the rules in order; the first one that fails refuses the mount.

    An empty `container_path` counts as not given (v1's `||`): the host
    path's basename is used. The protected places (`protected_places`) are
    refused before the allowlist is consulted, so no allowed root can
    reach them.
    """
    where = allowlist_path or default_allowlist_path(home)
    if allowlist is None:
        return Rejection(request, f"No mount allowlist configured at {where}")
    container_path = request.container_path or os.path.basename(request.host_path.rstrip("/"))
    if problem := container_path_problem(container_path):
        return Rejection(request, f"Invalid container path {container_path!r}: {problem}")
    if not request.host_path.strip():
        return Rejection(request, "Host path is empty")
    try:
        host_real = real_path(request.host_path, home)
    except OSError as exc:
        return Rejection(request, f"Host path {request.host_path} cannot be used: {exc.strerror}")
    if reason := protected_reason(host_real, protected_places(install_root, home, where, local_chat_socket)):
        return Rejection(request, reason)
    if pattern := blocked_pattern(host_real, allowlist.blocked_patterns):
        return Rejection(request, f"Path matches blocked pattern {pattern!r}: {host_real}")
    root = matching_root(host_real, allowlist.allowed_roots, home)
    if root is None:
        listed = ", ".join(expand_path(r.path, home) for r in allowlist.allowed_roots) or "none"
        return Rejection(request, f"Path {host_real} is not under any allowed root (allowed roots: {listed})")
    reason = readonly_reason(request, is_main=is_main, allowlist=allowlist, root=root)
    if reason and not request.readonly:
        logger.info("mount {} forced read-only: {}", host_real, reason)
    return ValidatedMount(host_real, f"{CONTAINER_EXTRA_DIR}/{container_path}", reason is not None)


def validate_mounts(
    requests: Iterable[MountRequest],
    *,
    is_main: bool,
    loader: AllowlistLoader,
    home: PathLike,
    install_root: PathLike,
    local_chat_socket: PathLike | None = None,
    group: str | None = None,
) -> tuple[list[ValidatedMount], list[Rejection]]:
    """Split a group's requests into accepted mounts and logged rejections."""
    requests = list(requests)
    allowlist = loader.load() if requests else None
    accepted: list[ValidatedMount] = []
    rejected: list[Rejection] = []
    for request in requests:
        outcome = validate_mount(request, is_main=is_main, allowlist=allowlist, home=home, install_root=install_root,
                                 allowlist_path=loader.path, local_chat_socket=local_chat_socket)
        if isinstance(outcome, ValidatedMount) and any(m.container_path == outcome.container_path for m in accepted):
            outcome = Rejection(request, f"{outcome.container_path} is already used by an earlier mount")
        if isinstance(outcome, Rejection):
            who = f" for {group}" if group else ""
            logger.warning("Additional mount REJECTED{}: {}: {}", who, request.host_path, outcome.reason)
            rejected.append(outcome)
        else:
            accepted.append(outcome)
    return accepted, rejected


def parse_mount_spec(spec: str) -> MountRequest:
    """Parse the command line form `HOST_PATH[:CONTAINER_PATH][:rw|:ro]`.

    A last part `rw` or `ro` (any case) is the mode; read-only by default.
    An empty CONTAINER_PATH (`~/x::rw`) means the host folder's name. A
    container folder named `rw` or `ro` needs the mode spelled out
    (`~/x:rw:ro`). Host paths containing `:` cannot be written this way.
    """
    parts = spec.split(":")
    if len(parts) > 3:
        raise ValueError(f"mount {spec!r}: too many ':' (expected {MOUNT_SPEC_FORMAT})")
    mode = "ro"
    if len(parts) == 3 or (len(parts) == 2 and parts[1].lower() in MOUNT_MODES):
        mode = parts.pop().lower()
        if mode not in MOUNT_MODES:
            raise ValueError(f"mount {spec!r}: mode {mode!r} is not rw or ro (expected {MOUNT_SPEC_FORMAT})")
    host_path = parts[0]
    if not host_path.strip():
        raise ValueError(f"mount {spec!r}: the host path is empty (expected {MOUNT_SPEC_FORMAT})")
    container_path = parts[1] if len(parts) == 2 else ""
    return MountRequest(host_path=host_path, container_path=container_path or None, readonly=mode == "ro")
