#!/usr/bin/env bash
# Run.sh - build and run Streamboard locally: server + projector.
#
#   ./Run.sh             dev build (target/debug), the profile ./scripts/test.sh
#                        uses: the two commands share their build output
#   ./Run.sh --release   optimized build (target/release), a separate full build
#   ./Run.sh --lan       listen on every interface (0.0.0.0), so a phone on the
#                        same network can reach the server (the React Native
#                        example, the page); prints the address to use and what
#                        that exposes. Also STREAMBOARD_LAN=1. Without a
#                        STREAMBOARD__AUTH__JWT_SECRET it uses a random secret
#                        kept in .run/jwt-secret instead of the dev profile's
#                        public one.
#
# Builds the board page served at http://127.0.0.1:8080/ (clients/web; needs
# Node 20+; rebuilt only when its sources change). Ensures Redis
# (127.0.0.1:6379) and PostgreSQL (127.0.0.1:5432) are running
# (starting or installing them if needed); without them only the in-memory
# quick-win mode under /quick is served. Writes .run/env: `source .run/env` in
# another shell to use the CLIs (streamboard token|tail, projector parked|...).
#
# Ctrl-C stops the server, the projector and a Redis this script started
# (its data stays in .run/redis/); PostgreSQL is left running.
# Preset STREAMBOARD_ENV / STREAMBOARD__* variables are respected;
# STREAMBOARD_SKIP_SERVICES=1 leaves Redis/PostgreSQL management to you.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
# shellcheck source=scripts/services.sh
. scripts/services.sh
# shellcheck source=scripts/clients.sh
. scripts/clients.sh

profile=dev lan=${STREAMBOARD_LAN:-0}
for arg in "$@"; do
    case $arg in
    --release) profile=release ;;
    --lan) lan=1 ;;
    -h | --help)
        sed -n '2,/^set -euo/{/^set -euo/d; s/^# \{0,1\}//; p}' "$0"
        exit 0
        ;;
    *) sb_die "unknown argument '$arg' (try --help)" ;;
    esac
done

root=$PWD
mkdir -p .run # logs, env file, Redis data (git-ignored)

server_pid='' projector_pid='' cleaned=0
# Stop what this script started: server and projector, then a Redis it started.
cleanup() {
    ((cleaned)) && return 0
    cleaned=1
    trap '' INT TERM # a second Ctrl-C must not cut the clean-up short
    local pid i
    if [[ -n $server_pid$projector_pid ]]; then
        sb_step "Stopping the server and the projector"
        for pid in $server_pid $projector_pid; do kill -TERM "$pid" 2>/dev/null || true; done
        for ((i = 0; i < 150; i++)); do # they get 15 s to finish in-flight work
            kill -0 $server_pid $projector_pid 2>/dev/null || break
            sleep 0.1
        done
        for pid in $server_pid $projector_pid; do kill -KILL "$pid" 2>/dev/null || true; done
        wait 2>/dev/null || true
    fi
    if [[ -n $SB_REDIS_STATE$SB_PG_STATE ]]; then
        sb_stop_started_services
        sb_step "Stopped. Services:"
        sb_services_report
    fi
}
trap 'cleanup; exit 130' INT
trap 'cleanup; exit 143' TERM
trap cleanup EXIT

sb_ensure_build_tools
build=(cargo build -p streamboard -p projector --bins)
[[ $profile == dev ]] || build+=(--release)
bin="${CARGO_TARGET_DIR:-target}/$([[ $profile == dev ]] && echo debug || echo release)"
bin=$(mkdir -p "$bin" && cd "$bin" && pwd)
sb_step "Building ($profile profile): ${build[*]}"
if [[ ! -x $bin/streamboard ]]; then
    if [[ $profile == dev ]]; then
        sb_info "first build: 8 to 15 minutes on 2 cores; later ones take seconds to a minute (README.md)"
    else
        sb_info "first release build: 10 to 18 minutes on 2 cores; a change then costs minutes (README.md)"
    fi
