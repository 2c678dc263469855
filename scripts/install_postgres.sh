#!/usr/bin/env bash
# A local PostgreSQL server for the dbt project's `postgres` target (tests/dbt_project/test_dbt_postgres.py).
#
#   eval "$(bash scripts/install_postgres.sh)"     # then: dbt build --target postgres ...
#
# Idempotent: installs Debian's `postgresql` package with apt-get only when no PostgreSQL server
# binaries are found; creates a private cluster (not the system's `main` one) in
# $VORONKA_PG_DIR (default /tmp/voronka-postgres) owned by the `postgres` OS user; starts it on
# 127.0.0.1 on a free port (54329 upwards) unless it already runs; creates the login role and the
# database. Prints the environment to use on stdout (`export VAR=value` lines), everything else
# on stderr. Needs root (or sudo) only to install the package and to run the server as `postgres`.
#
# Settings (environment): VORONKA_PG_DIR, VORONKA_PG_USER (voronka), VORONKA_PG_PASSWORD (voronka),
# VORONKA_PG_DATABASE (voronka), VORONKA_PG_PORT (first port tried, 54329).
set -euo pipefail

PG_DIR=${VORONKA_PG_DIR:-/tmp/voronka-postgres}
PG_USER=${VORONKA_PG_USER:-voronka}
PG_PASSWORD=${VORONKA_PG_PASSWORD:-voronka}
PG_DATABASE=${VORONKA_PG_DATABASE:-voronka}
FIRST_PORT=${VORONKA_PG_PORT:-54329}
DATA="$PG_DIR/data"
LOG="$PG_DIR/server.log"
PORT_FILE="$PG_DIR/port"

say() { echo "install_postgres.sh: $*" >&2; }

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  SUDO="sudo"
fi

find_bindir() {
  local d
  for d in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V -r); do
    if [ -x "$d/initdb" ] && [ -x "$d/pg_ctl" ] && [ -x "$d/postgres" ]; then
      echo "$d"
      return 0
    fi
  done
  local initdb
  initdb=$(command -v initdb 2>/dev/null || true)
  if [ -n "$initdb" ]; then
    dirname "$(readlink -f "$initdb")"
    return 0
  fi
  return 1
}

BIN=$(find_bindir || true)
if [ -z "$BIN" ]; then
  if ! command -v apt-get >/dev/null 2>&1; then
    say "no PostgreSQL server found and no apt-get to install one; install PostgreSQL yourself"
    exit 1
  fi
  say "installing PostgreSQL with apt-get ..."
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq >&2
  $SUDO apt-get install -y -qq --no-install-recommends postgresql >&2
  BIN=$(find_bindir || true)
  if [ -z "$BIN" ]; then
    say "apt-get installed postgresql but no initdb/pg_ctl was found under /usr/lib/postgresql"
    exit 1
  fi
fi

# The server refuses to run as root: everything touching the cluster runs as `postgres`.
if ! id postgres >/dev/null 2>&1; then
  say "creating the OS user postgres"
  $SUDO useradd --system --home-dir "$PG_DIR" --shell /bin/bash postgres
fi
as_postgres() {
  if [ "$(id -un)" = postgres ]; then
    "$@"
  elif [ "$(id -u)" -eq 0 ]; then
    runuser -u postgres -- "$@"
  else
    sudo -u postgres -- "$@"
  fi
}

$SUDO mkdir -p "$PG_DIR"
$SUDO chown postgres: "$PG_DIR"
$SUDO chmod 700 "$PG_DIR"

if [ ! -f "$DATA/PG_VERSION" ]; then
  say "creating a cluster in $DATA"
  as_postgres "$BIN/initdb" -D "$DATA" -U postgres --auth-local=trust --auth-host=scram-sha-256 \
    --encoding=UTF8 --locale=C.UTF-8 >&2 \
    || as_postgres "$BIN/initdb" -D "$DATA" -U postgres --auth-local=trust --auth-host=scram-sha-256 \
         --encoding=UTF8 --locale=C >&2
fi

port_free() {
  ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

if as_postgres "$BIN/pg_ctl" -D "$DATA" status >/dev/null 2>&1; then
  PORT=$(cat "$PORT_FILE")
  say "server already running on 127.0.0.1:$PORT"
else
  PORT=$FIRST_PORT
  while ! port_free "$PORT"; do
    PORT=$((PORT + 1))
    if [ "$PORT" -gt $((FIRST_PORT + 200)) ]; then
      say "no free port in $FIRST_PORT..$((FIRST_PORT + 200))"
      exit 1
    fi
  done
  say "starting the server on 127.0.0.1:$PORT (log: $LOG)"
  as_postgres "$BIN/pg_ctl" -D "$DATA" -l "$LOG" -w -t 60 \
    -o "-p $PORT -k $PG_DIR -c listen_addresses=127.0.0.1" start >&2
  echo "$PORT" | as_postgres tee "$PORT_FILE" >/dev/null
fi

psql_admin() {
  as_postgres "$BIN/psql" -h "$PG_DIR" -p "$PORT" -U postgres -d postgres -v ON_ERROR_STOP=1 -qtA "$@"
}
if [ -z "$(psql_admin -c "select 1 from pg_roles where rolname = '$PG_USER'")" ]; then
  say "creating role $PG_USER"
  psql_admin -c "create role \"$PG_USER\" login createdb password '$PG_PASSWORD'" >&2
else
  psql_admin -c "alter role \"$PG_USER\" login createdb password '$PG_PASSWORD'" >&2
fi
if [ -z "$(psql_admin -c "select 1 from pg_database where datname = '$PG_DATABASE'")" ]; then
  say "creating database $PG_DATABASE"
  psql_admin -c "create database \"$PG_DATABASE\" owner \"$PG_USER\"" >&2
fi

cat <<EOF
export VORONKA_PG_HOST=127.0.0.1
export VORONKA_PG_PORT=$PORT
export VORONKA_PG_USER=$PG_USER
export VORONKA_PG_PASSWORD=$PG_PASSWORD
export VORONKA_PG_DATABASE=$PG_DATABASE
EOF
