#!/usr/bin/env bash
# scripts/test.sh - run Streamboard's test suite (the command CI runs).
#
#   ./scripts/test.sh              all tests in the workspace (no doctests)
#   ./scripts/test.sh since_zero   extra args go to the test runner: a test-name filter,
#   ./scripts/test.sh -E 'binary(quick_ws)'    or flags (here: nextest, one test file)
#   STRICT=1 ./scripts/test.sh     also cargo fmt --check and clippy -D warnings
#   SKIP_CLUSTER=1 ./scripts/test.sh   without the second run of the Redis suites
#                                  against a Redis Cluster
#   SKIP_PG_TLS=1 ./scripts/test.sh   without the run of the /api suites over TLS
#                                  to a PostgreSQL of their own (ssl = on, verify-full)
#   SKIP_REDIS_TLS=1 ./scripts/test.sh   without the run of the Redis suites with
#                                  every test's Redis over TLS (client certificates)
#   SKIP_FUZZ=1 / SKIP_README=1 / SKIP_CLIENTS=1   skip Schemathesis / README.md's
#                                  sessions / the TypeScript client tests
#
# Makes sure local Redis (127.0.0.1:6379) and PostgreSQL (127.0.0.1:5432) are up,
# starting or installing them when needed (a Redis started here is stopped at
# the end; PostgreSQL is left running). Tests create their own databases.
# Builds in the dev profile, like ./Run.sh: the binaries are built by the same
# command Run.sh uses, so one build serves both.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
# shellcheck source=scripts/services.sh
. scripts/services.sh

sb_ensure_build_tools

# CI builds a fresh clone once: incremental state would only take disk (~2 GB).
if [[ -n ${CI:-} ]]; then export CARGO_INCREMENTAL=${CARGO_INCREMENTAL:-0}; fi

export STREAMBOARD_TEST_REDIS_URL="${STREAMBOARD_TEST_REDIS_URL:-redis://127.0.0.1:6379}"
export STREAMBOARD_TEST_POSTGRES_URL="${STREAMBOARD_TEST_POSTGRES_URL:-postgres://postgres@127.0.0.1:5432/postgres}"

sb_step "Ensuring Redis and PostgreSQL are running"
# Tests also spawn their own redis-server instances on other loopback ports.
trap 'sb_stop_started_services' EXIT
SB_NEED_REDIS_BINARIES=1 sb_ensure_services || sb_die "tests need Redis and PostgreSQL (see warnings above)"
sb_services_report
sb_pg_ensure_access "$STREAMBOARD_TEST_POSTGRES_URL" || sb_die "tests need PostgreSQL access via $STREAMBOARD_TEST_POSTGRES_URL"
sb_info "STREAMBOARD_TEST_REDIS_URL=$STREAMBOARD_TEST_REDIS_URL"
sb_info "STREAMBOARD_TEST_POSTGRES_URL=$STREAMBOARD_TEST_POSTGRES_URL"

if [[ ${STRICT:-0} == 1 ]]; then
    sb_step "STRICT=1: cargo fmt --all -- --check"
    cargo fmt --all -- --check
    sb_step "STRICT=1: cargo clippy --workspace --all-targets -- -D warnings"
    cargo clippy --workspace --all-targets -- -D warnings
fi

# End-to-end tests start the real binaries, the projector's included (which
# `cargo test` does not build for another package's tests). The same command
# as ./Run.sh's build, so neither rebuilds what the other built.
sb_step "Building the binaries: cargo build -p streamboard -p projector --bins"
cargo build -p streamboard -p projector --bins

if cargo nextest --version >/dev/null 2>&1; then
    runner=(cargo nextest run --workspace)
else
    # --lib --bins --tests: everything except doctests, like nextest.
    runner=(cargo test --workspace --lib --bins --tests)
fi
sb_step "Running tests: ${runner[*]} $*"
status=0
"${runner[@]}" "$@" || status=$?