fi
started=$SECONDS
"${build[@]}"
sb_info "built in $((SECONDS - started)) s: $bin/streamboard, $bin/projector"

# The board page at / (clients/web, built with Node; rebuilt only when its
# sources changed). Without it the server still runs; / says how to build it.
sb_step "Board page (clients/web/dist)"
sb_build_page || sb_warn "could not build the board page (needs Node 20+ and npm): / explains how"
export STREAMBOARD__SERVER__WEB_DIR="${STREAMBOARD__SERVER__WEB_DIR:-$root/clients/web/dist}"

export STREAMBOARD_ENV="${STREAMBOARD_ENV:-dev}"
if ((lan)); then
    # Every interface, on the port asked for (8080 by default).
    port=${STREAMBOARD__SERVER__ADDR:-127.0.0.1:8080}
    export STREAMBOARD__SERVER__ADDR="0.0.0.0:${port##*:}"
    if [[ -z ${STREAMBOARD__AUTH__JWT_SECRET:-} ]]; then
        # The dev profile's built-in secret is public: anyone could sign tokens.
        (umask 077 && [[ -s .run/jwt-secret ]] || od -An -tx1 -N32 /dev/urandom | tr -d ' \n' >.run/jwt-secret)
        STREAMBOARD__AUTH__JWT_SECRET=$(cat .run/jwt-secret)
        export STREAMBOARD__AUTH__JWT_SECRET
    fi
fi
export STREAMBOARD__REDIS__URL="${STREAMBOARD__REDIS__URL:-redis://127.0.0.1:6379}"
export STREAMBOARD__POSTGRES__URL="${STREAMBOARD__POSTGRES__URL:-postgres://postgres@127.0.0.1:5432/streamboard}"

sb_step "Checking Redis and PostgreSQL"
deps_ok=1
if [[ ${STREAMBOARD_SKIP_SERVICES:-0} == 1 ]]; then
    sb_info "STREAMBOARD_SKIP_SERVICES=1: using the configured URLs as they are"
