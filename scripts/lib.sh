# shellcheck shell=bash
# Shared set-up steps for scripts/test.sh, scripts/install.sh and CI.
# Source it (bash); every ensure_* function is idempotent and cheap when
# everything is already in place, prints one short line, and returns
# non-zero with a clear message on failure.
#
#   ensure_debian_packages  docker.io, debootstrap, python3-venv, ca-certificates
#   ensure_dockerd          a Docker engine answering `docker info`
#   ensure_base_image       the offline base image (agent-container/make-base.sh)
#   ensure_venv             .venv with the project installed (editable, [test])
#   ensure_test_tools       podman, catatonit and systemd-analyze (for the tests)
#   ensure_podman           Podman's Docker-compatible API socket answering
#   ensure_test_user        a user with uid 1000 (the attack tests run the service as it)
#
# Environment knobs:
#   BASE_IMAGE               base image name (default nanoclaw-base:bookworm)
#   NANOCLAW_DOCKERD_FLAGS   extra dockerd flags; skips the automatic fallbacks
#   NANOCLAW_PYTHON          interpreter for the venv (default: python3, or
#                            the newest python3.1x >= 3.11 found on PATH)

NC_ROOT="${NC_ROOT:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)}"
NC_DOCKERD_LOG="${NC_DOCKERD_LOG:-/var/log/nanoclaw-dockerd.log}"

nc_sudo() {
    if [ "$(id -u)" -eq 0 ]; then
        "$@"
    elif command -v sudo >/dev/null 2>&1; then
        sudo "$@"
    else
        echo "nanoclaw: need root for: $* (and sudo is not installed)" >&2
        return 1
    fi
}

# command -v, also looking in the sbin directories a non-root PATH may lack
_nc_have() {
    command -v "$1" >/dev/null 2>&1 && return 0
    local d
    for d in /usr/local/sbin /usr/sbin /sbin; do
        [ -x "$d/$1" ] && return 0
    done
    return 1
}

_nc_pkg_installed() {
    dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'install ok installed'
}

ensure_debian_packages() {
    local missing=()
    _nc_have dockerd || missing+=(docker.io)
    _nc_have debootstrap || missing+=(debootstrap)
    # debootstrap only recommends the keyring; Ubuntu does not ship it by default
    [ -r /usr/share/keyrings/debian-archive-keyring.gpg ] || missing+=(debian-archive-keyring)
    if ! { python3 -m venv --help >/dev/null 2>&1 && python3 -c 'import ensurepip' >/dev/null 2>&1; }; then
        # Debian splits venv/ensurepip out of the interpreter package
        missing+=(python3-venv)
    fi
    _nc_pkg_installed ca-certificates || missing+=(ca-certificates)
    # WhatsApp's library (neonize) tells file types with libmagic, through python-magic
    _nc_pkg_installed libmagic1 || missing+=(libmagic1)

    if [ "${#missing[@]}" -eq 0 ]; then
        echo "packages: all present"
        return 0
    fi
    _nc_apt_install packages "${missing[@]}"
}

# _nc_apt_install LABEL PACKAGE...: apt-get update and install, one clear line on failure.
_nc_apt_install() {
    local label="$1"
    shift
    if ! command -v apt-get >/dev/null 2>&1; then
        echo "$label: missing $* and apt-get is not available; install them by hand" >&2
        return 1
    fi
    echo "$label: installing $* ..."
    nc_sudo env DEBIAN_FRONTEND=noninteractive apt-get update -qq || {
        echo "$label: apt-get update failed" >&2; return 1; }
    nc_sudo env DEBIAN_FRONTEND=noninteractive NEEDRESTART_MODE=a apt-get install -y -qq \
        --no-install-recommends "$@" || {
        echo "$label: apt-get install $* failed" >&2; return 1; }
}

# If the (possibly newer) docker CLI refuses the daemon's API version, pin the
# daemon's maximum with DOCKER_API_VERSION. Modern clients negotiate down by
# themselves (docker 28 against dockerd 20.10 uses API 1.41), so normally this
# does nothing.
_nc_docker_api_pin() {
    local out max
    out="$(timeout 10 docker version 2>&1)" && return 0
    max="$(printf '%s\n' "$out" | sed -n 's/.*[Mm]aximum supported API version is \([0-9.]*\).*/\1/p' | head -n 1)"
    if [ -n "$max" ]; then
        export DOCKER_API_VERSION="$max"
        echo "docker: CLI too new for the daemon; using DOCKER_API_VERSION=$max"
    fi
}

