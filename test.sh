#!/usr/bin/env bash
# Run the whole test suite. Honours DATABASE_URL (default: a fresh SQLite file) and REDIS_URL
# (default: an embedded Redis started for the run). Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")"
./tools/bootstrap.sh
# shellcheck disable=SC1091
source .venv/bin/activate
export MC_PRODUCTION=0
tmp="$(mktemp -d)"
started_redis=""
cleanup() {
  [ -n "$started_redis" ] && python tools/embedded_redis.py stop "$tmp/redis" || true
  rm -rf "$tmp"
}
trap cleanup EXIT
if [ -z "${REDIS_URL:-}" ]; then
  REDIS_URL="$(python tools/embedded_redis.py start "$tmp/redis")"
  export REDIS_URL
  started_redis=1
fi
python -m pytest "$@"
