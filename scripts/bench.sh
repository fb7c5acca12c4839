#!/usr/bin/env bash
# scripts/bench.sh - Streamboard's benchmarks, as ratios to a baseline
# measured in the same run (see docs/BENCHMARKS.md).
#
#   ./scripts/bench.sh                 install/start what is missing, build
#                                      release, measure the redis-benchmark XADD
#                                      baseline, run every scenario RUNS times,
#                                      print a table with PASS/FAIL per target
#   ./scripts/bench.sh quick api       only some: xadd (always measured first),
#                                      quick, ws-fanout, ws-idle, api, api-latency
#                                      (after api: it runs at a quarter of api's
#                                      rate), hot-board, projector, history, scale,
#                                      replicas, peers
#   BENCH_QUICK=1 ./scripts/bench.sh   every scenario tiny, one run (~2 minutes):
#                                      a smoke test of the harness, not a result
#
# Every target is a ratio to the same-run XADD baseline or a count that does
# not depend on the machine (see TARGETS below). The scenarios share one Redis
# that this script starts on BENCH_REDIS_PORT (so other users of the machine's
# Redis neither disturb the command counts nor get flushed), flushed between
# runs and stopped at the end; the /api scenarios get a fresh PostgreSQL
# database per run, dropped afterwards.
#
# Knobs (environment):
#   RUNS=3 (1 with BENCH_QUICK)  runs per scenario; the table shows medians
#   PORT=18090                   loopback port of the server under test
#   OUT=target/bench             results: *.jsonl, summary.json, table.md, logs
#   SKIP_BUILD=1                 use the binaries already in target/release
#   BENCH_REDIS_PORT=6390        the Redis this script starts for the run
#   PG_HOST=127.0.0.1 PG_PORT=5432 PG_USER=postgres
#   QUIET_CORES=0.3 QUIET_MAX=10 before each run, wait up to QUIET_MAX s for
#                                the machine's other work to drop below QUIET_CORES
#   Sizes (defaults; BENCH_QUICK=1 shrinks them):
#   XADD_N=200000 XADD_C=50      redis-benchmark requests and clients
#   DURATION=10 WARMUP=2         seconds measured / warmed up by the closed loops
#   LOOP_CONNECTIONS=64 LOOP_BOARDS=100 LOOP_TASKS=10   quick and api mutations
#   FANOUT_CLIENTS=2000 FANOUT_BOARDS=20 FANOUT_RATE=1050
#   IDLE_CONNECTIONS=5000 IDLE_BOARDS=100
#   HOT_WRITERS=32 HOT_TASKS=32
#   PROJECTOR_BOARDS=200 PROJECTOR_EVENTS_PER_BOARD=500
#   HISTORY_EVENTS=100000 HISTORY_READERS=4   one /api board's history, then its
#                                analytics and time travel, each measured DURATION s
#   SCALE_INSTANCES=3 SCALE_STEPS=1000,10000 SCALE_WINDOW=10
#   PEERS_LOADS="10000:1000 40000:2000 60000:2000 100000:2000"   `peers`: offered
#                                deliveries/s:subscribers, each run PEERS_RUNS=2 times
#                                on each stack (Socket.IO 4.8 and Streamboard, in turn)
#   PEERS_DURATION=20 PEERS_WARMUP=3   seconds measured / warmed up per peers run
#   PEERS_SOCKETIO_PORT=18100    the two Socket.IO instances listen here and +1
#   BENCH_CLUSTER_PORTS="6391 6392 6393"  the 3-master cluster of `scale`
#   BENCH_REPLICA_PORTS="6394 ... 6399"   `replicas`: 3 masters and a replica each
#   QUICK_ARGS / FANOUT_ARGS / IDLE_ARGS / API_ARGS / HOT_ARGS / PROJECTOR_ARGS / HISTORY_ARGS
#                                extra loadgen flags per scenario
#
# Everything runs on loopback and every run is bounded in time: loadgen stops
# by itself and each run is wrapped in `timeout`. The generator shares the
# machine's cores with the server; each result records the CPU split.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
# shellcheck source=scripts/services.sh
. scripts/services.sh

BENCH_QUICK=${BENCH_QUICK:-0}
if [[ $BENCH_QUICK == 1 ]]; then
    RUNS=${RUNS:-1} XADD_N=${XADD_N:-50000} DURATION=${DURATION:-3} WARMUP=${WARMUP:-1}
    LOOP_BOARDS=${LOOP_BOARDS:-20} LOOP_TASKS=${LOOP_TASKS:-5}
    FANOUT_CLIENTS=${FANOUT_CLIENTS:-200} FANOUT_BOARDS=${FANOUT_BOARDS:-10} FANOUT_RATE=${FANOUT_RATE:-200}
    IDLE_CONNECTIONS=${IDLE_CONNECTIONS:-500} IDLE_BOARDS=${IDLE_BOARDS:-20}
    PROJECTOR_BOARDS=${PROJECTOR_BOARDS:-50} PROJECTOR_EVENTS_PER_BOARD=${PROJECTOR_EVENTS_PER_BOARD:-100}
    HISTORY_EVENTS=${HISTORY_EVENTS:-10000}
    SCALE_STEPS=${SCALE_STEPS:-100,500} SCALE_WINDOW=${SCALE_WINDOW:-3}
    PEERS_LOADS=${PEERS_LOADS:-2000:200} PEERS_DURATION=${PEERS_DURATION:-3} PEERS_WARMUP=${PEERS_WARMUP:-1}