_nc_docker_ok() {
    timeout 10 docker info >/dev/null 2>&1
}

# The errors of the latest dockerd start in its log (the log is full of
# grpc info lines), else its last lines.
_nc_dockerd_log_tail() {
    local n="${1:-8}" run
    run="$(nc_sudo awk '/^==== .* nanoclaw: starting dockerd/ { buf = "" } { buf = buf $0 "\n" } END { printf "%s", buf }' "$NC_DOCKERD_LOG" 2>/dev/null || true)"
    echo "---- $NC_DOCKERD_LOG (errors of the last start) ----" >&2
    if printf '%s' "$run" | grep -Eq 'level=(error|fatal)|failed to start|^failed'; then
        printf '%s' "$run" | grep -E 'level=(error|fatal)|failed to start|^failed|exit status' | tail -n "$n" >&2
    else
        printf '%s' "$run" | tail -n "$n" >&2
    fi
    echo "----" >&2
}

# Start dockerd detached (own session, no inherited descriptors, output to the
# log) with the given flags; prints the pid to watch. `setsid -w` (and tini)
# keep that pid alive exactly as long as dockerd runs.
_nc_spawn_dockerd() {
    local dockerd cand
    dockerd="$(command -v dockerd || true)"
    for cand in /usr/sbin/dockerd /usr/bin/dockerd /sbin/dockerd; do
        if [ -z "$dockerd" ] && [ -x "$cand" ]; then dockerd="$cand"; fi
    done
    if [ -z "$dockerd" ]; then
        echo "docker: dockerd not found (install docker.io)" >&2
        return 1
    fi
    nc_sudo mkdir -p "$(dirname "$NC_DOCKERD_LOG")"
    nc_sudo sh -c 'echo "==== $(date -u +%FT%TZ) nanoclaw: starting dockerd $*" >>"$0"' "$NC_DOCKERD_LOG" "$@"
    # Run it under `tini -s` (a child subreaper) when tini is installed
    # (docker.io depends on it): containerd-shims are orphaned by design, and
    # without systemd PID 1 may be an init that never reaps them (as in some
    # VM sandboxes), leaving a zombie per container run.
    local reaper=()
    if command -v tini >/dev/null 2>&1; then
        reaper=("$(command -v tini)" -s --)
    fi
    (
        # do not hold any descriptor of the caller (CI pipes, test harnesses)
        for fd in /proc/$BASHPID/fd/*; do
            fd="${fd##*/}"
            if [ "$fd" -gt 2 ] 2>/dev/null; then eval "exec $fd>&-" 2>/dev/null || true; fi
        done
        if [ "$(id -u)" -eq 0 ]; then
            exec nohup setsid -w "${reaper[@]}" "$dockerd" "$@" >>"$NC_DOCKERD_LOG" 2>&1 </dev/null
        else
            exec sudo -n sh -c 'log="$1"; shift; exec nohup setsid -w "$@" >>"$log" 2>&1 </dev/null' \
                sh "$NC_DOCKERD_LOG" "${reaper[@]}" "$dockerd" "$@" </dev/null >/dev/null 2>&1
        fi
    ) &
    echo "$!"
}

# true while the process exists and is not a zombie
_nc_alive() {
    local s
    s="$(cat "/proc/$1/stat" 2>/dev/null)" || return 1
    s="${s##*) }"
    [ "${s%% *}" != Z ]
}

