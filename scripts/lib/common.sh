# shellcheck shell=bash
# Helpers shared by scripts/test-deps and scripts/check-compose. Source it; do not run it.
# Every message goes to stderr: stdout is reserved for what a script means to print
# (test-deps prints `export` lines that callers eval).

GATEHOUSE_TOOLS_DIR="${GATEHOUSE_TOOLS_DIR:-$HOME/.cache/gatehouse/tools}"
GATEHOUSE_VENV="$GATEHOUSE_TOOLS_DIR/venv"

log() { printf '[%s] %s\n' "${GATEHOUSE_LOG_TAG:-deps}" "$*" >&2; }
die() { printf '[%s] ERROR: %s\n' "${GATEHOUSE_LOG_TAG:-deps}" "$*" >&2; exit 1; }

# Never let apt, pip or anything else wait for an answer on a terminal.
export DEBIAN_FRONTEND=noninteractive
export PIP_NO_INPUT=1
export PIP_DISABLE_PIP_VERSION_CHECK=1

_gh_apt_updated=0
# apt_try_install PKG...: install Debian packages (runs `apt-get update` once per script
# run). Returns non-zero with a message on stderr instead of exiting, for optional tools.
# Does not rely on `set -e` (callers may run it in an `if`/`||` context, where bash
# disables errexit).
apt_try_install() {
    if ! command -v apt-get >/dev/null 2>&1; then
        log "apt-get is not available; install $* by hand"
        return 1
    fi
    local sudo=""
    if [ "$(id -u)" -ne 0 ]; then
        if ! command -v sudo >/dev/null 2>&1; then
            log "need root (or sudo) to install $*"
            return 1
        fi
        sudo="sudo -n"
    fi
    # Wait for a concurrent apt/dpkg run instead of failing on its lock.
    local lock_wait=(-o DPkg::Lock::Timeout=300)
    if [ "$_gh_apt_updated" -eq 0 ]; then
        log "apt-get update"
        if ! $sudo apt-get "${lock_wait[@]}" update -qq </dev/null >&2; then
            log "apt-get update failed"
            return 1
        fi
        _gh_apt_updated=1
    fi
    log "apt-get install $*"
    if ! $sudo apt-get "${lock_wait[@]}" install -y -qq --no-install-recommends "$@" </dev/null >&2; then
        log "apt-get install $* failed"
        return 1
    fi
}

# apt_install PKG...: like apt_try_install, but exits the script when installing fails.
apt_install() {
    apt_try_install "$@" || die "could not install $* with apt-get (see the messages above)"
}

# with_tools_lock CMD...: run CMD holding an exclusive lock on the tools dir, so that two
# concurrent runs do not build the same virtualenv at once.
with_tools_lock() {
    mkdir -p "$GATEHOUSE_TOOLS_DIR"
    if command -v flock >/dev/null 2>&1; then
        (
            flock -w 600 9 || die "timed out waiting for the lock on $GATEHOUSE_TOOLS_DIR"
            "$@"
        ) 9>"$GATEHOUSE_TOOLS_DIR/.lock"
    else
        "$@"
    fi
}

# ensure_venv: make sure $GATEHOUSE_VENV is a working virtualenv (creates or repairs it).
ensure_venv() {
    if [ -x "$GATEHOUSE_VENV/bin/python" ] && "$GATEHOUSE_VENV/bin/python" -m pip --version >/dev/null 2>&1; then
        return 0
    fi
    if [ -e "$GATEHOUSE_VENV" ]; then
        log "virtualenv $GATEHOUSE_VENV is broken; recreating it"
        rm -rf "$GATEHOUSE_VENV"
    fi
    if ! command -v python3 >/dev/null 2>&1; then
        apt_install python3 python3-venv
    fi
    log "creating virtualenv $GATEHOUSE_VENV"
    if ! python3 -m venv "$GATEHOUSE_VENV" >&2 2>/dev/null; then
        # Debian's python3 needs python3-venv (ensurepip) for `-m venv`.
        rm -rf "$GATEHOUSE_VENV"
        apt_install python3-venv
        python3 -m venv "$GATEHOUSE_VENV" >&2 || die "python3 -m venv $GATEHOUSE_VENV failed"
    fi
    "$GATEHOUSE_VENV/bin/python" -m pip --version >/dev/null 2>&1 \
        || die "the virtualenv $GATEHOUSE_VENV has no pip"
}

# venv_pip_install PKG...: install PyPI packages into the tools virtualenv.
venv_pip_install() {
    ensure_venv
    log "pip install $* (into $GATEHOUSE_VENV)"
    "$GATEHOUSE_VENV/bin/python" -m pip install --quiet "$@" </dev/null >&2 \
        || die "pip install $* failed"
}

# nats_version_ok BIN: true when BIN runs and reports nats-server >= 2.10.
nats_version_ok() {
    local bin="$1" out major minor
    [ -n "$bin" ] || return 1
    out="$("$bin" --version 2>&1 </dev/null)" || return 1
    # "nats-server: v2.15.1"
    if [[ "$out" =~ v([0-9]+)\.([0-9]+) ]]; then
        major="${BASH_REMATCH[1]}"
        minor="${BASH_REMATCH[2]}"
        [ "$major" -gt 2 ] || { [ "$major" -eq 2 ] && [ "$minor" -ge 10 ]; }
    else
        return 1
    fi
}
