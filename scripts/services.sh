# shellcheck shell=bash
# scripts/services.sh - shared helpers for Run.sh and scripts/test.sh.
#
# Source it; do not execute it. Provides:
#   sb_step / sb_info / sb_warn / sb_die   uniform output
#   sb_ensure_build_tools                  cargo and a C compiler (installs gcc if missing)
#   sb_ensure_services                     make local Redis (127.0.0.1:6379) and
#                                          PostgreSQL (127.0.0.1:5432) reachable:
#                                          check, start if installed, install if missing;
#                                          remembers what it started (below)
#   sb_stop_started_services               stop the Redis that sb_ensure_services started
#                                          (PostgreSQL is left running, see below)
#   sb_services_report                     one line each: Redis / PostgreSQL, who started them
#   sb_pg_ensure_access URL                check passwordless access as URL says
#   sb_pg_create_db NAME                   create a database if it does not exist
#   sb_venv DIR NAME==VERSION              a Python virtualenv in DIR with that package
#
# What sb_ensure_services found or did, for the caller to report and undo:
#   SB_REDIS_STATE / SB_PG_STATE   "running" (was up already) or "started" (by us)
#   SB_REDIS_PID                   pid of the redis-server we started
#   SB_PG_CLUSTER                  "<version> main" of the cluster we started
# A Redis we start is ours to stop. PostgreSQL is a system service holding the
# durable copy of the data: we start it if needed but never stop it.
#
# Knobs: SB_NEED_REDIS_BINARIES=1 also requires redis-server/redis-cli on PATH
# (tests start extra Redis instances), SB_NO_INSTALL=1 never runs apt-get,
# SB_REDIS_DIR=DIR makes a Redis we start persist its data (AOF) in DIR
# (default: no persistence).

SB_REDIS_HOST=127.0.0.1 SB_REDIS_PORT=6379
SB_PG_HOST=127.0.0.1 SB_PG_PORT=5432
SB_PG_FRESH=${SB_PG_FRESH:-0} # 1 once this script installed PostgreSQL itself
SB_REDIS_STATE='' SB_REDIS_PID='' SB_PG_STATE='' SB_PG_CLUSTER=''

sb_step() { printf '\n==> %s\n' "$*"; }
sb_info() { printf '    %s\n' "$*"; }
sb_warn() { printf 'WARNING: %s\n' "$*" >&2; }
sb_die() { printf 'ERROR: %s\n' "$*" >&2; exit 1; }
sb_have() { command -v "$1" >/dev/null 2>&1; }

# Run a command as root (directly, or through passwordless sudo).
sb_as_root() {
    if [[ $(id -u) -eq 0 ]]; then "$@"
    elif sb_have sudo; then sudo -n "$@"
    else return 1
    fi
}

# Run a command as the postgres OS user (unix-socket peer auth).
sb_as_postgres() { sb_as_root runuser -u postgres -- "$@"; }

# Retry "$@" once a second, up to $1 times.
sb_retry() {
    local tries=$1 i
    shift
    for ((i = 0; i < tries; i++)); do
        "$@" && return 0
        sleep 1
    done
    return 1
}

# Make cargo reachable in non-login shells (rustup installs into ~/.cargo).
if ! sb_have cargo && [[ -f "$HOME/.cargo/env" ]]; then
    # shellcheck source=/dev/null
    . "$HOME/.cargo/env"
fi

sb_redis_up() {
    if sb_have redis-cli; then
        [[ $(redis-cli -h "$SB_REDIS_HOST" -p "$SB_REDIS_PORT" ping 2>/dev/null) == PONG ]]
    else # no client: speak RESP over bash's /dev/tcp
        local reply=''
        { exec 3<>"/dev/tcp/$SB_REDIS_HOST/$SB_REDIS_PORT"; } 2>/dev/null || return 1
        printf 'PING\r\n' >&3
        read -r -t 2 reply <&3 || true
        exec 3<&-
        [[ $reply == +PONG* ]]
    fi
}

sb_pg_up() { sb_have pg_isready && pg_isready -q -h "$SB_PG_HOST" -p "$SB_PG_PORT"; }

sb_redis_installed() { sb_have redis-server && sb_have redis-cli; }

# Newest PostgreSQL major version with a cluster config ("" if none).
sb_pg_version() {
    # shellcheck disable=SC2012  # directory names are plain version numbers
    ls /etc/postgresql 2>/dev/null | sort -V | tail -n 1
}

