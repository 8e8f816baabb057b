"""What tests look at afterwards: the log's events of one type, this install's containers."""

from __future__ import annotations

import docker

from base.config import Settings
from events import EventLog
from jobs.runtime import install_label


def of_type(log: EventLog, cls) -> list:
    """Every event of this type, oldest first."""
    return [r.event for r in log.read_since(0, types=[cls], limit=None)]


def our_containers(settings: Settings) -> list:
    """Containers (running or not) labelled with this install's root."""
    engine = docker.from_env()
    try:
        # ignore_removed: a container removed between the listing and its inspection is simply gone
        return engine.containers.list(all=True, filters={"label": install_label(settings)}, ignore_removed=True)
    finally:
        engine.close()