fi
RUNS=${RUNS:-3}
PORT=${PORT:-18090}
OUT=${OUT:-target/bench}
BENCH_REDIS_PORT=${BENCH_REDIS_PORT:-6390}
PG_HOST=${PG_HOST:-127.0.0.1}
PG_PORT=${PG_PORT:-5432}
PG_USER=${PG_USER:-postgres}
XADD_N=${XADD_N:-200000}
XADD_C=${XADD_C:-50}
DURATION=${DURATION:-10}
WARMUP=${WARMUP:-2}
LOOP_CONNECTIONS=${LOOP_CONNECTIONS:-64}
LOOP_BOARDS=${LOOP_BOARDS:-100}
LOOP_TASKS=${LOOP_TASKS:-10}
FANOUT_CLIENTS=${FANOUT_CLIENTS:-2000}
FANOUT_BOARDS=${FANOUT_BOARDS:-20}
FANOUT_RATE=${FANOUT_RATE:-1050}
IDLE_CONNECTIONS=${IDLE_CONNECTIONS:-5000}
IDLE_BOARDS=${IDLE_BOARDS:-100}
HOT_WRITERS=${HOT_WRITERS:-32}
HOT_TASKS=${HOT_TASKS:-32}
PROJECTOR_BOARDS=${PROJECTOR_BOARDS:-200}
PROJECTOR_EVENTS_PER_BOARD=${PROJECTOR_EVENTS_PER_BOARD:-500}
HISTORY_EVENTS=${HISTORY_EVENTS:-100000}
HISTORY_READERS=${HISTORY_READERS:-4}
SCALE_INSTANCES=${SCALE_INSTANCES:-3}
SCALE_STEPS=${SCALE_STEPS:-1000,10000}
SCALE_WINDOW=${SCALE_WINDOW:-10}
PEERS_LOADS=${PEERS_LOADS:-10000:1000 40000:2000 60000:2000 100000:2000}
PEERS_RUNS=${PEERS_RUNS:-2}
PEERS_DURATION=${PEERS_DURATION:-20}
PEERS_WARMUP=${PEERS_WARMUP:-3}
PEERS_SOCKETIO_PORT=${PEERS_SOCKETIO_PORT:-18100}
BENCH_CLUSTER_PORTS=${BENCH_CLUSTER_PORTS:-6391 6392 6393}
BENCH_REPLICA_PORTS=${BENCH_REPLICA_PORTS:-6394 6395 6396 6397 6398 6399}
QUICK_ARGS=${QUICK_ARGS:-} FANOUT_ARGS=${FANOUT_ARGS:-} IDLE_ARGS=${IDLE_ARGS:-}
API_ARGS=${API_ARGS:-} HOT_ARGS=${HOT_ARGS:-} PROJECTOR_ARGS=${PROJECTOR_ARGS:-}
HISTORY_ARGS=${HISTORY_ARGS:-}
REDIS_URL=redis://127.0.0.1:$BENCH_REDIS_PORT