sb_pg_installed() { [[ -n $(sb_pg_version) ]] && sb_have pg_ctlcluster && sb_have psql; }

# sb_install_packages PACKAGE... : apt-get install them (unless SB_NO_INSTALL=1).
sb_install_packages() {
    if [[ ${SB_NO_INSTALL:-0} == 1 ]]; then
        sb_warn "SB_NO_INSTALL=1: not installing $*"
        return 1
    fi
    if ! sb_have apt-get; then
        sb_warn "apt-get not found: install $* yourself"
        return 1
    fi
    sb_info "installing $* with apt-get (may take a minute)"
    local apt=(env DEBIAN_FRONTEND=noninteractive apt-get -qq -o DPkg::Lock::Timeout=120)
    if ! { sb_as_root "${apt[@]}" update && sb_as_root "${apt[@]}" install -y "$@"; } </dev/null; then
        sb_warn "apt-get install $* failed (are you root or do you have passwordless sudo?)"
        return 1
    fi
}

# Rust and a C compiler/linker (rustc links with cc; mimalloc is C).
sb_ensure_build_tools() {
    sb_have cargo || sb_die "cargo not found on PATH: install Rust 1.92 or newer (https://rustup.rs), then open a new shell"
    if ! sb_have cc; then
        sb_install_packages gcc libc6-dev || sb_die "no C compiler (cc): install gcc (Debian/Ubuntu: apt-get install gcc)"
    fi
}

sb_start_redis() {
    local args=(--daemonize yes --bind "$SB_REDIS_HOST" --port "$SB_REDIS_PORT" --save "")
    if [[ -n ${SB_REDIS_DIR:-} ]]; then
        mkdir -p "$SB_REDIS_DIR"
        SB_REDIS_DIR=$(cd "$SB_REDIS_DIR" && pwd)
        args+=(--dir "$SB_REDIS_DIR" --appendonly yes --logfile "$SB_REDIS_DIR/redis.log")
        sb_info "starting Redis on $SB_REDIS_HOST:$SB_REDIS_PORT (data in $SB_REDIS_DIR)"
    else
        args+=(--appendonly no)
        sb_info "starting Redis on $SB_REDIS_HOST:$SB_REDIS_PORT (no persistence)"
    fi
    redis-server "${args[@]}" >/dev/null || true
    sb_retry 15 sb_redis_up || return 1
    SB_REDIS_STATE=started
    SB_REDIS_PID=$(redis-cli -h "$SB_REDIS_HOST" -p "$SB_REDIS_PORT" info server 2>/dev/null |
        sed -n 's/^process_id:\([0-9]*\).*/\1/p')
}

# Stop the Redis sb_start_redis started (it saves its AOF first, if it has one).
sb_stop_started_services() {
    local pid=$SB_REDIS_PID i
    [[ $SB_REDIS_STATE == started && -n $pid ]] || return 0
    SB_REDIS_PID=''
    kill -TERM "$pid" 2>/dev/null || return 0
    for ((i = 0; i < 100; i++)); do
        kill -0 "$pid" 2>/dev/null || { SB_REDIS_STATE=stopped; return 0; }
        sleep 0.1
    done
    sb_warn "Redis (pid $pid) did not stop within 10 s"
}

# What runs, and who started it; after sb_stop_started_services, what stopped.
sb_services_report() {
    case $SB_REDIS_STATE in
    running) sb_info "Redis      $SB_REDIS_HOST:$SB_REDIS_PORT  was already running: left running" ;;
    started) sb_info "Redis      $SB_REDIS_HOST:$SB_REDIS_PORT  started by this script (pid ${SB_REDIS_PID:-?}): stopped when it exits" ;;
    stopped) sb_info "Redis      $SB_REDIS_HOST:$SB_REDIS_PORT  started by this script: stopped" ;;
    esac
    case $SB_PG_STATE in
    running) sb_info "PostgreSQL $SB_PG_HOST:$SB_PG_PORT  was already running: left running" ;;
    started) sb_info "PostgreSQL $SB_PG_HOST:$SB_PG_PORT  started by this script: left running (stop it: pg_ctlcluster $SB_PG_CLUSTER stop)" ;;
    esac
}

sb_start_postgres() {
    local ver
    ver=$(sb_pg_version)
    sb_info "starting PostgreSQL $ver (cluster main)"
    # Fails harmlessly with "already running" if a previous attempt raced us.
    sb_as_root pg_ctlcluster --skip-systemctl-redirect "$ver" main start || true
    sb_retry 30 sb_pg_up || return 1
    SB_PG_STATE=started SB_PG_CLUSTER="$ver main"
}

