#!/usr/bin/env bash
# scripts/test-readme.sh - README.md's curl and WebSocket sessions, run against
# a fresh server and projector, their answers compared with the README's by
# shape (ids and times aside): scripts/readme/check.py. scripts/test.sh runs
# it after the cargo tests; SKIP_README=1 there skips it.
#
# Builds nothing: it runs the debug binaries (target/debug, or
# STREAMBOARD_BIN_DIR). The README's Python follower needs `websockets`: it is
# pinned in the git-ignored virtualenv .venv-readme, whose python3 the
# sessions run. Where websocat is not installed, scripts/readme/bin/websocat
# stands in for it (the `-n` use the README makes of it). Needs redis-server,
# psql and curl, and PostgreSQL at STREAMBOARD_TEST_POSTGRES_URL (an admin URL).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
# shellcheck source=scripts/services.sh
. scripts/services.sh

WEBSOCKETS_VERSION=15.0.1
VENV=.venv-readme
BIN_DIR="${STREAMBOARD_BIN_DIR:-${CARGO_TARGET_DIR:-target}/debug}"

[[ -x $BIN_DIR/streamboard && -x $BIN_DIR/projector ]] ||
    sb_die "$BIN_DIR/streamboard and projector are missing: cargo build -p streamboard -p projector --bins"
for tool in curl psql redis-server redis-cli python3; do
    sb_have "$tool" || sb_die "the README test needs $tool"
done

sb_venv "$VENV" "websockets==$WEBSOCKETS_VERSION" || sb_die "could not install websockets into $VENV"

path="$PWD/$VENV/bin"
sb_have websocat || path="$path:$PWD/scripts/readme/bin"
sb_step "README.md's sessions against a fresh server ($BIN_DIR)"
PATH="$path:$PATH" "$VENV/bin/python" scripts/readme/check.py --bin "$BIN_DIR"