ensure_dockerd() {
    if ! command -v docker >/dev/null 2>&1; then
        echo "docker: the docker CLI is not installed (run ensure_debian_packages)" >&2
        return 1
    fi
    if _nc_docker_ok; then
        _nc_docker_api_pin
        echo "docker: engine running ($(docker version -f '{{.Server.Version}}, API {{.Server.APIVersion}}' 2>/dev/null || echo '?'))"
        return 0
    fi
    local err
    err="$(timeout 10 docker info 2>&1 >/dev/null || true)"
    if printf '%s' "$err" | grep -qi 'permission denied'; then
        echo "docker: the engine's socket refuses this user: $(printf '%s' "$err" | grep -i 'permission denied' | head -n 1)" >&2
        echo "docker: add yourself to the docker group (sudo usermod -aG docker \$USER, then log in again) or run as root" >&2
        return 1
    fi
    if printf '%s' "$err" | grep -qi 'maximum supported API version'; then
        _nc_docker_api_pin
        if _nc_docker_ok; then
            echo "docker: engine running (API pinned to $DOCKER_API_VERSION)"
            return 0
        fi
    fi

    local deadline=$((SECONDS + 60))
    if [ "$(cat /proc/1/comm 2>/dev/null)" = systemd ]; then
        echo "docker: starting the docker service (systemctl start docker) ..."
        if ! nc_sudo systemctl start docker; then
            echo "docker: systemctl start docker failed; see: journalctl -u docker --no-pager -n 50" >&2
            nc_sudo journalctl -u docker --no-pager -n 15 >&2 2>/dev/null || true
            return 1
        fi
        while [ "$SECONDS" -lt "$deadline" ]; do
            if _nc_docker_ok; then
                _nc_docker_api_pin
                echo "docker: engine running"
                return 0
            fi
            sleep 1
        done
        echo "docker: the docker service started but 'docker info' did not answer within 60 s" >&2
        nc_sudo journalctl -u docker --no-pager -n 15 >&2 2>/dev/null || true
        return 1
    fi

    # No systemd: run dockerd ourselves. If a dockerd is already running (just
    # starting up, say), wait for it instead of starting a second one.
    local pid=""
    if [ -r /var/run/docker.pid ] && _nc_alive "$(cat /var/run/docker.pid 2>/dev/null)" &&
       [ "$(cat "/proc/$(cat /var/run/docker.pid)/comm" 2>/dev/null)" = dockerd ]; then
        pid="$(cat /var/run/docker.pid)"
        echo "docker: dockerd (pid $pid) is running but not answering yet; waiting ..."
    fi

    # Flag sets to try in order: plain dockerd first; the fallbacks are for
    # sandboxes without iptables/bridge support or overlayfs. Containers in
    # this project use network none or host only, so --bridge=none is fine.
    local attempts=()
    if [ -n "${NANOCLAW_DOCKERD_FLAGS:-}" ]; then
        attempts=("$NANOCLAW_DOCKERD_FLAGS")
    else
        attempts=("" "--iptables=false --bridge=none" "--iptables=false --bridge=none --storage-driver=vfs")
    fi

    if [ "$(id -u)" -ne 0 ]; then
        nc_sudo -v || { echo "docker: need sudo to start dockerd" >&2; return 1; }
    fi
    local flags i=0
    while :; do
        if [ -z "$pid" ]; then
            [ "$i" -lt "${#attempts[@]}" ] || break
            flags="${attempts[$i]}"
            i=$((i + 1))
            echo "docker: starting dockerd${flags:+ $flags} (log: $NC_DOCKERD_LOG) ..."
            # shellcheck disable=SC2086  # flags are words on purpose
            pid="$(_nc_spawn_dockerd $flags)" || return 1
        fi
        while [ "$SECONDS" -lt "$deadline" ] && _nc_alive "$pid"; do
            if _nc_docker_ok; then
                _nc_docker_api_pin
                if [ -n "${flags:-}" ]; then
                    echo "docker: engine running with dockerd flags: $flags"
                    case "$flags" in *--bridge=none*)
                        echo "docker: note: no bridge network; containers (and image builds) need network none or host" ;;
                    esac
                else
                    echo "docker: engine running"
                fi
                return 0
            fi
            sleep 0.5
        done
        if [ "$SECONDS" -ge "$deadline" ]; then
            echo "docker: dockerd did not answer 'docker info' within 60 s" >&2
            _nc_dockerd_log_tail 10
            return 1
        fi
        echo "docker: dockerd${flags:+ $flags} exited during start-up" >&2
        _nc_dockerd_log_tail 4
        pid=""
    done
    echo "docker: could not start dockerd with any of the flag sets tried" >&2
    _nc_dockerd_log_tail 10
    return 1
}

ensure_base_image() {
    local image="${BASE_IMAGE:-nanoclaw-base:bookworm}"
    if docker image inspect "$image" >/dev/null 2>&1; then
        echo "base image: $image present"
        return 0
    fi
    echo "base image: $image missing; building it (about 40 s) ..."
    BASE_IMAGE="$image" bash "$NC_ROOT/agent-container/make-base.sh"
}

