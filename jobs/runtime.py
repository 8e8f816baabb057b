"""The container runtime as the service sees it: is it up, and what is ours.

Every agent container carries the label `nanoclaw.install=<install root>`,
so orphans left by a crash are found by label, never by a name substring
that would also match other people's containers.
The engine is Docker, or Podman through its Docker-compatible socket when
`CONTAINER_RUNTIME=podman`; `DOCKER_HOST`, when set, names the socket for both.
"""

from __future__ import annotations

import os
from typing import Callable, Mapping

import docker
from docker.errors import DockerException
from loguru import logger
from requests.exceptions import RequestException

from base.config import Settings

RUNTIME_CHECK_TIMEOUT_S = 10
LABEL_INSTALL = "nanoclaw.install"
LABEL_GROUP = "nanoclaw.group"
LABEL_RUN = "nanoclaw.run"
PODMAN_ROOTFUL_SOCKET = "/run/podman/podman.sock"


class RuntimeUnavailable(DockerException):
    """Docker (or Podman's compatible socket) does not answer.

    A DockerException, so that every caller that survives a Docker failure
    (a run, the orphan sweep) survives this one too, instead of dying with it.
    """


def podman_socket(uid: int | None = None, environ: Mapping[str, str] | None = None) -> str:
    """Podman's API socket: the system one for root, else the user's (`podman.socket` units)."""
    uid = os.getuid() if uid is None else uid
    if uid == 0:
        return PODMAN_ROOTFUL_SOCKET
    runtime_dir = (os.environ if environ is None else environ).get("XDG_RUNTIME_DIR") or f"/run/user/{uid}"
    return f"{runtime_dir}/podman/podman.sock"


def engine_url(settings: Settings | None) -> str | None:
    """The socket to reach, or None for the docker SDK's own default (DOCKER_HOST, else Docker's)."""
    if os.environ.get("DOCKER_HOST") or settings is None or settings.container_runtime != "podman":
        return None
    return f"unix://{podman_socket()}"


def start_hint(settings: Settings | None) -> str:
    """One line telling a person how to bring the configured runtime up."""
    if settings is None or settings.container_runtime == "docker":
        return "Start Docker (sudo systemctl start docker) and run nanoclaw again."
    unit = "sudo systemctl enable --now podman.socket" if os.getuid() == 0 else \
        "systemctl --user enable --now podman.socket"
    return (f"Start Podman's API socket ({unit}, or: podman system service --time=0 "
            f"unix://{podman_socket()}) and run nanoclaw again.")


def client(settings: Settings | None = None, timeout: int = 60) -> docker.DockerClient:
    """A client for the configured engine; `settings` None means Docker (or DOCKER_HOST)."""
    url = engine_url(settings)
    try:
        if url is None:
            return docker.from_env(timeout=timeout)
        return docker.DockerClient(base_url=url, timeout=timeout)
    except DockerException as exc:
        raise RuntimeUnavailable(str(exc)) from exc


def check_runtime(settings: Settings | None = None) -> str:
    """Ping the engine within 10 s; returns its version or raises RuntimeUnavailable."""
    try:
        engine = client(settings, timeout=RUNTIME_CHECK_TIMEOUT_S)
        try:
            engine.ping()
            return engine.version().get("Version", "unknown")
        finally:
            engine.close()
    except (DockerException, RequestException) as exc:
        where = engine_url(settings) or os.environ.get("DOCKER_HOST") or "Docker's default socket"
        raise RuntimeUnavailable(f"{where}: {exc}") from exc


def engine_name(settings: Settings | None) -> str:
    """`Podman` or `Docker`, for messages."""
    return "Docker" if settings is None or settings.container_runtime == "docker" else "Podman"


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
        engine = client(settings)
        try:
            # ignore_removed: a container a run removes while we list must not make us skip the sweep
            found = engine.containers.list(all=True, filters={"label": install_label(settings)},
                                           ignore_removed=True)
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
