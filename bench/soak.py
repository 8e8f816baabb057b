"""The issue's soak at full size: 5,000 messages across 50 groups, the service killed every few seconds.

Run: .venv/bin/python bench/soak.py [--messages 5000] [--groups 50] [--rate 20] [--kill-min 2] [--kill-max 6]
A real `nanoclaw run` (router plus worker, its own process group) in a
temporary root, the `test` agent image with the scripted provider (it
echoes its prompt, so a reply shows which messages it answers). Prints what
was sent, answered, killed and restarted, and whether the event log, the
projections (fresh fold and rebuild) and the replies agree. Exit 1 if not.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from base.config import load_settings  # noqa: E402
from events import EventLog  # noqa: E402
from tests.soak import SoakConfig, run_soak  # noqa: E402

IMAGE = "nanoclaw-agent:test"


def main() -> int:
    defaults = SoakConfig.from_env(messages=5000, groups=50, rate=20.0, kill_min_s=2.0, kill_max_s=6.0,
                                   max_containers=4, settle_timeout_s=900.0)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=defaults.messages)
    parser.add_argument("--groups", type=int, default=defaults.groups)
    parser.add_argument("--rate", type=float, default=defaults.rate, help="messages per second")
    parser.add_argument("--kill-min", type=float, default=defaults.kill_min_s, help="seconds")
    parser.add_argument("--kill-max", type=float, default=defaults.kill_max_s, help="seconds")
    parser.add_argument("--containers", type=int, default=defaults.max_containers)
    parser.add_argument("--keep", action="store_true", help="keep the install root for inspection")
    args = parser.parse_args()
    config = SoakConfig(messages=args.messages, groups=args.groups, rate=args.rate, kill_min_s=args.kill_min,
                        kill_max_s=args.kill_max, max_containers=args.containers,
                        idle_timeout_ms=defaults.idle_timeout_ms, settle_timeout_s=defaults.settle_timeout_s,
                        seed=defaults.seed)
    tmp = tempfile.mkdtemp(prefix="nanoclaw-soak-")
    os.environ.update(NANOCLAW_ROOT=tmp, HOME=tmp, CONTAINER_IMAGE=IMAGE, CONTAINER_NETWORK="none",
                      AGENT_PROVIDER="scripted", LOG_LEVEL="info")
    settings = load_settings()
    settings.ensure_dirs()
    log = EventLog(settings.db_path)
    try:
        report = run_soak(settings, log, config)
    finally:
        log.close()
    print(report.summary())
    print(f"install root: {tmp}" + ("" if args.keep else " (removed)"))
    if not args.keep:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0 if report.agreement else 1


if __name__ == "__main__":
    sys.exit(main())