# The interpreter for the venv: NANOCLAW_PYTHON, else python3 if >= 3.11,
# else the newest python3.1x >= 3.11 on PATH.
_nc_find_python() {
    local cand
    for cand in ${NANOCLAW_PYTHON:-} python3 python3.14 python3.13 python3.12 python3.11; do
        command -v "$cand" >/dev/null 2>&1 || continue
        if "$cand" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)' 2>/dev/null; then
            echo "$cand"
            return 0
        fi
        [ -n "${NANOCLAW_PYTHON:-}" ] && [ "$cand" = "$NANOCLAW_PYTHON" ] && break
    done
    return 1
}

ensure_venv() {
    local venv="$NC_ROOT/.venv" stamp="$NC_ROOT/.venv/.nanoclaw-installed" py
    if ! "$venv/bin/python" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)' >/dev/null 2>&1; then
        if ! py="$(_nc_find_python)"; then
            echo "venv: Python >= 3.11 is required; found: $(python3 --version 2>&1 || echo 'no python3')" >&2
            echo "venv: install python3.11 or newer (or set NANOCLAW_PYTHON=/path/to/python3.11)" >&2
            return 1
        fi
        echo "venv: creating .venv with $py ($("$py" --version 2>&1)) ..."
        "$py" -m venv --clear "$venv" || { echo "venv: '$py -m venv' failed (on Debian/Ubuntu: apt-get install python3-venv)" >&2; return 1; }
        rm -f "$stamp"
    fi
    if [ -f "$stamp" ] && [ ! "$NC_ROOT/pyproject.toml" -nt "$stamp" ]; then
        echo "venv: .venv up to date"
        return 0
    fi
    echo "venv: pip install -e '.[test]' ..."
    (cd "$NC_ROOT" && "$venv/bin/python" -m pip install -q --disable-pip-version-check -e '.[test]') || {
        echo "venv: pip install -e '.[test]' failed" >&2; return 1; }
    touch "$stamp"
}

# What the tests need beyond the service: Podman (CONTAINER_RUNTIME=podman)
# with catatonit, its --init, and systemd-analyze to verify the unit file.
# Installing Debian's systemd package does not make it PID 1.
ensure_test_tools() {
    local missing=()
    _nc_have podman || missing+=(podman)
    [ -x /usr/libexec/podman/catatonit ] || _nc_pkg_installed catatonit || missing+=(catatonit)
    _nc_have systemd-analyze || missing+=(systemd)
    # the egress tests: a remote host in a network namespace (ip, iptables), TLS (openssl), curl
    _nc_have ip || missing+=(iproute2)
    _nc_have iptables || missing+=(iptables)
    _nc_have openssl || missing+=(openssl)
    _nc_have curl || missing+=(curl)
    # the dashboard's browser tests drive Debian's Chromium with Playwright (no browser download)
    _nc_have chromium || missing+=(chromium)
    if [ "${#missing[@]}" -eq 0 ]; then
        echo "test tools: all present"
        return 0
    fi
    _nc_apt_install "test tools" "${missing[@]}"
}

# The attack tests (tests/security/) run the service as an ordinary user whose
# uid equals the container's, 1000; a fresh machine may have no such user.
ensure_test_user() {
    local name
    if name="$(getent passwd 1000 | cut -d: -f1)" && [ -n "$name" ]; then
        echo "test user: uid 1000 is $name"
        return 0
    fi
    if ! getent group 1000 >/dev/null; then
        nc_sudo groupadd --gid 1000 nanoclaw-test || return 1
    fi
    nc_sudo useradd --uid 1000 --gid 1000 --no-create-home --shell /usr/sbin/nologin nanoclaw-test || {
        echo "test user: could not create nanoclaw-test with uid 1000" >&2
        return 1
    }
    echo "test user: created nanoclaw-test (uid 1000)"
}

nc_podman_socket() {
    if [ "$(id -u)" -eq 0 ]; then
        echo /run/podman/podman.sock
    else
        echo "${XDG_RUNTIME_DIR:-/run/user/$(id -u)}/podman/podman.sock"
    fi
}

_nc_podman_ok() {
    timeout 10 podman --remote --url "unix://$(nc_podman_socket)" version >/dev/null 2>&1
}