# The end-to-end suites that use Redis once more, each test against a
# 3-master Redis Cluster of its own (STREAMBOARD_TEST_REDIS_CLUSTER=1).
# Suites that restart or stop Redis (durability, resilience) test a single
# Redis only. SKIP_CLUSTER=1 skips this run; extra arguments skip it too.
if [[ ${SKIP_CLUSTER:-0} != 1 && $# -eq 0 ]]; then
    cluster_suites=(api_auth api_auth_flow api_concurrency api_isolation api_sessions
        flow_analytics realtime_analytics realtime_sse realtime_tail realtime_ws realtime_ws_access
        realtime_ws_limits projector_convergence projector_faults projector_operations
        projector_partitions scale_out webhooks_api webhooks_delivery)
    sb_step "Running the Redis suites against a Redis Cluster: ${cluster_suites[*]}"
    if [[ ${runner[1]} == nextest ]]; then
        filter=$(printf 'binary(%s) | ' "${cluster_suites[@]}")
        filter="(${filter% | }) - test(=without_redis_a_token_cannot_be_checked_and_gets_503)"
        STREAMBOARD_TEST_REDIS_CLUSTER=1 "${runner[@]}" -E "$filter" || status=$?
    else
        tests=$(printf -- '--test %s ' "${cluster_suites[@]}")
        # shellcheck disable=SC2086
        STREAMBOARD_TEST_REDIS_CLUSTER=1 cargo test -p streamboard $tests -- \
            --skip without_redis_a_token_cannot_be_checked_and_gets_503 || status=$?
    fi
fi

# The suites that use PostgreSQL most, once more over TLS: a PostgreSQL of
# their own that refuses plain connections, certificates made here, and every
# server, projector and psql connecting with sslmode=verify-full.
# SKIP_PG_TLS=1 skips this run; extra arguments skip it too.
if [[ ${SKIP_PG_TLS:-0} != 1 && $# -eq 0 ]]; then
    # shellcheck source=scripts/postgres-tls.sh
    . scripts/postgres-tls.sh
    tls_suites=(api_auth_flow api_isolation api_sessions hardening_text realtime_sse
        webhooks_api)
    sb_step "Running the PostgreSQL suites over TLS (verify-full): ${tls_suites[*]}"
    trap 'sb_pg_tls_stop; sb_stop_started_services' EXIT
    sb_pg_tls_start "$(mktemp -d "${TMPDIR:-/tmp}/streamboard-pg-tls.XXXXXX")"
    if [[ ${runner[1]} == nextest ]]; then
        filter=$(printf 'binary(%s) | ' "${tls_suites[@]}")
        STREAMBOARD_TEST_POSTGRES_URL="$SB_PG_TLS_URL" "${runner[@]}" -E "${filter% | }" || status=$?
    else
        tests=$(printf -- '--test %s ' "${tls_suites[@]}")
        # shellcheck disable=SC2086
        STREAMBOARD_TEST_POSTGRES_URL="$SB_PG_TLS_URL" cargo test -p streamboard $tests || status=$?
    fi
    sb_pg_tls_stop
fi

# Suites of the API path once more with every test's Redis over TLS
# (STREAMBOARD_TEST_REDIS_TLS=1): `--port 0 --tls-port`, a CA, server and
# client certificates made by the harness, `--tls-auth-clients yes`, and every
# server, projector and redis-cli connecting with rediss://, the CA file and a
# client certificate. SKIP_REDIS_TLS=1 skips this run; extra arguments skip it too.
if [[ ${SKIP_REDIS_TLS:-0} != 1 && $# -eq 0 ]]; then
    redis_tls_suites=(api_auth_flow api_isolation realtime_ws projector_convergence)
    sb_step "Running the Redis suites over TLS (client certificates): ${redis_tls_suites[*]}"
    if [[ ${runner[1]} == nextest ]]; then
        filter=$(printf 'binary(%s) | ' "${redis_tls_suites[@]}")
        STREAMBOARD_TEST_REDIS_TLS=1 "${runner[@]}" -E "${filter% | }" || status=$?
    else
        tests=$(printf -- '--test %s ' "${redis_tls_suites[@]}")
        # shellcheck disable=SC2086
        STREAMBOARD_TEST_REDIS_TLS=1 cargo test -p streamboard $tests || status=$?
    fi
fi

# Schemathesis against the live server (scripts/fuzz.sh); SKIP_FUZZ=1 skips it.
if [[ ${SKIP_FUZZ:-0} != 1 ]]; then bash scripts/fuzz.sh || status=1; fi

# README.md's curl and WebSocket sessions against a fresh server, compared by
# shape (scripts/test-readme.sh); SKIP_README=1 skips them.
if [[ ${SKIP_README:-0} != 1 ]]; then bash scripts/test-readme.sh || status=1; fi

# The TypeScript SDK and the board page, against the binaries built above
# (scripts/test-clients.sh); SKIP_CLIENTS=1 skips them.
if [[ ${SKIP_CLIENTS:-0} != 1 ]]; then bash scripts/test-clients.sh || status=1; fi

if ((status == 0)); then
    sb_step "All tests passed"
else
    sb_step "Tests FAILED (exit status $status)"
fi
exit "$status"
