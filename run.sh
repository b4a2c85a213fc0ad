#!/usr/bin/env bash
# Run Message Center on embedded defaults: web, worker, scheduler and the reference SMS Core.
# Works on a fresh machine with only python3 >= 3.11; safe to run again. A process that dies is
# restarted (tools/supervise.py); Ctrl-C stops everything.
set -euo pipefail
cd "$(dirname "$0")"
export PORT="${PORT:-5000}"
export MC_DATA_DIR="${MC_DATA_DIR:-$PWD/instance}"

./tools/bootstrap.sh
# Everything written from here on (database, keys, spool, exports, logs) is readable by this user only.
umask 077
mkdir -p "$MC_DATA_DIR"
chmod 700 "$MC_DATA_DIR"
# shellcheck disable=SC1091
source .venv/bin/activate

started_redis=""
supervisor=""
if [ -z "${REDIS_URL:-}" ]; then
  REDIS_URL="$(python tools/embedded_redis.py start "$MC_DATA_DIR/redis")"
  export REDIS_URL
  started_redis=1
fi
cleanup() {
  trap - EXIT INT TERM HUP
  if [ -n "$supervisor" ]; then
    kill -TERM "$supervisor" 2>/dev/null || true
    wait "$supervisor" || true
  fi
  [ -n "$started_redis" ] && python tools/embedded_redis.py stop "$MC_DATA_DIR/redis" || true
}
trap cleanup EXIT INT TERM HUP

# Prometheus multiprocess mode: web, workers (their work-horses) and rq cron write their metric
# files under one directory, wiped before they start (prometheus_client's rule: stale files from a
# previous run would be merged as if alive); /metrics merges them (docs/operations.md §8).
export METRICS_COLLECT_DIR="$MC_DATA_DIR/metrics"
export PROMETHEUS_MULTIPROC_DIR="$METRICS_COLLECT_DIR"
rm -rf "$METRICS_COLLECT_DIR"
mkdir -p "$METRICS_COLLECT_DIR"

flask db upgrade
flask certs dev
flask demo seed
echo "Message Center on http://127.0.0.1:${PORT}/  (data in $MC_DATA_DIR, Ctrl-C stops everything)"
# Its own session: Ctrl-C reaches the supervisor once, through the trap, which waits for it.
setsid python tools/supervise.py -f Procfile &
supervisor=$!
wait "$supervisor"
