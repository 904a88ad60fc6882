#!/usr/bin/env bash
# Our own PostgreSQL cluster for local dev and tests: own data dir, own port,
# never the machine's default Debian cluster (which we leave alone).
#
#   postgres.sh install|start|stop|status
#
# If DATABASE_URL is set we use that server instead: install/start/stop do
# nothing and status only checks that it answers.
#
# Env: LEDGER_PG_HOME (state dir, see below), PG_PORT (55432), DATABASE_URL.
set -euo pipefail

PORT=${PG_PORT:-55432}
# Postgres refuses to run as root, so as root it runs as the `postgres` OS user,
# which cannot reach anything under /root (mode 700): keep its state in /var/tmp.
if [[ $(id -u) == 0 ]]; then
  PG_HOME=${LEDGER_PG_HOME:-/var/tmp/ledger-local/postgres}
else
  PG_HOME=${LEDGER_PG_HOME:-${LEDGER_LOCAL_HOME:-$HOME/.cache/ledger-local}/postgres}
fi
DATA=$PG_HOME/data
SOCK=$PG_HOME/run # unix socket dir: ours, so we never collide with /var/run/postgresql
LOG=$PG_HOME/postgres.log
URL=postgresql://ledger:ledger@127.0.0.1:$PORT/ledger

log() { echo "postgres: $*" >&2; }

# Run a command as the OS user that owns the cluster (cd / : postgres can't read our cwd).
as_pg() {
  if [[ $(id -u) == 0 ]]; then (cd / && runuser -u postgres -- "$@"); else "$@"; fi
}

# Newest installed server version, e.g. /usr/lib/postgresql/15/bin.
# shellcheck disable=SC2012 # paths are /usr/lib/postgresql/NN/bin, nothing exotic
bindir() { ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1 || true; }

install() {
  [[ -n ${DATABASE_URL:-} ]] && return 0
  if [[ -z $(bindir) ]]; then
    log "server binaries missing, installing Debian package postgresql"
    # (Debian's postinst also creates and starts its default cluster on 5432: not ours.)
    apt-get update -qq && apt-get install -y -qq postgresql >/dev/null
  fi
  local bin
  bin=$(bindir)
  mkdir -p "$PG_HOME" "$SOCK"
  [[ $(id -u) == 0 ]] && chown postgres:postgres "$PG_HOME" "$SOCK"
  as_pg test -w "$PG_HOME" || { log "$PG_HOME not reachable by user postgres; set LEDGER_PG_HOME"; return 1; }
  if [[ -f $DATA/PG_VERSION ]]; then
    # A cluster made by another major version cannot be started by this one.
    [[ $(cat "$DATA/PG_VERSION") == $(basename "$(dirname "$bin")") ]] ||
      { log "$DATA is PostgreSQL $(cat "$DATA/PG_VERSION"), binaries are $bin: wipe $PG_HOME"; return 1; }
    return 0
  fi
  log "initdb $DATA"
  # peer for the socket (admin as the OS user), scram passwords over TCP (the app).
  as_pg "$bin/initdb" -D "$DATA" -E UTF8 --locale=C --auth-local=peer --auth-host=scram-sha-256 >"$PG_HOME/initdb.log"
  # Our settings live in ledger.conf, rewritten on each start (so PG_PORT changes apply).
  echo "include_if_exists = 'ledger.conf'" | as_pg tee -a "$DATA/postgresql.conf" >/dev/null
}

running() { [[ -f $DATA/PG_VERSION ]] && as_pg "$(bindir)/pg_ctl" status -D "$DATA" >/dev/null; }

# Role and databases the app and the tests expect; safe to run every time.
bootstrap() {
  as_pg "$(bindir)/psql" -X -q -h "$SOCK" -p "$PORT" -d postgres -v ON_ERROR_STOP=1 <<'SQL'
DO $$ BEGIN
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'ledger') THEN
    CREATE ROLE ledger LOGIN CREATEDB PASSWORD 'ledger';
  END IF;
END $$;
SELECT format('CREATE DATABASE %I OWNER ledger', d) FROM unnest(ARRAY['ledger', 'ledger_test']) AS d
WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = d) \gexec
SQL
}

start() {
  if [[ -n ${DATABASE_URL:-} ]]; then log "using DATABASE_URL, not starting a server"; return 0; fi
  if running; then log "already running on 127.0.0.1:$PORT"; return 0; fi
  install
  as_pg tee "$DATA/ledger.conf" >/dev/null <<EOF
port = $PORT
listen_addresses = '127.0.0.1'
unix_socket_directories = '$SOCK'
max_connections = 200
shared_buffers = 256MB
fsync = on
EOF
  as_pg "$(bindir)/pg_ctl" start -w -t 60 -s -D "$DATA" -l "$LOG" ||
    { log "start failed:"; tail -n 20 "$LOG" >&2; return 1; }
  bootstrap
  log "ready: $URL"
}

stop() {
  [[ -n ${DATABASE_URL:-} ]] && return 0
  if ! running; then log "not running"; return 0; fi
  # -D: stops our cluster only, whatever else runs on this machine.
  as_pg "$(bindir)/pg_ctl" stop -w -s -m fast -D "$DATA"
  log "stopped"
}

status() {
  if [[ -n ${DATABASE_URL:-} ]]; then
    psql -X -q "$DATABASE_URL" -c 'select 1' >/dev/null
  else
    if running && "$(bindir)/pg_isready" -q -h 127.0.0.1 -p "$PORT"; then
      log "running: $URL"
    else
      log "not running"; return 1
    fi
  fi
}

case ${1:-} in
  install | start | stop | status) "$1" ;;
  url) echo "${DATABASE_URL:-$URL}" ;;
  *) echo "usage: $0 install|start|stop|status|url" >&2; exit 2 ;;
esac
