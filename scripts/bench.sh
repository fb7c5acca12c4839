#!/usr/bin/env bash
# scripts/bench.sh - Streamboard's benchmarks (see docs/BENCHMARKS.md).
#
#   ./scripts/bench.sh                     build release, run every scenario RUNS
#                                          times, each on a fresh server, then the
#                                          Redis XADD baseline; print a markdown table
#   ./scripts/bench.sh quick xadd          only some: quick, ws-fanout, ws-idle, api,
#                                          projector, xadd
#
#   api:       loadgen api-mutations against the event-sourced /api; each run
#              gets a fresh server, a fresh PostgreSQL database (createdb, dropped
#              afterwards) and the local Redis; the run's Redis keys are deleted.
#   projector: tests/projector_throughput.rs (its own throwaway Redis and
#              database), RUNS times.
#
# Knobs (environment):
#   RUNS=3            runs per scenario; the table shows medians
#   PORT=18090        loopback port of the server under test
#   OUT=target/bench  where results (JSON lines, logs, table) go
#   SKIP_BUILD=1      use the binaries already in target/release
#   QUICK_ARGS / FANOUT_ARGS / IDLE_ARGS / API_ARGS   extra loadgen flags per scenario
#   PG_HOST=127.0.0.1 PG_PORT=5432 PG_USER=postgres   PostgreSQL for api
#   BENCH_BOARDS=1000 BENCH_EVENTS_PER_BOARD=100       projector test size
#   REDIS_HOST=127.0.0.1 REDIS_PORT=6379 XADD_N=200000 XADD_C=50
#   QUIET_CORES=0.3 QUIET_MAX=120   before each run, wait up to QUIET_MAX s
#                     for the machine's other work to drop below QUIET_CORES
#
# Everything runs on loopback and every run is bounded in time: the load
# generator (target/release/loadgen) stops by itself. The generator shares the
# machine's cores with the server, which the table's CPU columns show.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
# shellcheck source=scripts/services.sh
. scripts/services.sh

RUNS=${RUNS:-3}
PORT=${PORT:-18090}
OUT=${OUT:-target/bench}
REDIS_HOST=${REDIS_HOST:-127.0.0.1}
REDIS_PORT=${REDIS_PORT:-6379}
XADD_N=${XADD_N:-200000}
XADD_C=${XADD_C:-50}
QUICK_ARGS=${QUICK_ARGS:-}
FANOUT_ARGS=${FANOUT_ARGS:-}
IDLE_ARGS=${IDLE_ARGS:-}
API_ARGS=${API_ARGS:-}
PG_HOST=${PG_HOST:-127.0.0.1}
PG_PORT=${PG_PORT:-5432}
PG_USER=${PG_USER:-postgres}
export BENCH_BOARDS=${BENCH_BOARDS:-1000} BENCH_EVENTS_PER_BOARD=${BENCH_EVENTS_PER_BOARD:-100}

# Targets (docs/BENCHMARKS.md).
QUICK_TARGET=50000       # mutations/s through /quick
FANOUT_TARGET=100000     # WebSocket deliveries/s ...
FANOUT_P99_TARGET=25     # ... with p99 delivery latency <= 25 ms
IDLE_TARGET=10           # KiB of server RSS per idle WebSocket connection
API_TARGET=10000         # mutations/s through /api ...
API_P99_TARGET=10        # ... with p99 latency <= 10 ms
PROJECTOR_TARGET=25000   # events/s folded into PostgreSQL by one projector

