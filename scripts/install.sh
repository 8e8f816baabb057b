#!/usr/bin/env bash
# Install NanoClaw Pro on this machine (Debian/Ubuntu): Debian packages, a
# running Docker engine, the offline base image, .venv with the project, the
# agent image, then the systemd user service (or how to run it by hand).
# Idempotent: re-running it only does what is missing.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
# shellcheck source=scripts/lib.sh
source scripts/lib.sh

# ---------------------------------------------------------------------------
# start_service: install and start the systemd user unit (systemd/) with
# `nanoclaw service install` where systemd runs; elsewhere (a container, WSL
# without systemd) say how to run `nanoclaw run` by hand.
# ---------------------------------------------------------------------------
start_service() {
    if [ "$(cat /proc/1/comm 2>/dev/null)" = systemd ] && systemctl --user show-environment >/dev/null 2>&1; then
        echo "install: installing the systemd user service ..."
        .venv/bin/nanoclaw service install
        echo "install: next, register your main chat and talk to it:"
        echo "  .venv/bin/nanoclaw groups add local:me --name Me --folder main --main"
        echo "  .venv/bin/nanoclaw chat"
        return
    fi
    echo "install: systemd is not running here (a container, or WSL without systemd), so no service was"
    echo "installed. Run NanoClaw in the foreground instead (logs also go to logs/nanoclaw.log):"
    echo "  .venv/bin/nanoclaw groups add local:me --name Me --folder main --main"
    echo "  .venv/bin/nanoclaw run        # in one terminal (or: nohup .venv/bin/nanoclaw run >/dev/null 2>&1 &)"
    echo "  .venv/bin/nanoclaw chat       # in another"
}

ensure_debian_packages
ensure_dockerd
ensure_base_image
ensure_venv
echo "agent image: building it when missing or older than agent-container/ (minutes the first time) ..."
.venv/bin/nanoclaw image build --if-stale --quiet || {
    echo "install: the agent image could not be built (see above); fix that and run install.sh again" >&2
    exit 1
}

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
