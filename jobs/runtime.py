"""The container runtime as the service sees it: is it up, and what is ours.

Every agent container carries the label `nanoclaw.install=<install root>`,
so orphans left by a crash are found by label, never by a name substring
that would also match other people's containers (SPEC.md difference 13).
"""

from __future__ import annotations

from typing import Callable

import docker
from docker.errors import DockerException
from loguru import logger
from requests.exceptions import RequestException

from nanoclaw.config import Settings

RUNTIME_CHECK_TIMEOUT_S = 10
LABEL_INSTALL = "nanoclaw.install"
LABEL_GROUP = "nanoclaw.group"
LABEL_RUN = "nanoclaw.run"


class RuntimeUnavailable(Exception):
    """Docker (or Podman's compatible socket) does not answer."""


def client(timeout: int = 60) -> docker.DockerClient:
    try:
        return docker.from_env(timeout=timeout)
    except DockerException as exc:
        raise RuntimeUnavailable(str(exc)) from exc


def check_runtime() -> str:
    """Ping the engine within 10 s; returns its version or raises RuntimeUnavailable."""
    try:
        engine = client(timeout=RUNTIME_CHECK_TIMEOUT_S)
        try:
            engine.ping()
            return engine.version().get("Version", "unknown")
        finally:
            engine.close()
    except (DockerException, RequestException) as exc:
        raise RuntimeUnavailable(str(exc)) from exc


def install_label(settings: Settings) -> str:
    return f"{LABEL_INSTALL}={settings.root}"


def remove_orphans(settings: Settings, keep: Callable[[], set[str]] | None = None) -> list[str]:
    """Remove this install's containers (running or not) whose run is not in `keep()`.

    `keep` is asked after the listing: a run registers itself before its
    container exists, so a container in the list is never taken for an
    orphan just because its run started a moment ago. Returns the names.
    """
    removed: list[str] = []
    try:
        engine = client()
        try:
            found = engine.containers.list(all=True, filters={"label": install_label(settings)})
            live = keep() if keep else set()
            for container in found:
                if container.labels.get(LABEL_RUN) in live:
                    continue
                try:
                    container.remove(force=True)
                    removed.append(container.name)
                except DockerException as exc:
                    logger.warning("could not remove orphaned container {}: {}", container.name, exc)
        finally:
            engine.close()
    except (DockerException, RequestException) as exc:
        logger.warning("orphan cleanup skipped: {}", exc)
    if removed:
        logger.info("removed {} orphaned container(s): {}", len(removed), ", ".join(removed))
    return removed