else
    db=${STREAMBOARD__POSTGRES__URL##*/}
    db=${db%%\?*}
    # A Redis started here keeps its data in .run/redis/ across runs.
    if ! SB_REDIS_DIR="$root/.run/redis" sb_ensure_services; then
        deps_ok=0
    elif ! sb_pg_create_db "${db:-streamboard}" || ! sb_pg_ensure_access "$STREAMBOARD__POSTGRES__URL"; then
        sb_warn "could not prepare database '${db:-streamboard}'"
        deps_ok=0
    fi
    sb_services_report
fi
if ((!deps_ok)); then
    sb_warn "Redis/PostgreSQL unavailable: starting quick-win mode only (/quick)"
    unset STREAMBOARD__REDIS__URL STREAMBOARD__POSTGRES__URL
    sb_stop_started_services # a Redis started above is of no use now
fi

# The environment the server and projector run with, for the CLIs in another
# shell. It may hold a JWT secret: readable by you only.
(
    umask 077
    {
        echo "# Written by ./Run.sh ($(date -u +%FT%TZ)). In another shell: source .run/env"
        echo "# then: streamboard token --analytics | streamboard tail | projector parked"
        for name in $(compgen -e | grep -E '^STREAMBOARD(_ENV$|__)' | sort); do
            printf 'export %s=%q\n' "$name" "${!name}"
        done
        printf 'export STREAMBOARD_CONFIG_DIR=%q\n' "${STREAMBOARD_CONFIG_DIR:-$root/config}"
        # shellcheck disable=SC2016 # $PATH is expanded where the file is sourced
        printf 'export PATH=%q:"$PATH"\n' "$bin"
    } >.run/env.tmp
    mv .run/env.tmp .run/env
)

sb_step "Starting server (STREAMBOARD_ENV=$STREAMBOARD_ENV, log: .run/server.log)"
"$bin/streamboard" > >(tee -i .run/server.log) 2>&1 &
server_pid=$!

if ((deps_ok)); then
    sb_step "Starting projector (log: .run/projector.log)"
    "$bin/projector" >.run/projector.log 2>&1 &
    projector_pid=$!
fi

# Wait for "streamboard listening on http://ADDR" and show how to use it.
url=''
for _ in $(seq 1 60); do
    url=$(grep -o 'listening on http://[^[:space:]]*' .run/server.log 2>/dev/null | head -n 1 | cut -d' ' -f3) || true
    if [[ -n $url ]] || ! kill -0 "$server_pid" 2>/dev/null; then break; fi
    sleep 0.5
done
if [[ -n $url ]]; then
    curl_url=$(sed -E 's#//(127\.0\.0\.1|0\.0\.0\.0|\[::\])#//localhost#; s#^http://##' <<<"$url")
    url=$(sed -E 's#//0\.0\.0\.0#//127.0.0.1#' <<<"$url")
    sb_step "Streamboard is up at $url"
    sb_info "board page:   $url/   (a quick-win board: $url/?board=<uuid>; event-sourced: add &mode=api)"
    sb_info "try:          curl -s $curl_url/ready"
    if ((deps_ok)); then
        sb_info "other shell:  source .run/env   (then: streamboard token --analytics, streamboard tail, projector parked)"
        if [[ $SB_REDIS_STATE == started ]]; then
            sb_info "Ctrl-C:       stops the server, the projector and Redis (started here); PostgreSQL keeps running"
        elif [[ -n $SB_REDIS_STATE ]]; then
            sb_info "Ctrl-C:       stops the server and the projector; Redis and PostgreSQL keep running"
        else # STREAMBOARD_SKIP_SERVICES=1
            sb_info "Ctrl-C:       stops the server and the projector"
        fi
    else
        sb_info "(quick-win mode only: endpoints needing Redis/PostgreSQL are unavailable)"
        sb_info "Ctrl-C:       stops the server"
    fi
elif kill -0 "$server_pid" 2>/dev/null; then
    sb_warn "server has not reported its address yet; see .run/server.log"
fi
if ((lan)) && [[ -n $url ]]; then
    lan_ip=$(hostname -I 2>/dev/null | tr ' ' '\n' | grep -E '^[0-9]+(\.[0-9]+){3}$' | grep -v '^127\.' | head -n 1) || true
    phone_url="http://${lan_ip:-<LAN address of this machine>}:${url##*:}"
    sb_step "On a phone on the same network: $phone_url/"
    sb_info "(React Native: new Streamboard({ baseUrl: \"$phone_url\", ... }))"
    sb_warn "--lan: the server listens on every interface of this machine. Anyone who can reach"
    sb_warn "  $phone_url can read and change every quick-win board (no login there), register"
    sb_warn "  and try logins on /api, and the dev profile allows any CORS origin. Use a network you"
    sb_warn "  trust (not a café's), and stop it with Ctrl-C when done. Tokens are signed with the"
    sb_warn "  secret in .run/jwt-secret (or STREAMBOARD__AUTH__JWT_SECRET), not the dev profile's public one."
fi

# Run until the server exits; a projector exit is reported but not fatal.
while true; do
    exited='' status=0 pids=("$server_pid")
    [[ -z $projector_pid ]] || pids+=("$projector_pid")
    wait -n -p exited "${pids[@]}" || status=$?
    if [[ ${exited:-} == "$server_pid" ]]; then
        server_pid=''
        sb_step "Server exited with status $status (see .run/server.log)"
        exit "$status"
    elif [[ -n ${exited:-} && ${exited} == "$projector_pid" ]]; then
        sb_warn "projector exited with status $status (see .run/projector.log); server keeps running"
        projector_pid=''
    fi
done