SCENARIOS=("$@")
[[ ${#SCENARIOS[@]} -gt 0 ]] || SCENARIOS=(quick ws-fanout ws-idle api projector xadd)
for s in "${SCENARIOS[@]}"; do
    case $s in quick | ws-fanout | ws-idle | api | projector | xadd) ;;
    *) sb_die "unknown scenario '$s' (quick, ws-fanout, ws-idle, api, projector, xadd)" ;;
    esac
done
wants() { local s; for s in "${SCENARIOS[@]}"; do [[ $s == "$1" ]] && return 0; done; return 1; }

sb_have jq || sb_die "jq is needed to summarise results (apt-get install jq)"

# Many WebSocket connections need many descriptors, in the server and here.
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
sb_info "open files limit: $(ulimit -n)"

mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
rm -f "$OUT"/*.jsonl "$OUT"/*.csv "$OUT"/*.log "$OUT"/*.txt "$OUT"/table.md

if [[ ${SKIP_BUILD:-0} != 1 ]]; then
    sb_step "Building release binaries (streamboard, loadgen)"
    cargo build --release -p streamboard -p loadgen --bins
    if wants projector; then
        sb_step "Building the projector and the throughput test (release)"
        cargo build --release -p projector
        cargo test --release --test projector_throughput --no-run
    fi
fi
# Copies, so a rebuild during the run cannot swap the binaries under it.
BIN=$OUT/bin
mkdir -p "$BIN"
cp target/release/streamboard target/release/loadgen "$BIN/"
if wants projector; then cp target/release/projector "$BIN/"; fi

{
    echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
    echo "git: $(git rev-parse --short HEAD 2>/dev/null || echo none)$(git diff --quiet 2>/dev/null || echo ' (dirty tree)')"
    echo "cpu: $(nproc) x $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')"
    echo "memory: $(awk '/MemTotal/ {printf "%.1f GiB", $2/1048576}' /proc/meminfo)"
    echo "kernel: $(uname -sr)"
    echo "rustc: $(rustc --version 2>/dev/null || echo unknown)"
    echo "loadavg at start: $(cut -d' ' -f1-3 /proc/loadavg)"
} >"$OUT/env.txt"
sed 's/^/    /' "$OUT/env.txt"

SERVER_PID=
SERVER_ENV=() # extra NAME=VALUE settings for the next start_server
start_server() { # $1: log name
    local log=$OUT/server-$1.log i
    if (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; then
        sb_die "something already listens on 127.0.0.1:$PORT (set PORT=...)"
    fi
    (
        exec env STREAMBOARD__SERVER__ADDR="127.0.0.1:$PORT" \
            STREAMBOARD__LOG__FILTER=warn \
            STREAMBOARD__WEBSOCKET__MAX_CONNECTIONS=20000 \
            ${SERVER_ENV[@]+"${SERVER_ENV[@]}"} \
            "$BIN/streamboard"
    ) >"$log" 2>&1 &
    SERVER_PID=$!
    for ((i = 0; i < 300; i++)); do
        grep -q 'streamboard listening on' "$log" 2>/dev/null && return 0
        kill -0 "$SERVER_PID" 2>/dev/null || break
        sleep 0.1
    done
    tail -20 "$log" >&2
    sb_die "the server did not start (log: $log)"
}
stop_server() {
    [[ -n $SERVER_PID ]] || return 0
    kill -TERM "$SERVER_PID" 2>/dev/null || true
    wait "$SERVER_PID" 2>/dev/null || true
    SERVER_PID=
}
API_DB=
drop_api_db() {
    [[ -n $API_DB ]] || return 0
    dropdb -h "$PG_HOST" -p "$PG_PORT" -U "$PG_USER" --if-exists "$API_DB" || true
    API_DB=
}
# The keys an api run leaves in Redis: board streams and their side keys,
# the registry, users' board sets, WebSocket bookkeeping.
clean_api_redis() {
    local pattern
    for pattern in 'board:{*' 'boards:registry' 'user:*:boards' 'ws:*'; do
        redis-cli -h "$REDIS_HOST" -p "$REDIS_PORT" --scan --pattern "$pattern" |
            xargs -r -n 500 redis-cli -h "$REDIS_HOST" -p "$REDIS_PORT" DEL >/dev/null
    done
}
cleanup() {
    stop_server
    if [[ -n $API_DB ]]; then
        drop_api_db
        clean_api_redis
    fi
}
trap cleanup EXIT

# busy_cores: cores the machine keeps busy over one second (from /proc/stat).
busy_cores() {
    local a b
    a=$(awk '/^cpu / {print $2+$3+$4+$7+$8+$9, $5+$6; exit}' /proc/stat)
    sleep 1
    b=$(awk '/^cpu / {print $2+$3+$4+$7+$8+$9, $5+$6; exit}' /proc/stat)
    awk -v a="$a" -v b="$b" 'BEGIN { split(a, x, " "); split(b, y, " ");
        busy = y[1] - x[1]; idle = y[2] - x[2];
        printf "%.2f", (busy + idle > 0) ? busy / (busy + idle) * '"$(nproc)"' : 0 }'
}
# wait_quiet: this machine is shared; before a run, wait up to QUIET_MAX
# seconds for other work to drop below QUIET_CORES busy cores.
QUIET_CORES=${QUIET_CORES:-0.3}
QUIET_MAX=${QUIET_MAX:-120}
wait_quiet() {
    local waited=0 busy
    while :; do
        busy=$(busy_cores)
        if awk -v b="$busy" -v q="$QUIET_CORES" 'BEGIN { exit !(b <= q) }'; then
            sb_info "machine busy before the run: $busy cores (waited ${waited}s)"
            return 0
        fi
        if ((waited >= QUIET_MAX)); then
            sb_info "machine still busy ($busy cores) after ${waited}s; running anyway"
            return 0
        fi
        waited=$((waited + 1))
    done
}

# run_scenario NAME LOADGEN-ARGS...: RUNS runs, each on a fresh server.
# With API_MODE=1, each run also gets a fresh PostgreSQL database, and the
# server uses it and the local Redis (the event-sourced /api).
run_scenario() {
    local name=$1 run
    shift
    for ((run = 1; run <= RUNS; run++)); do
        sb_step "$name: run $run of $RUNS"
        SERVER_ENV=()
        if [[ ${API_MODE:-0} == 1 ]]; then
            API_DB=sb_bench_$$_$run
            createdb -h "$PG_HOST" -p "$PG_PORT" -U "$PG_USER" "$API_DB"
            SERVER_ENV=("STREAMBOARD__REDIS__URL=redis://$REDIS_HOST:$REDIS_PORT"
                "STREAMBOARD__POSTGRES__URL=postgres://$PG_USER@$PG_HOST:$PG_PORT/$API_DB")
        fi
        start_server "$name-$run"
        wait_quiet
        # timeout: a last guard; every scenario is bounded by its own flags.
        if ! timeout 600 "$BIN/loadgen" --addr "127.0.0.1:$PORT" --server-pid "$SERVER_PID" "$@" \
            >>"$OUT/$name.jsonl" 2>"$OUT/$name-$run.txt"; then
            cat "$OUT/$name-$run.txt" >&2
            stop_server
            sb_die "$name run $run failed"
        fi
        sed 's/^/    /' "$OUT/$name-$run.txt"
        stop_server
        if [[ ${API_MODE:-0} == 1 ]]; then
            drop_api_db
            clean_api_redis
        fi
        sleep 1
    done
}

# median FILE JQ-EXPR: the median over the file's JSON lines (lower middle).
median() {
    jq -s "[.[] | $2 | select(. != null)] | sort | if length == 0 then null else .[(length - 1) / 2 | floor] end" "$1"
}
# runs FILE JQ-EXPR: every run's value, "a / b / c".
runs() { jq -r "$2" "$1" | paste -sd';' | sed 's#;#; #g'; }
pass() { if [[ $1 == true ]]; then echo "**pass**"; else echo "**FAIL**"; fi; }

# shellcheck disable=SC2086 # *_ARGS are word lists on purpose
if wants quick; then run_scenario quick quick-mutations $QUICK_ARGS; fi
# shellcheck disable=SC2086
if wants ws-fanout; then run_scenario ws-fanout ws-fanout $FANOUT_ARGS; fi
# shellcheck disable=SC2086
if wants ws-idle; then run_scenario ws-idle ws-idle $IDLE_ARGS; fi
if wants api; then
    sb_have createdb || sb_die "api needs createdb/dropdb (PostgreSQL client tools)"
    [[ $(redis-cli -h "$REDIS_HOST" -p "$REDIS_PORT" ping 2>/dev/null) == PONG ]] ||
        sb_die "api needs Redis on $REDIS_HOST:$REDIS_PORT"
    # shellcheck disable=SC2086
    API_MODE=1 run_scenario api api-mutations --redis-url "redis://$REDIS_HOST:$REDIS_PORT" $API_ARGS
fi
if wants projector; then
    for ((run = 1; run <= RUNS; run++)); do
        sb_step "projector: run $run of $RUNS ($BENCH_BOARDS boards x $BENCH_EVENTS_PER_BOARD events)"
        wait_quiet
        if ! STREAMBOARD_PROJECTOR_BIN="$BIN/projector" timeout 600 \
            cargo test --release --test projector_throughput -- --ignored --nocapture \
            >"$OUT/projector-$run.txt" 2>&1; then
            tail -30 "$OUT/projector-$run.txt" >&2
            sb_die "projector run $run failed"
        fi
        grep -E '^(projector throughput|CPU seconds)' "$OUT/projector-$run.txt" | sed 's/^/    /'
        # "... in 3.21 s = 31234 events/s" and "CPU seconds: projector 1.2, PostgreSQL backends 2.3, Redis 0.4 ..."
        awk '
            /^projector throughput:/ { for (i = 1; i <= NF; i++) { if ($i == "s" && $(i+1) == "=") secs = $(i-1); if ($i == "events/s") eps = $(i-1) } }
            /^CPU seconds:/ { gsub(",", ""); for (i = 1; i <= NF; i++) { if ($i == "projector") p = $(i+1); if ($i == "backends") pg = $(i+1); if ($i == "Redis") r = $(i+1); if ($i == "events" && $(i+1) == "per") epc = $(i-1) } }
            END { printf "{\"events_per_s\":%s,\"seconds\":%s,\"cpu_projector_s\":%s,\"cpu_postgres_s\":%s,\"cpu_redis_s\":%s,\"events_per_cpu_s\":%s}\n", eps, secs, p, pg, r, epc }
        ' "$OUT/projector-$run.txt" >>"$OUT/projector.jsonl"
    done
fi

XADD=
if wants xadd; then
    sb_step "Baseline: redis-benchmark XADD on $REDIS_HOST:$REDIS_PORT"
    if ! sb_have redis-benchmark; then
        sb_warn "redis-benchmark not installed: no XADD baseline"
    elif [[ $(redis-cli -h "$REDIS_HOST" -p "$REDIS_PORT" ping 2>/dev/null) != PONG ]]; then
        sb_warn "no Redis on $REDIS_HOST:$REDIS_PORT: no XADD baseline"
    else
        key="bench:stream:streamboard:$$"
        for ((run = 1; run <= RUNS; run++)); do
            wait_quiet
            redis-benchmark -h "$REDIS_HOST" -p "$REDIS_PORT" -q --csv -n "$XADD_N" -c "$XADD_C" \
                XADD "$key" '*' f v | tail -1 >>"$OUT/xadd.csv"
            redis-cli -h "$REDIS_HOST" -p "$REDIS_PORT" DEL "$key" >/dev/null
            sed 's/^/    /' <(tail -1 "$OUT/xadd.csv")
        done
        # "test","rps","avg","min","p50","p95","p99","max" -> JSON lines
        tr -d '"' <"$OUT/xadd.csv" | awk -F, '{printf "{\"rps\":%s,\"p50_ms\":%s,\"p99_ms\":%s}\n", $2, $5, $7}' >"$OUT/xadd.jsonl"
        XADD=$(median "$OUT/xadd.jsonl" .rps)
    fi
fi

ratio() { # value / XADD, two decimals
    if [[ -n $XADD && $1 != null ]]; then jq -rn "($1 / $XADD * 100 | round) / 100 | tostring + \"x\""; else echo "n/a"; fi
}

# Throughput per CPU-second the server used: less sensitive to the noise of
# other processes than raw throughput.
PER_CORE_Q='(if .cpu.server_cores > 0 then (.mutations_per_s / .cpu.server_cores | round) else null end)'
PER_CORE_F='(if .cpu.server_cores > 0 then (.deliveries_per_s / .cpu.server_cores | round) else null end)'

sb_step "Results (medians of $RUNS runs)"
{
    echo "| Scenario | Metric | Median | Runs | Target | Result | vs XADD |"
    echo "|---|---|---|---|---|---|---|"
    if [[ -s $OUT/quick.jsonl ]]; then
        f=$OUT/quick.jsonl
        m=$(median "$f" .mutations_per_s)
        echo "| quick-mutations | mutations/s | $m | $(runs "$f" .mutations_per_s) | >= $QUICK_TARGET | $(pass "$(jq -n "$m >= $QUICK_TARGET")") | $(ratio "$m") |"
        echo "| quick-mutations | p50 / p99 latency (ms) | $(median "$f" .latency.p50_ms) / $(median "$f" .latency.p99_ms) | $(runs "$f" '"\(.latency.p50_ms)/\(.latency.p99_ms)"') | | | |"
        echo "| quick-mutations | errors + non-2xx | $(median "$f" '.errors + .non_200') | $(runs "$f" '.errors + .non_200') | 0 | | |"
        echo "| quick-mutations | CPU cores: server / loadgen / other processes | $(median "$f" .cpu.server_cores) / $(median "$f" .cpu.loadgen_cores) / $(median "$f" .cpu.other_cores) | $(runs "$f" '"\(.cpu.server_cores)/\(.cpu.loadgen_cores)/\(.cpu.other_cores)"') | | | |"
        echo "| quick-mutations | server RSS growth per mutation (bytes) | $(median "$f" .memory.bytes_per_mutation) | $(runs "$f" .memory.bytes_per_mutation) | | | |"
        echo "| quick-mutations | mutations per server CPU-second | $(median "$f" "$PER_CORE_Q") | $(runs "$f" "$PER_CORE_Q") | | | |"
    fi
    if [[ -s $OUT/ws-fanout.jsonl ]]; then
        f=$OUT/ws-fanout.jsonl
        m=$(median "$f" .deliveries_per_s)
        p=$(median "$f" .latency.p99_ms)
        ok=$(jq -n "$m >= $FANOUT_TARGET and $p <= $FANOUT_P99_TARGET")
        echo "| ws-fanout | deliveries/s | $m | $(runs "$f" .deliveries_per_s) | >= $FANOUT_TARGET | $(pass "$(jq -n "$m >= $FANOUT_TARGET")") | $(ratio "$m") |"
        echo "| ws-fanout | p99 delivery latency (ms) | $p | $(runs "$f" .latency.p99_ms) | <= $FANOUT_P99_TARGET | $(pass "$(jq -n "$p <= $FANOUT_P99_TARGET")") | |"
        echo "| ws-fanout | p50 delivery latency (ms) | $(median "$f" .latency.p50_ms) | $(runs "$f" .latency.p50_ms) | | | |"
        echo "| ws-fanout | lost / gaps / server closes | $(median "$f" .lost) / $(median "$f" .gaps) / $(median "$f" .server_closes) | $(runs "$f" '"\(.lost)/\(.gaps)/\(.server_closes)"') | 0 | | |"
        echo "| ws-fanout | mutations/s (writer) | $(median "$f" .mutations_per_s) | $(runs "$f" .mutations_per_s) | | | |"
        echo "| ws-fanout | CPU cores: server / loadgen / other processes | $(median "$f" .cpu.server_cores) / $(median "$f" .cpu.loadgen_cores) / $(median "$f" .cpu.other_cores) | $(runs "$f" '"\(.cpu.server_cores)/\(.cpu.loadgen_cores)/\(.cpu.other_cores)"') | | | |"
        echo "| ws-fanout | deliveries per server CPU-second | $(median "$f" "$PER_CORE_F") | $(runs "$f" "$PER_CORE_F") | | | |"
        echo "| ws-fanout | overall | | | both targets | $(pass "$ok") | |"
    fi
    if [[ -s $OUT/ws-idle.jsonl ]]; then
        f=$OUT/ws-idle.jsonl
        m=$(median "$f" .kib_per_connection)
        echo "| ws-idle | server RSS KiB per idle connection | $m | $(runs "$f" .kib_per_connection) | <= $IDLE_TARGET | $(pass "$(jq -n "$m <= $IDLE_TARGET")") | |"
        echo "| ws-idle | same, as the slope of RSS over open connections | $(median "$f" .kib_per_connection_slope) | $(runs "$f" .kib_per_connection_slope) | | | |"
        echo "| ws-idle | connections opened | $(median "$f" .opened) | $(runs "$f" .opened) | | | |"
    fi
    if [[ -s $OUT/api.jsonl ]]; then
        f=$OUT/api.jsonl
        m=$(median "$f" .mutations_per_s)
        p=$(median "$f" .latency.p99_ms)
        echo "| api-mutations | mutations/s | $m | $(runs "$f" .mutations_per_s) | >= $API_TARGET | $(pass "$(jq -n "$m >= $API_TARGET")") | $(ratio "$m") |"
        echo "| api-mutations | p99 latency (ms) | $p | $(runs "$f" .latency.p99_ms) | <= $API_P99_TARGET | $(pass "$(jq -n "$p <= $API_P99_TARGET")") | |"
        echo "| api-mutations | p50 latency (ms) | $(median "$f" .latency.p50_ms) | $(runs "$f" .latency.p50_ms) | | | |"
        echo "| api-mutations | errors + non-2xx | $(median "$f" '.errors + .non_200') | $(runs "$f" '.errors + .non_200') | 0 | | |"
        echo "| api-mutations | stream entries = boards + tasks + 2xx PATCHes | | $(runs "$f" '"\(.events_check.xlen_sum) = \(.events_check.expected): \(.events_check.consistent)"') | exact | $(pass "$(jq -s 'all(.[]; .events_check.consistent == true)' "$f")") | |"
        echo "| api-mutations | CPU cores: server / loadgen / other processes | $(median "$f" .cpu.server_cores) / $(median "$f" .cpu.loadgen_cores) / $(median "$f" .cpu.other_cores) | $(runs "$f" '"\(.cpu.server_cores)/\(.cpu.loadgen_cores)/\(.cpu.other_cores)"') | | | |"
        echo "| api-mutations | mutations per server CPU-second | $(median "$f" "$PER_CORE_Q") | $(runs "$f" "$PER_CORE_Q") | | | |"
    fi
    if [[ -s $OUT/projector.jsonl ]]; then
        f=$OUT/projector.jsonl
        m=$(median "$f" .events_per_s)
        echo "| projector ($BENCH_BOARDS boards x $BENCH_EVENTS_PER_BOARD) | events/s | $m | $(runs "$f" .events_per_s) | >= $PROJECTOR_TARGET | $(pass "$(jq -n "$m >= $PROJECTOR_TARGET")") | $(ratio "$m") |"
        echo "| projector | CPU s: projector / PostgreSQL / Redis | $(median "$f" .cpu_projector_s) / $(median "$f" .cpu_postgres_s) / $(median "$f" .cpu_redis_s) | $(runs "$f" '"\(.cpu_projector_s)/\(.cpu_postgres_s)/\(.cpu_redis_s)"') | | | |"
        echo "| projector | events per CPU-second (all three) | $(median "$f" .events_per_cpu_s) | $(runs "$f" .events_per_cpu_s) | | | |"
    fi
    if [[ -s $OUT/xadd.jsonl ]]; then
        f=$OUT/xadd.jsonl
        echo "| redis-benchmark XADD (-c $XADD_C) | requests/s | $XADD | $(runs "$f" .rps) | baseline | | 1.00x |"
        echo "| redis-benchmark XADD | p50 / p99 latency (ms) | $(median "$f" .p50_ms) / $(median "$f" .p99_ms) | | | | |"
    fi
} | tee "$OUT/table.md"
echo
sb_info "loadavg at end: $(cut -d' ' -f1-3 /proc/loadavg)"
sb_info "raw results: $OUT/*.jsonl, summaries $OUT/*-N.txt, server logs $OUT/server-*.log"
