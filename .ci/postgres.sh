#!/usr/bin/env bash
# A throwaway PostgreSQL server for the tests, on 127.0.0.1 only.
#   source .ci/postgres.sh start   # exports MUSICLM_EVAL_PG_URL
#   bash .ci/postgres.sh stop
# Uses the Debian PostgreSQL binaries (installed with apt when missing). Runs as root in CI,
# so the data directory belongs to the `postgres` user.
_pg_bin() { ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1; }
# A fresh temp dir and a free port unless given; both are exported so `stop` (a child shell) finds them.
_pg_dir=${MUSICLM_EVAL_PG_DIR:-}
_free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])' 2>/dev/null \
    || echo 55432
}

_pg_start() {
  local bin port
  bin=$(_pg_bin)
  if [ -z "$bin" ]; then
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null) || return 1
    bin=$(_pg_bin)
  fi
  port=${MUSICLM_EVAL_PG_PORT:-$(_free_port)}
  [ -n "$_pg_dir" ] || _pg_dir=$(mktemp -d /tmp/musiclm-eval-pg.XXXXXX)
  export MUSICLM_EVAL_PG_DIR="$_pg_dir" MUSICLM_EVAL_PG_PORT="$port"
  if [ -f "$_pg_dir/data/postmaster.pid" ]; then
    su postgres -c "$bin/pg_ctl -D $_pg_dir/data stop -m fast" >/dev/null 2>&1 || true
  fi
  rm -rf "$_pg_dir"; mkdir -p "$_pg_dir"; chown postgres "$_pg_dir"
  su postgres -c "$bin/initdb -D $_pg_dir/data -U postgres --auth=trust -E UTF8 --no-locale" >/dev/null || return 1
  su postgres -c "$bin/pg_ctl -D $_pg_dir/data -l $_pg_dir/server.log -o '-c listen_addresses=127.0.0.1 -p $port -k $_pg_dir' -w start" >/dev/null || return 1
  export MUSICLM_EVAL_PG_URL="postgresql+psycopg://postgres@127.0.0.1:$port/postgres"
  echo "[ci] PostgreSQL at $MUSICLM_EVAL_PG_URL"
}

_pg_stop() {
  local bin
  bin=$(_pg_bin)
  [ -n "$bin" ] && [ -n "$_pg_dir" ] && [ -d "$_pg_dir/data" ] && su postgres -c "$bin/pg_ctl -D $_pg_dir/data stop -m fast" >/dev/null 2>&1
  return 0
}

case "${1:-start}" in
  start) _pg_start ;;
  stop) _pg_stop ;;
  *) echo "usage: .ci/postgres.sh start|stop" >&2; return 2 2>/dev/null || exit 2 ;;
esac
