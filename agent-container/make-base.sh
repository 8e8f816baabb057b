#!/usr/bin/env bash
# Build the offline base image (default nanoclaw-base:bookworm) from a Debian
# mirror with debootstrap, without any container registry:
#
#   debootstrap --variant=minbase bookworm <tmpdir> <mirror>
#   tar -C <tmpdir> -c . | docker import - nanoclaw-base:bookworm
#
# Usage: agent-container/make-base.sh [--force]
#   --force        rebuild even if the image already exists
# Environment:
#   BASE_IMAGE           image name (default nanoclaw-base:bookworm)
#   DEBIAN_MIRROR        Debian archive URL (default: the host's apt sources,
#                        else http://deb.debian.org/debian)
#   DEBIAN_SUITE         suite (default bookworm)
#   DEBOOTSTRAP_INCLUDE  extra packages, comma-separated (default none)
#
# Needs a running Docker engine and root (uses sudo when not root).
set -euo pipefail

BASE_IMAGE="${BASE_IMAGE:-nanoclaw-base:bookworm}"
SUITE="${DEBIAN_SUITE:-bookworm}"
FORCE=0

for arg in "$@"; do
    case "$arg" in
        --force) FORCE=1 ;;
        -h|--help) sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "make-base: unknown argument: $arg (try --help)" >&2; exit 2 ;;
    esac
done

say() { echo "base: $*"; }
die() { echo "base: ERROR: $*" >&2; exit 1; }

as_root() {
    if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

# The first Debian archive URI (…/debian, not …/debian-security) in the
# host's apt sources, deb822 files first, then the one-line format.
detect_mirror() {
    local f line uri
    for f in /etc/apt/sources.list.d/*.sources; do
        [ -r "$f" ] || continue
        while IFS= read -r line; do
            case "$line" in
                URIs:*|URIS:*|uris:*)
                    for uri in ${line#*:}; do
                        case "${uri%/}" in
                            http://*/debian|https://*/debian) echo "${uri%/}"; return 0 ;;
                        esac
                    done ;;
            esac
        done < "$f"
    done
    for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
        [ -r "$f" ] || continue
        while IFS= read -r line; do
            case "$line" in
                deb\ *|deb$'\t'*) ;;
                *) continue ;;
            esac
            # drop "deb" and any "[options]" block
            line="${line#deb}"
            line="$(echo "$line" | sed -e 's/^[[:space:]]*\[[^]]*\][[:space:]]*//' -e 's/^[[:space:]]*//')"
            uri="${line%%[[:space:]]*}"
            case "${uri%/}" in
                http://*/debian|https://*/debian) echo "${uri%/}"; return 0 ;;
            esac
        done < "$f"
    done
    return 1
}

command -v docker >/dev/null 2>&1 || die "docker CLI not found (install docker.io)"
if ! timeout 10 docker info >/dev/null 2>&1; then
    die "the Docker engine is not answering (docker info); start it first (scripts/lib.sh: ensure_dockerd)"
fi

if [ "$FORCE" -eq 0 ] && docker image inspect "$BASE_IMAGE" >/dev/null 2>&1; then
    say "base image present ($BASE_IMAGE)"
    exit 0
fi

DEBOOTSTRAP="$(command -v debootstrap || true)"
for cand in /usr/sbin/debootstrap /sbin/debootstrap; do
    if [ -z "$DEBOOTSTRAP" ] && [ -x "$cand" ]; then DEBOOTSTRAP="$cand"; fi
done
[ -n "$DEBOOTSTRAP" ] || die "debootstrap not found (apt-get install debootstrap)"

MIRROR="${DEBIAN_MIRROR:-}"
if [ -z "$MIRROR" ]; then
    MIRROR="$(detect_mirror || true)"
fi
MIRROR="${MIRROR:-http://deb.debian.org/debian}"
MIRROR="${MIRROR%/}"

KEYRING_ARGS=()
if [ -r /usr/share/keyrings/debian-archive-keyring.gpg ]; then
    KEYRING_ARGS=(--keyring=/usr/share/keyrings/debian-archive-keyring.gpg)
