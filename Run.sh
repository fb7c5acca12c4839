#!/usr/bin/env bash
# Run.sh - build and run Streamboard locally: server + projector.
#
# Ensures Redis (127.0.0.1:6379) and PostgreSQL (127.0.0.1:5432) are running
# (starting or installing them if needed); without them only the in-memory
# quick-win mode under /quick is served. Ctrl-C stops everything.
# Preset STREAMBOARD_ENV / STREAMBOARD__* variables are respected;
# STREAMBOARD_SKIP_SERVICES=1 leaves Redis/PostgreSQL management to you.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
# shellcheck source=scripts/services.sh
. scripts/services.sh

sb_have cargo || sb_die "cargo not found on PATH (install Rust: https://rustup.rs)"
mkdir -p .run # logs (git-ignored)

sb_step "Building release binaries"
cargo build --release --workspace --bins

export STREAMBOARD_ENV="${STREAMBOARD_ENV:-dev}"
export STREAMBOARD__REDIS__URL="${STREAMBOARD__REDIS__URL:-redis://127.0.0.1:6379}"
export STREAMBOARD__POSTGRES__URL="${STREAMBOARD__POSTGRES__URL:-postgres://postgres@127.0.0.1:5432/streamboard}"

sb_step "Checking Redis and PostgreSQL"
deps_ok=1
if [[ ${STREAMBOARD_SKIP_SERVICES:-0} == 1 ]]; then
    sb_info "STREAMBOARD_SKIP_SERVICES=1: using the configured URLs as they are"
else
    db=${STREAMBOARD__POSTGRES__URL##*/}
    db=${db%%\?*}
    if ! sb_ensure_services; then
        deps_ok=0
    elif ! sb_pg_create_db "${db:-streamboard}" || ! sb_pg_ensure_access "$STREAMBOARD__POSTGRES__URL"; then
        sb_warn "could not prepare database '${db:-streamboard}'"
        deps_ok=0
    fi
fi
if ((!deps_ok)); then
    sb_warn "Redis/PostgreSQL unavailable: starting quick-win mode only (/quick)"
    unset STREAMBOARD__REDIS__URL STREAMBOARD__POSTGRES__URL
fi

server_pid='' projector_pid=''
stop_children() {
    trap - INT TERM
    local pid
    for pid in $server_pid $projector_pid; do kill -TERM "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
}
trap 'sb_step "Stopping"; stop_children; exit 130' INT
trap 'sb_step "Stopping"; stop_children; exit 143' TERM
trap stop_children EXIT

sb_step "Starting server (STREAMBOARD_ENV=$STREAMBOARD_ENV, log: .run/server.log)"
target/release/streamboard > >(tee -i .run/server.log) 2>&1 &
server_pid=$!

if ((deps_ok)); then
    sb_step "Starting projector (log: .run/projector.log)"
    target/release/projector >.run/projector.log 2>&1 &
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
    sb_step "Streamboard is up at $url   (Ctrl-C to stop)"
    sb_info "try: curl -s $curl_url/quick/boards"
    ((deps_ok)) || sb_info "(quick-win mode only: endpoints needing Redis/PostgreSQL are unavailable)"
elif kill -0 "$server_pid" 2>/dev/null; then
    sb_warn "server has not reported its address yet; see .run/server.log"
fi

# Run until the server exits; a projector exit is reported but not fatal.
while true; do
    exited='' status=0 pids=("$server_pid")
    [[ -z $projector_pid ]] || pids+=("$projector_pid")
    wait -n -p exited "${pids[@]}" || status=$?
    if [[ ${exited:-} == "$server_pid" ]]; then
        sb_step "Server exited with status $status"
        exit "$status"
    elif [[ -n ${exited:-} && ${exited} == "$projector_pid" ]]; then
        sb_warn "projector exited with status $status (see .run/projector.log); server keeps running"
        projector_pid=''
    fi
done