# Podman gives containers nofile and nproc limits of 1048576 unless
# containers.conf says otherwise. A root without CAP_SYS_RESOURCE (a sandbox)
# cannot grant those, and every container fails with "error setting rlimit
# type 7: operation not permitted"; cap them at what this shell may grant
# (nproc also at 32768, the limit podman sets for itself and its conmon).
# Prints "changed" when it rewrote the file.
_nc_podman_ulimits() {
    local capeff conf=/etc/containers/containers.conf.d/90-nanoclaw-ulimits.conf nofile nproc want
    capeff="$(awk '/^CapEff:/ { print $2 }' /proc/self/status)"
    if [ "$(id -u)" -ne 0 ] || (( (16#${capeff:-0} >> 24) & 1 )); then
        return 0
    fi
    nofile="$(ulimit -Hn)"
    nproc="$(ulimit -Hu)"
    [ "$nofile" = unlimited ] && nofile=1048576
    if [ "$nproc" = unlimited ] || [ "$nproc" -gt 32768 ]; then nproc=32768; fi
    want="$(printf '# written by nanoclaw scripts/lib.sh: this root lacks CAP_SYS_RESOURCE\n[containers]\ndefault_ulimits = ["nofile=%s:%s", "nproc=%s:%s"]' "$nofile" "$nofile" "$nproc" "$nproc")"
    if [ "$(cat "$conf" 2>/dev/null)" != "$want" ]; then
        mkdir -p "$(dirname "$conf")"
        printf '%s\n' "$want" >"$conf"
        echo "podman: container ulimits capped at nofile=$nofile nproc=$nproc ($conf)" >&2
        echo changed
    fi
}

# Podman's Docker-compatible API socket, for the tests (and CONTAINER_RUNTIME=
# podman). Started detached like dockerd: its own session, no inherited
# descriptors, output to a log. `--time=0`: it never exits on idle.
ensure_podman() {
    local sock log="${NC_PODMAN_LOG:-/var/log/nanoclaw-podman.log}" changed pid
    if ! _nc_have podman; then
        echo "podman: not installed (run ensure_test_tools, or apt-get install podman catatonit)" >&2
        return 1
    fi
    sock="$(nc_podman_socket)"
    changed="$(_nc_podman_ulimits)"
    if _nc_podman_ok && [ -z "$changed" ]; then
        echo "podman: API socket answering at $sock ($(podman --remote --url "unix://$sock" version -f '{{.Server.Version}}' 2>/dev/null || echo '?'))"
        return 0
    fi
    if [ -n "$changed" ]; then
        pid="$(pgrep -f "podman system service --time=0 unix://$sock" | head -n 1 || true)"
        [ -n "$pid" ] && kill "$pid" 2>/dev/null && sleep 1
    fi
    if [ "$(cat /proc/1/comm 2>/dev/null)" = systemd ] && [ -z "$changed" ]; then
        echo "podman: starting podman.socket ..."
        if [ "$(id -u)" -eq 0 ]; then systemctl start podman.socket; else systemctl --user start podman.socket; fi &&
            _nc_podman_ok && { echo "podman: API socket answering at $sock"; return 0; }
        echo "podman: podman.socket did not answer; starting the service by hand" >&2
    fi
    mkdir -p "$(dirname "$sock")" 2>/dev/null || true
    [ "$(id -u)" -eq 0 ] || log="${XDG_RUNTIME_DIR:-/tmp}/nanoclaw-podman.log"
    echo "podman: starting podman system service at $sock (log: $log) ..."
    (
        for fd in /proc/$BASHPID/fd/*; do
            fd="${fd##*/}"
            if [ "$fd" -gt 2 ] 2>/dev/null; then eval "exec $fd>&-" 2>/dev/null || true; fi
        done
        exec nohup setsid podman system service --time=0 "unix://$sock" >>"$log" 2>&1 </dev/null
    ) &
    local deadline=$((SECONDS + 30))
    while [ "$SECONDS" -lt "$deadline" ]; do
        if _nc_podman_ok; then
            echo "podman: API socket answering at $sock"
            return 0
        fi
        sleep 0.5
    done
    echo "podman: the API socket at $sock did not answer within 30 s; the end of $log:" >&2
    tail -n 8 "$log" >&2 2>/dev/null || true
    return 1
}