fi
INCLUDE_ARGS=()
if [ -n "${DEBOOTSTRAP_INCLUDE:-}" ]; then
    INCLUDE_ARGS=("--include=${DEBOOTSTRAP_INCLUDE}")
fi

START=$SECONDS
ROOTFS="$(mktemp -d /var/tmp/nanoclaw-base.XXXXXX)"
LOG="$(mktemp /tmp/nanoclaw-debootstrap.XXXXXX.log)"
chmod 755 "$ROOTFS"

cleanup() {
    local rc=$? m
    # debootstrap bind-mounts /dev, /proc, /sys inside the target on some
    # hosts; unmount anything left below the rootfs before deleting it, and
    # never let rm cross into another file system.
    if [ -d "$ROOTFS" ]; then
        for m in $(awk -v r="$ROOTFS" '$2 == r || index($2, r "/") == 1 { print $2 }' /proc/mounts | sort -r); do
            as_root umount -l "$m" 2>/dev/null || true
        done
        as_root rm -rf --one-file-system "$ROOTFS" || true
    fi
    if [ "$rc" -eq 0 ]; then rm -f "$LOG"; fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

say "debootstrap --variant=minbase $SUITE from $MIRROR (log: $LOG) ..."
if ! as_root "$DEBOOTSTRAP" --variant=minbase "${KEYRING_ARGS[@]}" "${INCLUDE_ARGS[@]}" \
        "$SUITE" "$ROOTFS" "$MIRROR" >"$LOG" 2>&1; then
    echo "base: debootstrap failed; last lines of $LOG:" >&2
    tail -n 25 "$LOG" >&2
    exit 1
fi
say "debootstrap done in $((SECONDS - START))s; trimming ..."

# apt sources for builds on top of this image: the same mirror, plus updates
# and (for the public archive, or when the host has one) security.
SECURITY=""
case "$MIRROR" in
    http://deb.debian.org/debian|https://deb.debian.org/debian) SECURITY="${MIRROR}-security" ;;
esac
if [ -z "$SECURITY" ]; then
    SECURITY="$(grep -rhoE 'https?://[^[:space:]]+/debian-security' /etc/apt/sources.list /etc/apt/sources.list.d/ 2>/dev/null | head -n 1 || true)"
fi
{
    echo "deb $MIRROR $SUITE main"
    echo "deb $MIRROR $SUITE-updates main"
    if [ -n "$SECURITY" ]; then echo "deb $SECURITY $SUITE-security main"; fi
} | as_root tee "$ROOTFS/etc/apt/sources.list" >/dev/null

as_root sh -c 'cd "$1" && rm -rf var/cache/apt/archives/*.deb var/cache/apt/*.bin var/lib/apt/lists/* tmp/* 2>/dev/null; find var/log -type f -delete; mkdir -p var/lib/apt/lists/partial; true' sh "$ROOTFS"
[ -x "$ROOTFS/bin/sh" ] || die "the rootfs has no /bin/sh"
[ -x "$ROOTFS/usr/bin/apt-get" ] || die "the rootfs has no apt-get"

say "importing into docker as $BASE_IMAGE ..."
as_root tar --numeric-owner -C "$ROOTFS" -c . | docker import \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'ENV LANG=C.UTF-8' \
    --change 'CMD ["/bin/bash"]' \
    --message "nanoclaw base: debootstrap --variant=minbase $SUITE $MIRROR" \
    - "$BASE_IMAGE" >/dev/null

if ! docker run --rm --network none "$BASE_IMAGE" /bin/sh -c 'command -v apt-get >/dev/null' ; then
    die "the imported image $BASE_IMAGE does not run /bin/sh with apt-get"
fi
say "built $BASE_IMAGE in $((SECONDS - START))s ($(docker image inspect -f '{{.Size}}' "$BASE_IMAGE" | awk '{ printf "%.0f MB", $1 / 1e6 }'))"
