# shellcheck shell=bash
# scripts/postgres-tls.sh - a private PostgreSQL that takes TLS connections only,
# for running the end-to-end suites over TLS (scripts/test.sh). Source it.
#
#   sb_pg_tls_start DIR   initdb in DIR, a CA and a server certificate for
#                         localhost (openssl), ssl = on, plain TCP refused by
#                         pg_hba.conf, on a free loopback port; sets
#                         SB_PG_TLS_URL (an admin URL with sslmode=verify-full
#                         and sslrootcert) and SB_PG_TLS_DIR
#   sb_pg_tls_stop        stops it and removes its directory
#
# Needs scripts/services.sh sourced first, openssl, and PostgreSQL installed
# (initdb and pg_ctl under /usr/lib/postgresql/<version>/bin).

SB_PG_TLS_DIR='' SB_PG_TLS_URL=''

# Runs a PostgreSQL tool as the postgres user when we are root (initdb refuses root).
sb_pg_tool() {
    local tool=$1
    shift
    if ((EUID == 0)); then
        runuser -u postgres -- "$SB_PG_TLS_BIN/$tool" "$@"
    else
        "$SB_PG_TLS_BIN/$tool" "$@"
    fi
}

sb_pg_tls_start() {
    local dir=$1 version port data
    version=$(sb_pg_version)
    [[ -n $version ]] || sb_die "PostgreSQL is not installed"
    sb_have openssl || sb_die "openssl not found on PATH"
    SB_PG_TLS_BIN=/usr/lib/postgresql/$version/bin
    SB_PG_TLS_DIR=$dir
    data=$dir/data
    mkdir -p "$dir"
    openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj '/CN=Streamboard test CA' \
        -keyout "$dir/ca.key" -out "$dir/ca.pem" 2>/dev/null
    openssl req -newkey rsa:2048 -nodes -subj '/CN=localhost' \
        -keyout "$dir/server.key" -out "$dir/server.csr" 2>/dev/null
    printf 'subjectAltName=DNS:localhost\n' >"$dir/san.ext"
    openssl x509 -req -in "$dir/server.csr" -CA "$dir/ca.pem" -CAkey "$dir/ca.key" \
        -CAcreateserial -days 2 -extfile "$dir/san.ext" -out "$dir/server.crt" 2>/dev/null
    ((EUID == 0)) && chown -R postgres:postgres "$dir"
    sb_pg_tool initdb -D "$data" -U postgres --auth=trust --no-sync -E UTF8 >"$dir/initdb.log" 2>&1 ||
        sb_die "initdb failed (see $dir/initdb.log)"
    port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
    cp "$dir/server.crt" "$dir/server.key" "$data/"
    chmod 600 "$data/server.key"
    cat >>"$data/postgresql.conf" <<CONF
listen_addresses = '127.0.0.1'
port = $port
unix_socket_directories = '$dir'
ssl = on
ssl_cert_file = 'server.crt'
ssl_key_file = 'server.key'
fsync = off
max_connections = 300
CONF
    printf 'local all all trust\nhostnossl all all 0.0.0.0/0 reject\nhostssl all all 127.0.0.1/32 trust\n' \
        >"$data/pg_hba.conf"
    ((EUID == 0)) && chown -R postgres:postgres "$dir"
    sb_pg_tool pg_ctl -D "$data" -l "$dir/postgres.log" -w -t 30 start >/dev/null ||
        sb_die "PostgreSQL with TLS did not start (see $dir/postgres.log)"
    SB_PG_TLS_URL="postgres://postgres@localhost:$port/postgres?sslmode=verify-full&sslrootcert=$dir/ca.pem"
}

sb_pg_tls_stop() {
    [[ -n $SB_PG_TLS_DIR && -d $SB_PG_TLS_DIR/data ]] || return 0
    sb_pg_tool pg_ctl -D "$SB_PG_TLS_DIR/data" -m immediate -w stop >/dev/null 2>&1 || true
    rm -rf "$SB_PG_TLS_DIR"
    SB_PG_TLS_DIR=''
}
