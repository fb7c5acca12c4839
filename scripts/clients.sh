# scripts/clients.sh - sourced by ./Run.sh and scripts/test-clients.sh (after
# scripts/services.sh): Node for the TypeScript clients, and the board page
# build (clients/web/dist, which the server serves at /).
# shellcheck shell=bash

SB_CLIENTS_DIR=${SB_CLIENTS_DIR:-$PWD/clients}

# Node 20 or newer with npm (apt's nodejs when missing; it may be older).
sb_ensure_node() {
    if ! sb_have node || ! sb_have npm; then
        sb_install_packages nodejs npm || return 1
    fi
    local major
    major=$(node -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0)
    if ((major < 20)); then
        sb_warn "Node $(node --version 2>/dev/null) is too old for the clients: install Node 20 or newer"
        return 1
    fi
}

# npm ci when node_modules is missing or older than the lock file.
sb_clients_install() {
    local stamp=$SB_CLIENTS_DIR/node_modules/.package-lock.json
    if [[ ! -f $stamp || $SB_CLIENTS_DIR/package-lock.json -nt $stamp ]]; then
        sb_info "npm ci (clients/)"
        (cd "$SB_CLIENTS_DIR" && npm ci --no-audit --no-fund --loglevel=error) || return 1
    fi
}

# What the page is built from: the sources of the page and of the SDK.
sb_page_sources_hash() {
    (cd "$SB_CLIENTS_DIR" && find package-lock.json web/src web/build.mjs typescript/src -type f -print0 |
        sort -z | xargs -0 sha256sum | sha256sum | cut -d' ' -f1)
}

# Builds clients/web/dist unless it is there and its sources have not changed.
sb_build_page() {
    local dist=$SB_CLIENTS_DIR/web/dist hash
    hash=$(sb_page_sources_hash)
    if [[ -f $dist/index.html && -f $dist/.sources && $(cat "$dist/.sources") == "$hash" ]]; then
        sb_info "board page up to date ($dist)"
        return 0
    fi
    sb_ensure_node || return 1
    sb_clients_install || return 1
    sb_info "building the board page: npm run build (clients/)"
    (cd "$SB_CLIENTS_DIR" && npm run --silent build -w @streamboard/web) || return 1
    echo "$hash" >"$dist/.sources"
}
