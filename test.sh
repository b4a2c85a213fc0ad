#!/usr/bin/env bash
# Run the whole test suite. Honours DATABASE_URL (default: a fresh SQLite file) and REDIS_URL
# (default: an embedded Redis started for the run). Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")"
./tools/bootstrap.sh
# shellcheck disable=SC1091
source .venv/bin/activate
# The browser tests (tests/e2e) drive Debian's Chromium; install it when missing and apt can (root or
# password-less sudo, non-interactive). Without it those tests are skipped with the reason, not failed.
if [ ! -x /usr/bin/chromium ] && ! command -v chromium >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1; then
  as_root=""
  [ "$(id -u)" = 0 ] || as_root="sudo -n"
  echo "test.sh: installing chromium for the browser tests (apt-get)" >&2
  if ! { $as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends chromium \
         || { $as_root env DEBIAN_FRONTEND=noninteractive apt-get update -q \
              && $as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends chromium; }; \
       } >/dev/null 2>&1; then
    echo "test.sh: could not install chromium; the browser tests (tests/e2e) will be skipped" >&2
  fi
fi
export MC_PRODUCTION=0
tmp="$(mktemp -d)"
started_redis=""
cleanup() {
  # Never let tidying up change the verdict: the exit status is pytest's.
  [ -n "$started_redis" ] && python tools/embedded_redis.py stop "$tmp/redis" || true
  rm -rf "$tmp" 2>/dev/null || true
}
trap cleanup EXIT
if [ -z "${REDIS_URL:-}" ]; then
  REDIS_URL="$(python tools/embedded_redis.py start "$tmp/redis")"
  export REDIS_URL
  started_redis=1
fi
python -m pytest "$@"
