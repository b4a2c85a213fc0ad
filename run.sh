#!/usr/bin/env bash
# Run Message Center on embedded defaults: web, worker, scheduler and the reference SMS Core.
# Works on a fresh machine with only python3 >= 3.11; safe to run again. Ctrl-C stops everything.
set -euo pipefail
cd "$(dirname "$0")"
export PORT="${PORT:-5000}"
export MC_DATA_DIR="${MC_DATA_DIR:-$PWD/instance}"
mkdir -p "$MC_DATA_DIR"

./tools/bootstrap.sh
# shellcheck disable=SC1091
source .venv/bin/activate

started_redis=""
if [ -z "${REDIS_URL:-}" ]; then
  REDIS_URL="$(python tools/embedded_redis.py start "$MC_DATA_DIR/redis")"
  export REDIS_URL
  started_redis=1
fi
cleanup() {
  trap - EXIT INT TERM
  [ -n "$started_redis" ] && python tools/embedded_redis.py stop "$MC_DATA_DIR/redis" || true
}
trap cleanup EXIT INT TERM

flask db upgrade
flask certs dev
flask demo seed
echo "Message Center on http://127.0.0.1:${PORT}/  (data in $MC_DATA_DIR, Ctrl-C stops everything)"
honcho start -f Procfile
