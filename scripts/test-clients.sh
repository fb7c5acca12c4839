#!/usr/bin/env bash
# scripts/test-clients.sh - the TypeScript clients' tests (scripts/test.sh
# runs it after the cargo tests; SKIP_CLIENTS=1 there skips it):
#   npm ci, build (SDK and board page), typecheck, then
#   module graph    dependency-cruiser (.dependency-cruiser.cjs): no import
#                   cycle in the TypeScript packages, as tests/module_graph.rs
#                   checks the Rust crates;
#   unit tests      the fold against clients/fixtures/, positions, the
#                   generated OpenAPI types checked for drift;
#   integration     the SDK against the real server in both modes (an app
#                   process killed mid-outbox and restarted included; the
#                   board's past on a test clock), and
#                   the React bindings in React's test renderer;
#   bundle          `npm pack` of the SDK and the bindings, the example React
#                   Native app bundled from the tarballs by Metro, the bundle
#                   run in Node against the real server;
#   browser         the page (the board and its Insights) in Debian's
#                   Chromium via Playwright (installed with apt when
#                   /usr/bin/chromium is missing).
#
# Uses the debug server binary cargo already built ($CARGO_TARGET_DIR or
# target/, debug/streamboard; STREAMBOARD_BIN overrides); it does not build
# it. Needs Redis and PostgreSQL binaries (scripts/test.sh sees to them) and
# STREAMBOARD_TEST_POSTGRES_URL (default postgres://postgres@127.0.0.1:5432/postgres).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
# shellcheck source=scripts/services.sh
. scripts/services.sh
# shellcheck source=scripts/clients.sh
. scripts/clients.sh

export STREAMBOARD_BIN="${STREAMBOARD_BIN:-${CARGO_TARGET_DIR:-$PWD/target}/debug/streamboard}"
[[ -x $STREAMBOARD_BIN ]] || sb_die "$STREAMBOARD_BIN is missing: cargo build -p streamboard --bins first"
export STREAMBOARD_TEST_POSTGRES_URL="${STREAMBOARD_TEST_POSTGRES_URL:-postgres://postgres@127.0.0.1:5432/postgres}"

sb_step "Clients: Node, npm ci"
sb_ensure_node || sb_die "the client tests need Node 20 or newer"
sb_clients_install || sb_die "npm ci failed"
export CHROMIUM="${CHROMIUM:-/usr/bin/chromium}"
if [[ ! -x $CHROMIUM ]]; then
    sb_install_packages chromium || sb_die "the browser tests need Chromium (apt-get install chromium)"
fi

cd clients
sb_step "Clients: build (SDK, React bindings, board page) and typecheck"
npm run --silent build
npm run --silent typecheck

status=0
sb_step "Clients: module graph (no import cycle; packages through their public entries)"
npm run --silent check:graph || status=1
sb_step "Clients: unit tests"
npm run --silent test:unit || status=1
sb_step "Clients: integration tests (server: $STREAMBOARD_BIN)"
npm run --silent test:integration || status=1
sb_step "Clients: React Native bundle (npm pack, Metro, the bundle against the server)"
npm run --silent test:bundle || status=1
sb_step "Clients: browser tests ($CHROMIUM)"
npm run --silent test:browser || status=1
exit "$status"