ALL_SCENARIOS=(quick ws-fanout ws-idle api api-latency hot-board projector history scale replicas peers)
SCENARIOS=("$@")
[[ ${#SCENARIOS[@]} -gt 0 ]] || SCENARIOS=("${ALL_SCENARIOS[@]}")
for s in "${SCENARIOS[@]}"; do
    [[ " xadd ${ALL_SCENARIOS[*]} " == *" $s "* ]] || sb_die "unknown scenario '$s' (xadd, ${ALL_SCENARIOS[*]})"
done
wants() { local s; for s in "${SCENARIOS[@]}"; do [[ $s == "$1" ]] && return 0; done; return 1; }
wants api-latency && ! wants api && sb_die "api-latency runs at a quarter of the api scenario's rate: name api too"
needs_postgres() { wants api || wants hot-board || wants projector || wants history || wants scale || wants replicas || wants peers; }

BENCH_STARTED=$SECONDS
sb_step "Tools and services"
sb_ensure_build_tools
SB_NEED_REDIS_BINARIES=1 sb_ensure_services
sb_services_report
sb_have redis-benchmark || sb_install_packages redis-tools || sb_die "redis-benchmark is needed (apt-get install redis-tools)"
sb_have jq || sb_install_packages jq || sb_die "jq is needed (apt-get install jq)"
if needs_postgres; then
    sb_have createdb || sb_die "the /api scenarios need createdb/dropdb (PostgreSQL client tools)"
fi
if wants peers; then
    sb_have node || sb_install_packages nodejs npm || sb_die "peers needs Node.js and npm (apt-get install nodejs npm)"
    # The Socket.IO app's packages, exactly as locked.
    [[ -f bench/peers/socketio/node_modules/.package-lock.json ]] ||
        (cd bench/peers/socketio && npm ci --no-audit --no-fund) || sb_die "npm ci in bench/peers/socketio failed"
fi

# Many WebSocket connections need many descriptors, in the server and here.
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
rm -f "$OUT"/*.jsonl "$OUT"/*.csv "$OUT"/*.log "$OUT"/*.txt "$OUT"/table.md "$OUT"/summary.json

if [[ ${SKIP_BUILD:-0} != 1 ]]; then
    sb_step "Building release binaries (streamboard, loadgen, projector)"
    cargo build --release -p streamboard -p loadgen -p projector --bins
fi
# Copies, so a rebuild during the run cannot swap the binaries under it.
BIN=$OUT/bin
mkdir -p "$BIN"
cp target/release/streamboard target/release/loadgen target/release/projector "$BIN/"

{
    echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
    echo "git: $(git rev-parse --short HEAD 2>/dev/null || echo none)$(git diff --quiet 2>/dev/null || echo ' (dirty tree)')"
    echo "cpu: $(nproc) x $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')"
    echo "memory: $(awk '/MemTotal/ {printf "%.1f GiB", $2/1048576}' /proc/meminfo)"
    echo "kernel: $(uname -sr)"
    echo "redis: $(redis-server --version | grep -o 'v=[^ ]*')"
    echo "rustc: $(rustc --version 2>/dev/null || echo unknown)"
    echo "sizes: runs $RUNS; loops ${LOOP_CONNECTIONS} conns x ${LOOP_BOARDS} boards x ${LOOP_TASKS} tasks, ${DURATION}+${WARMUP} s; fanout ${FANOUT_CLIENTS} clients/${FANOUT_BOARDS} boards at ${FANOUT_RATE}/s; idle ${IDLE_CONNECTIONS}; hot ${HOT_WRITERS} writers; projector ${PROJECTOR_BOARDS}x${PROJECTOR_EVENTS_PER_BOARD}; history ${HISTORY_EVENTS} events, ${HISTORY_READERS} readers; scale ${SCALE_INSTANCES} instances x ${SCALE_STEPS} boards, ${SCALE_WINDOW} s; peers ${PEERS_LOADS} x ${PEERS_RUNS}, ${PEERS_DURATION}+${PEERS_WARMUP} s; XADD -n ${XADD_N} -c ${XADD_C}"
    echo "loadavg at start: $(cut -d' ' -f1-3 /proc/loadavg)"
} >"$OUT/env.txt"
sed 's/^/    /' "$OUT/env.txt"

# --- The run's own Redis ----------------------------------------------------
BENCH_REDIS_PID=
bench_redis() { redis-cli -h 127.0.0.1 -p "$BENCH_REDIS_PORT" "$@"; }
start_bench_redis() {
    if bench_redis ping >/dev/null 2>&1; then
        sb_die "something already answers on 127.0.0.1:$BENCH_REDIS_PORT (set BENCH_REDIS_PORT=...)"
    fi
    redis-server --bind 127.0.0.1 --port "$BENCH_REDIS_PORT" --save '' --appendonly no \
        --daemonize yes --pidfile "$OUT/redis.pid" --logfile "$OUT/redis.log" >/dev/null
    sb_retry 15 bench_redis ping >/dev/null || sb_die "the benchmark Redis did not start ($OUT/redis.log)"
    BENCH_REDIS_PID=$(bench_redis info server | sed -n 's/^process_id:\([0-9]*\).*/\1/p')
    sb_info "benchmark Redis on 127.0.0.1:$BENCH_REDIS_PORT (pid $BENCH_REDIS_PID, no persistence)"
}
stop_bench_redis() {
    [[ -n $BENCH_REDIS_PID ]] || return 0
    kill -TERM "$BENCH_REDIS_PID" 2>/dev/null || true
    BENCH_REDIS_PID=
}
# A Redis Cluster on PORTS, REPLICAS per master:
# `scale` runs 3 masters on BENCH_CLUSTER_PORTS, `replicas` 3 masters with a
# replica each on BENCH_REPLICA_PORTS. CLUSTER_URL lists the masters.
CLUSTER_PIDS=()
CLUSTER_URL=
start_bench_cluster() { # $1: ports, $2: replicas per master
    local ports=$1 replicas=$2 port dir nodes=() urls=()
    for port in $ports; do
        if redis-cli -h 127.0.0.1 -p "$port" ping >/dev/null 2>&1; then
            sb_die "something already answers on 127.0.0.1:$port (set BENCH_CLUSTER_PORTS / BENCH_REPLICA_PORTS)"
        fi
        dir=$OUT/cluster/$port
        rm -rf "$dir" && mkdir -p "$dir"
        redis-server --bind 127.0.0.1 --port "$port" --cluster-enabled yes \
            --cluster-config-file "$dir/nodes.conf" --dir "$dir" --save '' --appendonly no \
            --daemonize yes --pidfile "$dir/redis.pid" --logfile "$dir/redis.log" >/dev/null
        sb_retry 15 redis-cli -h 127.0.0.1 -p "$port" ping >/dev/null ||
            sb_die "cluster node $port did not start ($dir/redis.log)"
        CLUSTER_PIDS+=("$(redis-cli -h 127.0.0.1 -p "$port" info server | sed -n 's/^process_id:\([0-9]*\).*/\1/p')")
        nodes+=("127.0.0.1:$port")
    done
    redis-cli --cluster create "${nodes[@]}" --cluster-replicas "$replicas" --cluster-yes >"$OUT/cluster/create.log" 2>&1 ||
        sb_die "redis-cli --cluster create failed ($OUT/cluster/create.log)"
    for port in $ports; do
        sb_retry 30 sh -c "redis-cli -h 127.0.0.1 -p $port cluster info | grep -q cluster_state:ok" ||
            sb_die "the cluster did not become ready (node $port)"
        if [[ $(redis-cli -h 127.0.0.1 -p "$port" role | head -1) == master ]]; then
            urls+=("redis://127.0.0.1:$port")
        fi
    done
    CLUSTER_URL=$(IFS=,; echo "${urls[*]}")
    sb_info "benchmark Redis Cluster: ${nodes[*]} (3 masters, $replicas replica(s) each, no persistence)"
}
flush_bench_cluster() { # $1: ports (replicas refuse FLUSHALL and follow their master)
    local port
    for port in $*; do redis-cli -h 127.0.0.1 -p "$port" flushall >/dev/null 2>&1 || true; done
}
stop_bench_cluster() {
    local pid
    for pid in ${CLUSTER_PIDS[@]+"${CLUSTER_PIDS[@]}"}; do kill -TERM "$pid" 2>/dev/null || true; done
    CLUSTER_PIDS=()
}

# --- The servers under test -----------------------------------------------
SERVER_PID=   # the last one started
SERVER_PIDS=()
SERVER_ENV=() # extra NAME=VALUE settings for the next start_server
start_server() { # $1: log name, $2: port (PORT)
    local log=$OUT/server-$1.log port=${2:-$PORT} i
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
        sb_die "something already listens on 127.0.0.1:$port (set PORT=...)"
    fi
    (
        exec env STREAMBOARD__SERVER__ADDR="127.0.0.1:$port" \
            STREAMBOARD__LOG__FILTER=warn \
            STREAMBOARD__WEBSOCKET__MAX_CONNECTIONS=20000 \
            STREAMBOARD__WEBSOCKET__MAX_CONNECTIONS_PER_USER=20000 \
            STREAMBOARD__SERVER__MAX_CONNECTIONS=30000 \
            STREAMBOARD__SERVER__MAX_CONNECTIONS_PER_ADDRESS=0 \
            STREAMBOARD__QUICK__CREATES_PER_MINUTE=100000000 \
            ${SERVER_ENV[@]+"${SERVER_ENV[@]}"} \
            "$BIN/streamboard"
    ) >"$log" 2>&1 &
    SERVER_PID=$!
    SERVER_PIDS+=("$SERVER_PID")
    for ((i = 0; i < 300; i++)); do
        grep -q 'streamboard listening on' "$log" 2>/dev/null && return 0
        kill -0 "$SERVER_PID" 2>/dev/null || break
        sleep 0.1
    done
    tail -20 "$log" >&2
    sb_die "the server did not start (log: $log)"
}
stop_server() { # every server started
    local pid
    for pid in ${SERVER_PIDS[@]+"${SERVER_PIDS[@]}"}; do kill -TERM "$pid" 2>/dev/null || true; done
    for pid in ${SERVER_PIDS[@]+"${SERVER_PIDS[@]}"}; do wait "$pid" 2>/dev/null || true; done
    SERVER_PIDS=()
    SERVER_PID=
}
# The peer benchmark's other processes: Socket.IO instances, the projector.
PEER_PIDS=()
stop_peer_processes() {
    local pid
    for pid in ${PEER_PIDS[@]+"${PEER_PIDS[@]}"}; do kill -TERM "$pid" 2>/dev/null || true; done
    for pid in ${PEER_PIDS[@]+"${PEER_PIDS[@]}"}; do wait "$pid" 2>/dev/null || true; done
    PEER_PIDS=()
}
API_DB=
drop_api_db() {
    [[ -n $API_DB ]] || return 0
    dropdb -h "$PG_HOST" -p "$PG_PORT" -U "$PG_USER" --if-exists "$API_DB" || true
    API_DB=
}
cleanup() {
    stop_peer_processes
    stop_server
    drop_api_db
    stop_bench_redis
    stop_bench_cluster
    sb_stop_started_services
}
trap cleanup EXIT

# busy_cores: cores the machine keeps busy over one second (from /proc/stat).
busy_cores() {
    local a b
    a=$(awk '/^cpu / {print $2+$3+$4+$7+$8+$9, $5+$6; exit}' /proc/stat)
    sleep 1
    b=$(awk '/^cpu / {print $2+$3+$4+$7+$8+$9, $5+$6; exit}' /proc/stat)
    awk -v a="$a" -v b="$b" -v n="$(nproc)" 'BEGIN { split(a, x, " "); split(b, y, " ");
        busy = y[1] - x[1]; idle = y[2] - x[2];
        printf "%.2f", (busy + idle > 0) ? busy / (busy + idle) * n : 0 }'
}
# wait_quiet: this machine may be shared; before a run, wait up to QUIET_MAX
# seconds for other work to drop below QUIET_CORES busy cores.
QUIET_CORES=${QUIET_CORES:-0.3}
QUIET_MAX=${QUIET_MAX:-10}
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

# run_scenario NAME LOADGEN-ARGS...: RUNS runs, each on a fresh server and a
# flushed benchmark Redis. With API_MODE=1 each run also gets a fresh
# PostgreSQL database, and the server uses it and the benchmark Redis; an
# argument @PG_URL@ stands for that database's URL.
run_scenario() {
    local name=$1 run arg args
    shift
    for ((run = 1; run <= RUNS; run++)); do
        sb_step "$name: run $run of $RUNS"
        bench_redis flushall >/dev/null
        SERVER_ENV=(${SCENARIO_SERVER_ENV[@]+"${SCENARIO_SERVER_ENV[@]}"})
        if [[ ${API_MODE:-0} == 1 ]]; then
            API_DB=sb_bench_$$_$run
            createdb -h "$PG_HOST" -p "$PG_PORT" -U "$PG_USER" "$API_DB"
            SERVER_ENV=("STREAMBOARD__REDIS__URL=$REDIS_URL"
                "STREAMBOARD__POSTGRES__URL=$(pg_url)")
        fi
        args=()
        for arg in "$@"; do
            if [[ $arg == @PG_URL@ ]]; then args+=("$(pg_url)"); else args+=("$arg"); fi
        done
        start_server "$name-$run"
        wait_quiet
        if ! timeout 900 "$BIN/loadgen" --addr "127.0.0.1:$PORT" --server-pid "$SERVER_PID" "${args[@]}" \
            >>"$OUT/$name.jsonl" 2>"$OUT/$name-$run.txt"; then
            cat "$OUT/$name-$run.txt" >&2
            sb_die "$name run $run failed"
        fi
        sed 's/^/    /' "$OUT/$name-$run.txt"
        stop_server
        drop_api_db
    done
}
pg_url() { echo "postgres://$PG_USER@$PG_HOST:$PG_PORT/$API_DB"; }

# --- The baseline: redis-benchmark XADD on the benchmark Redis --------------
# Also Redis's own CPU per XADD (/proc/<pid>/stat utime+stime), to compare
# the server's CPU per unit of work with.
proc_cpu_ticks() { awk '{ sub(/^.*\) /, ""); print $12 + $13 }' "/proc/$1/stat"; }
measure_xadd() {
    local run key=bench:xadd before after ticks
    ticks=$(getconf CLK_TCK)
    for ((run = 1; run <= RUNS; run++)); do
        sb_step "Baseline: redis-benchmark XADD -n $XADD_N -c $XADD_C, run $run of $RUNS"
        bench_redis flushall >/dev/null
        wait_quiet
        before=$(proc_cpu_ticks "$BENCH_REDIS_PID")
        redis-benchmark -h 127.0.0.1 -p "$BENCH_REDIS_PORT" -q --csv -n "$XADD_N" -c "$XADD_C" \
            XADD "$key" '*' f v | tail -1 >"$OUT/xadd-$run.csv"
        after=$(proc_cpu_ticks "$BENCH_REDIS_PID")
        sed 's/^/    /' "$OUT/xadd-$run.csv"
        # "test","rps","avg","min","p50","p95","p99","max"
        tr -d '"' <"$OUT/xadd-$run.csv" | awk -F, -v n="$XADD_N" -v cpu="$(((after - before)))" -v t="$ticks" \
            '{ printf "{\"rps\":%s,\"p50_ms\":%s,\"p99_ms\":%s,\"requests\":%d,\"redis_cpu_s\":%.2f}\n", $2, $5, $7, n, cpu / t }' \
            >>"$OUT/xadd.jsonl"
    done
}

start_bench_redis
measure_xadd
# shellcheck disable=SC2086 # *_ARGS are word lists on purpose
# The quick-win server keeps 1,000 events per board, older ones folded into
# the board's snapshot: with the default 10,000, 100 boards written at this
# rate fill the 256 MiB memory budget (quick.max_bytes) within seconds and
# every write after that is refused with 507, by design. This measures the
# steady state of a long-running server instead.
if wants quick; then
    SCENARIO_SERVER_ENV=(STREAMBOARD__QUICK__MAX_EVENTS_PER_BOARD=1000)
    run_scenario quick quick-mutations --connections "$LOOP_CONNECTIONS" --boards "$LOOP_BOARDS" \
        --tasks-per-board "$LOOP_TASKS" --duration "$DURATION" --warmup "$WARMUP" $QUICK_ARGS
    SCENARIO_SERVER_ENV=()
fi
# shellcheck disable=SC2086
if wants ws-fanout; then
    run_scenario ws-fanout ws-fanout --clients "$FANOUT_CLIENTS" --boards "$FANOUT_BOARDS" \
        --rate "$FANOUT_RATE" --duration "$DURATION" $FANOUT_ARGS
fi
# shellcheck disable=SC2086
if wants ws-idle; then
    run_scenario ws-idle ws-idle --connections "$IDLE_CONNECTIONS" --boards "$IDLE_BOARDS" $IDLE_ARGS
fi
# shellcheck disable=SC2086
if wants api; then
    API_MODE=1 run_scenario api api-mutations --redis-url "$REDIS_URL" \
        --connections "$LOOP_CONNECTIONS" --boards "$LOOP_BOARDS" --tasks-per-board "$LOOP_TASKS" \
        --duration "$DURATION" --warmup "$WARMUP" $API_ARGS
fi
# shellcheck disable=SC2086
if wants hot-board; then
    API_MODE=1 run_scenario hot-board hot-board --redis-url "$REDIS_URL" \
        --writers "$HOT_WRITERS" --tasks "$HOT_TASKS" --duration "$DURATION" --warmup "$WARMUP" $HOT_ARGS
fi
# shellcheck disable=SC2086
if wants projector; then
    API_MODE=1 run_scenario projector projector --redis-url "$REDIS_URL" --postgres-url @PG_URL@ \
        --projector-bin "$BIN/projector" \
        --boards "$PROJECTOR_BOARDS" --events-per-board "$PROJECTOR_EVENTS_PER_BOARD" $PROJECTOR_ARGS
fi
# shellcheck disable=SC2086
if wants history; then
    API_MODE=1 run_scenario history history --mode api --events "$HISTORY_EVENTS" \
        --readers "$HISTORY_READERS" --duration "$DURATION" $HISTORY_ARGS
fi

# --- Scale-out: one Redis against a 3-master cluster, in the same run -------
# For each: SCALE_INSTANCES servers watch SCALE_STEPS boards with nobody
# writing (Redis commands/s and CPU); then one server under the api loop and
# the /api fan-out. Each mode gets a fresh database and a flushed Redis.
scale_mode() { # $1: single|cluster, $2: Redis URL(s), $3: redis.cluster
    local mode=$1 url=$2 cluster=$3 i servers=() flush
    if [[ $cluster == true ]]; then flush="flush_bench_cluster $BENCH_CLUSTER_PORTS"; else flush="bench_redis flushall"; fi
    $flush >/dev/null
    API_DB=sb_bench_$$_scale_$mode
    createdb -h "$PG_HOST" -p "$PG_PORT" -U "$PG_USER" "$API_DB"
    SERVER_ENV=("STREAMBOARD__REDIS__URL=$url" "STREAMBOARD__REDIS__CLUSTER=$cluster"
        "STREAMBOARD__POSTGRES__URL=$(pg_url)")

    sb_step "scale ($mode): $SCALE_INSTANCES instances watching $SCALE_STEPS boards, nobody writing"
    for ((i = 0; i < SCALE_INSTANCES; i++)); do
        start_server "scale-$mode-idle-$i" $((PORT + i))
        servers+=("127.0.0.1:$((PORT + i))")
    done
    wait_quiet
    scale_run "$mode" idle --addr "${servers[0]}" scale-idle --servers "$(IFS=,; echo "${servers[*]}")" \
        --steps "$SCALE_STEPS" --window "$SCALE_WINDOW" --redis-url "$url"
    stop_server

    sb_step "scale ($mode): api-mutations"
    $flush >/dev/null
    start_server "scale-$mode-api"
    wait_quiet
    # shellcheck disable=SC2086
    scale_run "$mode" api --addr "127.0.0.1:$PORT" --server-pid "$SERVER_PID" api-mutations \
        --redis-url "$url" --connections "$LOOP_CONNECTIONS" --boards "$LOOP_BOARDS" \
        --tasks-per-board "$LOOP_TASKS" --duration "$DURATION" --warmup "$WARMUP" $API_ARGS
    stop_server

    sb_step "scale ($mode): ws-fanout through /api"
    $flush >/dev/null
    start_server "scale-$mode-fanout"
    wait_quiet
    # shellcheck disable=SC2086
    scale_run "$mode" fanout --addr "127.0.0.1:$PORT" --server-pid "$SERVER_PID" ws-fanout --api \
        --clients "$FANOUT_CLIENTS" --boards "$FANOUT_BOARDS" --rate "$FANOUT_RATE" \
        --duration "$DURATION" $FANOUT_ARGS
    stop_server
    drop_api_db
}
# scale_run MODE PART LOADGEN-ARGS...: one loadgen run; its JSON line,
# tagged with the Redis mode, goes to scale.jsonl.
scale_run() {
    local mode=$1 part=$2 log=$OUT/scale-$1-$2.txt
    shift 2
    if ! timeout 900 "$BIN/loadgen" "$@" 2>"$log" |
        jq -c --arg r "$mode" '. + {redis: $r}' >>"$OUT/scale.jsonl"; then
        cat "$log" >&2
        sb_die "scale ($mode) $part failed"
    fi
    sed 's/^/    /' "$log"
}
if wants scale; then
    start_bench_cluster "$BENCH_CLUSTER_PORTS" 0
    scale_mode single "$REDIS_URL" false
    scale_mode cluster "$CLUSTER_URL" true
    stop_bench_cluster
fi

# --- What replica acknowledgements cost: /api writes on a cluster with a ---
# replica per master, redis.replica_acks=0 against 1, RUNS runs each, the
# settings alternating so that both see the same machine.
replicas_run() { # $1: run, $2: replica acks
    local run=$1 acks=$2 log=$OUT/replicas-$2-$1.txt
    sb_step "replicas: api-mutations with redis.replica_acks=$acks, run $run of $RUNS"
    flush_bench_cluster "$BENCH_REPLICA_PORTS"
    API_DB=sb_bench_$$_replicas_${acks}_$run
    createdb -h "$PG_HOST" -p "$PG_PORT" -U "$PG_USER" "$API_DB"
    SERVER_ENV=("STREAMBOARD__REDIS__URL=$CLUSTER_URL" "STREAMBOARD__REDIS__CLUSTER=true"
        "STREAMBOARD__REDIS__REPLICA_ACKS=$acks" "STREAMBOARD__POSTGRES__URL=$(pg_url)")
    start_server "replicas-$acks-$run"
    wait_quiet
    # shellcheck disable=SC2086
    if ! timeout 900 "$BIN/loadgen" --addr "127.0.0.1:$PORT" --server-pid "$SERVER_PID" api-mutations \
        --redis-url "$CLUSTER_URL" --connections "$LOOP_CONNECTIONS" --boards "$LOOP_BOARDS" \
        --tasks-per-board "$LOOP_TASKS" --duration "$DURATION" --warmup "$WARMUP" $API_ARGS 2>"$log" |
        jq -c --argjson a "$acks" '. + {replica_acks: $a}' >>"$OUT/replicas.jsonl"; then
        cat "$log" >&2
        sb_die "replicas (replica_acks=$acks) run $run failed"
    fi
    sed 's/^/    /' "$log"
    stop_server
    drop_api_db
}
if wants replicas; then
    start_bench_cluster "$BENCH_REPLICA_PORTS" 1
    for ((run = 1; run <= RUNS; run++)); do
        replicas_run "$run" 0
        replicas_run "$run" 1
    done
    stop_bench_cluster
fi
# --- Peers: the same fan-out load on Socket.IO 4.8 and on Streamboard -------
# Each load (deliveries/s:subscribers) runs PEERS_RUNS times on each stack,
# the stacks in turn, each run on a fresh stack and a flushed Redis:
# Socket.IO: 2 instances of bench/peers/socketio sharing the benchmark Redis
# through the Redis Streams adapter; Streamboard: 2 release servers, the
# projector and a fresh PostgreSQL database. loadgen's `peers` opens the
# subscribers over both instances and writes to the first.
start_socketio() { # $1: run label; PEERS_ADDRS and PEERS_PIDS are set
    local i port log
    PEERS_ADDRS=() PEERS_PIDS=()
    for i in 0 1; do
        port=$((PEERS_SOCKETIO_PORT + i)) log=$OUT/peers-socketio-$1-$i.log
        if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
            sb_die "something already listens on 127.0.0.1:$port (set PEERS_SOCKETIO_PORT=...)"
        fi
        PORT=$port REDIS_URL=$REDIS_URL node bench/peers/socketio/server.js >"$log" 2>&1 &
        PEER_PIDS+=("$!") PEERS_PIDS+=("$!") PEERS_ADDRS+=("127.0.0.1:$port")
        sb_retry 50 grep -qs 'listening on' "$log" >/dev/null || sb_die "Socket.IO instance $i did not start ($log)"
    done
    PEERS_BACKEND=(--backend-pids "redis:$BENCH_REDIS_PID")
}
start_streamboard_pair() { # $1: run label; as start_socketio, plus the projector
    local i
    PEERS_ADDRS=() PEERS_PIDS=()
    API_DB=sb_bench_$$_peers
    createdb -h "$PG_HOST" -p "$PG_PORT" -U "$PG_USER" "$API_DB"
    SERVER_ENV=("STREAMBOARD__REDIS__URL=$REDIS_URL" "STREAMBOARD__POSTGRES__URL=$(pg_url)")
    for i in 0 1; do
        start_server "peers-$1-$i" $((PORT + i))
        PEERS_PIDS+=("$SERVER_PID") PEERS_ADDRS+=("127.0.0.1:$((PORT + i))")
    done
    STREAMBOARD__REDIS__URL=$REDIS_URL STREAMBOARD__POSTGRES__URL=$(pg_url) \
        STREAMBOARD__PROJECTOR__METRICS_ADDR='' STREAMBOARD__LOG__FILTER=warn \
        "$BIN/projector" >"$OUT/peers-projector-$1.log" 2>&1 &
    PEER_PIDS+=("$!")
    PEERS_BACKEND=(--backend-pids "redis:$BENCH_REDIS_PID,projector:$!" --postgres-url "$(pg_url)")
}
# `loadgen peers` against the stack just started (PEERS_ADDRS, PEERS_PIDS,
# PEERS_BACKEND), its JSON line with the run number appended to
# $OUT/<name>.jsonl; then the stack is stopped.
# $1: results name, $2: run label, $3: run, $4: seconds at most; the rest
# are loadgen's arguments.
peers_loadgen() {
    local name=$1 label=$2 run=$3 limit=$4
    shift 4
    wait_quiet
    if ! timeout "$limit" "$BIN/loadgen" peers \
        --instances "$(IFS=,; echo "${PEERS_ADDRS[*]}")" --server-pids "$(IFS=,; echo "${PEERS_PIDS[*]}")" \
        --redis-url "$REDIS_URL" "${PEERS_BACKEND[@]}" "$@" 2>"$OUT/$name-$label.txt" |
        jq -c --argjson run "$run" '. + {run: $run}' >>"$OUT/$name.jsonl"; then
        cat "$OUT/$name-$label.txt" >&2
        sb_die "$name ($label) failed"
    fi
    sed 's/^/    /' "$OUT/$name-$label.txt"
    stop_peer_processes
    stop_server
    drop_api_db
}
peers_run() { # $1: socketio|streamboard, $2: deliveries/s, $3: subscribers, $4: run
    local target=$1 deliveries=$2 subscribers=$3 run=$4 label=$1-$2-$4
    sb_step "peers: $target at $deliveries deliveries/s ($subscribers subscribers), run $run of $PEERS_RUNS"
    bench_redis flushall >/dev/null
    if [[ $target == socketio ]]; then start_socketio "$label"; else start_streamboard_pair "$label"; fi
    peers_loadgen peers "$label" "$run" $((PEERS_DURATION + PEERS_WARMUP + 180)) --target "$target" \
        --subscribers "$subscribers" --deliveries "$deliveries" \
        --duration "$PEERS_DURATION" --warmup "$PEERS_WARMUP"
}
# --- api-latency: p99 below saturation -------------------------------------
# /api writes at a quarter of the rate the api scenario reached in this run,
# paced, to the first of two servers (with the projector), each event
# delivered to subscribers on the other one only: the write's p99 and its
# delivery's, against XADD's p99.
if wants api-latency; then
    api_rate=$(jq -s 'map(.mutations_per_s) | sort | .[(length - 1) / 2 | floor]' "$OUT/api.jsonl")
    latency_writes=$(jq -n --argjson r "$api_rate" '$r / 4 | floor')
    latency_boards=20
    latency_subscribers=$((2 * latency_boards)) # all on the second server
    for ((run = 1; run <= RUNS; run++)); do
        sb_step "api-latency: $latency_writes writes/s (a quarter of $api_rate), run $run of $RUNS"
        bench_redis flushall >/dev/null
        start_streamboard_pair "latency-$run"
        peers_loadgen api-latency "$run" "$run" $((DURATION + WARMUP + 120)) --target streamboard --cross-only \
            --boards "$latency_boards" --subscribers "$latency_subscribers" \
            --deliveries $((latency_writes * latency_subscribers / latency_boards)) \
            --duration "$DURATION" --warmup "$WARMUP"
    done
fi
if wants peers; then
    for load in $PEERS_LOADS; do
        for ((run = 1; run <= PEERS_RUNS; run++)); do
            peers_run socketio "${load%%:*}" "${load##*:}" "$run"
            peers_run streamboard "${load%%:*}" "${load##*:}" "$run"
        done
    done
fi
stop_bench_redis

# --- Summary: summary.json, then the table from it --------------------------
for f in xadd "${ALL_SCENARIOS[@]}"; do touch "$OUT/$f.jsonl"; done
jq -n \
    --slurpfile xadd "$OUT/xadd.jsonl" --slurpfile quick "$OUT/quick.jsonl" \
    --slurpfile fanout "$OUT/ws-fanout.jsonl" --slurpfile idle "$OUT/ws-idle.jsonl" \
    --slurpfile api "$OUT/api.jsonl" --slurpfile latency "$OUT/api-latency.jsonl" \
    --slurpfile hot "$OUT/hot-board.jsonl" \
    --slurpfile projector "$OUT/projector.jsonl" --slurpfile history "$OUT/history.jsonl" \
    --slurpfile scale "$OUT/scale.jsonl" --slurpfile replicas "$OUT/replicas.jsonl" \
    --rawfile env "$OUT/env.txt" \
    -f scripts/bench-summary.jq >"$OUT/summary.json"
jq -r -f scripts/bench-table.jq "$OUT/summary.json" | tee "$OUT/table.md"
if wants peers; then
    echo
    jq -rs -f scripts/bench-peers-table.jq "$OUT/peers.jsonl" | tee "$OUT/peers.md" | tee -a "$OUT/table.md"
fi
echo
sb_info "loadavg at end: $(cut -d' ' -f1-3 /proc/loadavg); took $(((SECONDS - BENCH_STARTED) / 60)) min $(((SECONDS - BENCH_STARTED) % 60)) s"
sb_info "summary: $OUT/summary.json; raw results $OUT/*.jsonl, per run $OUT/*-N.txt, server logs $OUT/server-*.log"
