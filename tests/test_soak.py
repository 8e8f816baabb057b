"""The soak, small enough for the suite: random kills of the whole service while messages flow.

Size by environment (tests/soak.py SoakConfig): SOAK_MESSAGES, SOAK_GROUPS,
SOAK_RATE, SOAK_KILL_MIN_S, SOAK_KILL_MAX_S, ...; bench/soak.py runs the
issue's full size (5,000 messages across 50 groups).
"""

from __future__ import annotations

import pytest

from tests.soak import SoakConfig, run_soak

pytestmark = pytest.mark.docker


def test_after_random_kills_the_log_the_projections_and_the_replies_agree(settings, log, agent_image, monkeypatch):
    for key, value in dict(CONTAINER_IMAGE=agent_image, CONTAINER_NETWORK="none", AGENT_PROVIDER="scripted").items():
        monkeypatch.setenv(key, value)
    report = run_soak(settings, log, SoakConfig.from_env())
    print(report.summary())
    assert report.agreement, report.summary()
    assert report.kills >= 3 and report.restarts == report.kills
