#!/usr/bin/env bash
# Start a throw-away PostgreSQL cluster on loopback for the multi-machine tests.
#
#   url=$(.ci/start-postgres.sh)          # start; prints the URL on stdout
#   export SKFAIRTUNE_TEST_POSTGRES_URL="$url"
#   .ci/start-postgres.sh --stop          # stop it and delete its files
#
# Installs Debian's `postgresql` package when no server binaries are found (needs root and
# apt). The cluster lives in $SKFAIRTUNE_PG_DIR (default: a fresh temp dir, remembered in
# /tmp/skfairtune-pg.dir) and runs as the `postgres` user when started as root (initdb
# refuses root). It listens on 127.0.0.1 only, on a free port, with a random password; the
# URL is also written to $SKFAIRTUNE_PG_DIR/url. Progress goes to stderr.
set -euo pipefail

STATE=/tmp/skfairtune-pg.dir
log() { echo "start-postgres: $*" >&2; }

as_owner() {
    if [ "$(id -u)" = 0 ]; then
        runuser -u postgres -- "$@"
    else
        "$@"
    fi
}

find_bindir() {
    local dir
    for dir in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V -r); do
        if [ -x "$dir/initdb" ] && [ -x "$dir/pg_ctl" ]; then echo "$dir"; return 0; fi
    done
    if command -v initdb >/dev/null && command -v pg_ctl >/dev/null; then
        dirname "$(command -v initdb)"; return 0
    fi
    return 1
}

if [ "${1:-}" = "--stop" ]; then
    [ -f "$STATE" ] || { log "no cluster recorded in $STATE"; exit 0; }
    dir=$(cat "$STATE")
    if bindir=$(find_bindir) && [ -d "$dir/data" ]; then
        as_owner "$bindir/pg_ctl" -D "$dir/data" -m immediate -w stop >/dev/null 2>&1 || true
    fi
    rm -rf "$dir" "$STATE"
    log "stopped and removed $dir"
    exit 0
fi

if ! bindir=$(find_bindir); then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        log "installing PostgreSQL from Debian packages"
        export DEBIAN_FRONTEND=noninteractive
        apt-get update >&2
        apt-get install -y --no-install-recommends postgresql >&2
    fi
    bindir=$(find_bindir) || { log "PostgreSQL server binaries not found and could not be installed"; exit 1; }
fi

if [ "$(id -u)" = 0 ] && ! id postgres >/dev/null 2>&1; then
    useradd --system --home-dir /nonexistent --shell /usr/sbin/nologin postgres
fi

# A previous cluster of this script: stop it first.
if [ -f "$STATE" ]; then "$0" --stop || true; fi

dir=${SKFAIRTUNE_PG_DIR:-$(mktemp -d /tmp/skfairtune-pg.XXXXXX)}
mkdir -p "$dir/data" "$dir/socket" "$dir/log"
chmod 755 "$dir"
echo "$dir" > "$STATE"
password=$(od -An -N12 -tx1 /dev/urandom | tr -d ' \n')
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
printf '%s\n' "$password" > "$dir/pwfile"
if [ "$(id -u)" = 0 ]; then chown -R postgres "$dir/data" "$dir/socket" "$dir/log" "$dir/pwfile"; fi

log "initdb in $dir/data ($bindir)"
as_owner "$bindir/initdb" -D "$dir/data" -U postgres --pwfile="$dir/pwfile" \
    --auth-local=trust --auth-host=scram-sha-256 -E UTF8 >"$dir/initdb.log" 2>&1 \
    || { cat "$dir/initdb.log" >&2; exit 1; }
rm -f "$dir/pwfile"

log "starting on 127.0.0.1:$port"
as_owner "$bindir/pg_ctl" -D "$dir/data" -l "$dir/log/server.log" -w -t 60 \
    -o "-c listen_addresses=127.0.0.1 -p $port -k $dir/socket -c max_connections=200 -c fsync=off" \
    start >&2 || { cat "$dir/log/server.log" >&2; exit 1; }

psql_bin="$bindir/psql"
[ -x "$psql_bin" ] || psql_bin=psql
as_owner "$psql_bin" -h "$dir/socket" -p "$port" -U postgres -v ON_ERROR_STOP=1 -q -d postgres >&2 <<SQL
CREATE ROLE skfairtune LOGIN PASSWORD '$password';
CREATE DATABASE skfairtune_test OWNER skfairtune;
SQL

url="postgresql+psycopg://skfairtune:$password@127.0.0.1:$port/skfairtune_test"
printf '%s\n' "$url" > "$dir/url"
chmod 600 "$dir/url"
log "ready; URL in $dir/url"
printf '%s\n' "$url"
