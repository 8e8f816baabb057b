#!/usr/bin/env bash
# Install NanoClaw Pro on this machine (Debian/Ubuntu): Debian packages, a
# running Docker engine, the offline base image, and .venv with the project.
# Idempotent: re-running it only does what is missing.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
# shellcheck source=scripts/lib.sh
source scripts/lib.sh

# ---------------------------------------------------------------------------
# start_service: LATER WORK FILLS THIS IN. It will install and start the
# systemd unit for `nanoclaw run` (systemd/), or print how to run it by hand
# where systemd is not PID 1. Until the router exists there is nothing to
# start.
# ---------------------------------------------------------------------------
start_service() {
    echo "install: the systemd unit arrives with the agent containers; until then run the router by hand:"
    echo "  .venv/bin/nanoclaw groups add local:me --name Me --folder main --main"
    echo "  .venv/bin/nanoclaw run        # in one terminal"
    echo "  .venv/bin/nanoclaw chat       # in another"
}

ensure_debian_packages
ensure_dockerd
ensure_base_image
ensure_venv

echo "install: set-up finished in $(pwd)"

if [ -x .venv/bin/nanoclaw ] && .venv/bin/nanoclaw --help 2>/dev/null | grep -qw doctor; then
    echo "install: running nanoclaw doctor ..."
    if ! .venv/bin/nanoclaw doctor; then
        echo "install: nanoclaw doctor reported problems (see above)" >&2
        exit 1
    fi
fi

start_service
exit 0
