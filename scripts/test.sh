#!/usr/bin/env bash
# Run the test suite on this machine, installing what it needs first:
# Debian packages (docker.io, debootstrap, python3-venv), a running Docker
# engine, the offline base image, .venv with the project, and podman (with its
# API socket) and systemd-analyze for the service tests. Idempotent;
# a few seconds when everything is already in place.
#
# Usage: scripts/test.sh [pytest args...]   (default: -q)
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
# shellcheck source=scripts/lib.sh
source scripts/lib.sh

ensure_debian_packages
ensure_dockerd
ensure_base_image
ensure_venv
ensure_test_tools
ensure_podman
ensure_test_user

if [ "$#" -eq 0 ]; then
    set -- -q
fi

rc=0
.venv/bin/python -m pytest "$@" || rc=$?
if [ "$rc" -eq 5 ]; then
    echo "test.sh: FAILED: pytest collected no tests (exit code 5); an empty run is not a pass" >&2
fi
exit "$rc"
