"""The soak, small enough for the suite: random kills of the whole service while messages flow.

Size by environment (tests/soak.py SoakConfig): SOAK_MESSAGES, SOAK_GROUPS,
SOAK_RATE, SOAK_KILL_MIN_S, SOAK_KILL_MAX_S, ...; bench/soak.py runs the
issue's full size (5,000 messages across 50 groups).
"""

from __future__ import annotations

import pytest

from events import types as t
from tests.soak import SoakConfig, run_soak

pytestmark = pytest.mark.docker


@pytest.mark.parametrize("ready_agents", [0, 2], ids=["cold", "ready-agents"])
def test_after_random_kills_the_log_the_projections_and_the_replies_agree(settings, log, agent_image, monkeypatch,
                                                                          ready_agents):
    for key, value in dict(CONTAINER_IMAGE=agent_image, CONTAINER_NETWORK="none", AGENT_PROVIDER="scripted").items():
        monkeypatch.setenv(key, value)
    report = run_soak(settings, log, SoakConfig.from_env(ready_agents=ready_agents))
    if ready_agents:  # the kills met ready agents, and some of them were handed messages
        ready = {r.event.run_id for r in log.read_since(0, types=[t.AgentRunStarted], limit=None) if r.event.ready}
        piped = {r.event.run_id for r in log.read_since(0, types=[t.MessagesPiped], limit=None)}
        assert ready & piped, report.summary()
    print(report.summary())
    assert report.agreement, report.summary()
    assert report.kills >= 3 and report.restarts == report.kills