sb_ensure_services() {
    local need_bins=${SB_NEED_REDIS_BINARIES:-0}
    if sb_redis_up && sb_pg_up && { [[ $need_bins != 1 ]] || sb_redis_installed; }; then
        sb_info "Redis ($SB_REDIS_HOST:$SB_REDIS_PORT) and PostgreSQL ($SB_PG_HOST:$SB_PG_PORT) are up"
        SB_REDIS_STATE=running SB_PG_STATE=running
        return 0
    fi

    local pg_was_installed=0
    sb_pg_installed && pg_was_installed=1
    if { ! sb_redis_up && ! sb_redis_installed; } || { ! sb_pg_up && ((!pg_was_installed)); } ||
        { [[ $need_bins == 1 ]] && ! sb_redis_installed; }; then
        sb_install_packages postgresql redis-server || return 1
        ((pg_was_installed)) || SB_PG_FRESH=1
    fi

    if sb_redis_up; then
        sb_info "Redis is up on $SB_REDIS_HOST:$SB_REDIS_PORT"
        SB_REDIS_STATE=running
    elif ! sb_start_redis; then
        sb_warn "Redis did not answer PING on $SB_REDIS_HOST:$SB_REDIS_PORT"
        return 1
    fi

    if sb_pg_up; then
        sb_info "PostgreSQL is up on $SB_PG_HOST:$SB_PG_PORT"
        SB_PG_STATE=running
    elif ! sb_pg_installed || ! sb_start_postgres; then
        sb_warn "PostgreSQL is not accepting connections on $SB_PG_HOST:$SB_PG_PORT"
        return 1
    fi
}

# Passwordless TCP access with the given libpq URL?
sb_pg_can_connect() { psql -w -X -q -tA -c 'SELECT 1' "$1" >/dev/null 2>&1; }

# Ensure URL is usable. A cluster we just installed (or one on CI) is switched to
# trust auth for loopback TCP, which is what the dev/test URLs expect.
sb_pg_ensure_access() {
    local url=$1 hba
    sb_pg_can_connect "$url" && return 0
    if [[ $SB_PG_FRESH == 1 || ${CI:-} == true ]]; then
        sb_info "enabling trust auth for loopback TCP connections in pg_hba.conf"
        if hba=$(cd / && sb_as_postgres psql -X -tA -c 'SHOW hba_file') && [[ -n $hba ]] &&
            { sb_as_root grep -q '^host all all 127.0.0.1/32 trust' "$hba" ||
                sb_as_root sed -i '1i host all all 127.0.0.1/32 trust\nhost all all ::1/128 trust' "$hba"; } &&
            (cd / && sb_as_postgres psql -X -q -tA -c 'SELECT pg_reload_conf()' >/dev/null); then
            sb_retry 5 sb_pg_can_connect "$url" && return 0
        fi
    fi
    sb_warn "cannot connect to $url without a password (check pg_hba.conf or put credentials in the URL)"
    return 1
}

# Create database NAME on the local server unless it exists (TCP first, then socket).
sb_pg_create_db() {
    local db=$1 q
    q="SELECT 1 FROM pg_database WHERE datname='$db'"
    if psql -w -X -h "$SB_PG_HOST" -p "$SB_PG_PORT" -U postgres -d postgres -tAc "$q" >/dev/null 2>&1; then
        psql -w -X -h "$SB_PG_HOST" -p "$SB_PG_PORT" -U postgres -d postgres -tAc "$q" | grep -q 1 ||
            createdb -w -h "$SB_PG_HOST" -p "$SB_PG_PORT" -U postgres "$db"
    else
        (cd / && { sb_as_postgres psql -X -tAc "$q" | grep -q 1 || sb_as_postgres createdb "$db"; })
    fi
}

# A virtualenv in DIR holding REQUIREMENT (pip's NAME==VERSION), made or
# brought up to date when it does not.
sb_venv() {
    local dir=$1 requirement=$2
    [[ $("$dir/bin/pip" freeze 2>/dev/null) == *"$requirement"* ]] && return 0
    sb_step "Installing $requirement into $dir"
    # Debian's python3 needs python3-venv for this.
    python3 -m venv "$dir" 2>/dev/null ||
        { sb_install_packages python3-venv && python3 -m venv "$dir"; } ||
        { sb_warn "python3 -m venv failed (install python3-venv)"; return 1; }
    "$dir/bin/pip" install --quiet --disable-pip-version-check "$requirement"
}
