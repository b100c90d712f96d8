#!/usr/bin/env bash
# Set up everything the test suite needs and run it: venv + test requirements, Debian's chromium and
# espeak-ng for the browser tests, Debian's nginx-light for the short soak (tests/test_soak.py), axe-core (npm, pinned in tests/package-lock.json) that the page walker
# injects, PostgreSQL and Redis on their default ports. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
command -v chromium >/dev/null || missing+=(chromium)
command -v espeak-ng >/dev/null || missing+=(espeak-ng)
command -v sox >/dev/null || missing+=(sox)
command -v npm >/dev/null || missing+=(nodejs npm)
command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || missing+=(nginx-light)
if ((${#missing[@]})); then
  echo "test: installing ${missing[*]} from Debian"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi

# Exactly the locked version, installed only when missing or when the lock file changed since the last install.
lock_hash=$(sha256sum tests/package-lock.json | cut -c1-16)
if [ "$(cat tests/node_modules/.installed-lock 2>/dev/null)" != "$lock_hash" ]; then
  echo "test: installing axe-core for the browser tests (npm ci in tests/)"
  npm ci --prefix tests --no-audit --no-fund --silent
  echo "$lock_hash" > tests/node_modules/.installed-lock
fi

bash scripts/bootstrap.sh --dev
bash scripts/services.sh

export DATABASE_URL=${DATABASE_URL:-postgres://postgres:postgres@127.0.0.1:5432/receptionist}
export REDIS_URL=${REDIS_URL:-redis://127.0.0.1:6379/0}
case "$DATABASE_URL" in
  postgres*) ;;
  *) if [ "${CI:-}" = "true" ]; then echo "test: CI must run on PostgreSQL, not $DATABASE_URL" >&2; exit 1; fi ;;
esac

set +e
.venv/bin/python -m pytest "$@"
status=$?
set -e
if [ "$status" -eq 5 ]; then
  echo "test: pytest collected no tests; that is a failure" >&2
  exit 1
fi
exit "$status"
