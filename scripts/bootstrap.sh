#!/usr/bin/env bash
# Create .venv and install the Python requirements (runtime, or runtime + test with --dev). Idempotent and quick
# when nothing changed: the install is skipped while the requirement files' hash matches the last install.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
req=requirements.txt
[ "${1:-}" = "--dev" ] && req=requirements-dev.txt
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv || {
    echo "bootstrap: python3 -m venv failed; installing Debian's python3-venv" >&2
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null
    "$PYTHON" -m venv .venv
  }
fi
stamp=".venv/.installed-$(basename "$req" .txt)"
hash=$(cat requirements*.txt | sha256sum | cut -c1-16)
# The test requirements include the runtime ones, so a venv set up for the tests is ready to run the product.
if [ "$(cat "$stamp" 2>/dev/null)" != "$hash" ] && [ "$(cat .venv/.installed-requirements-dev 2>/dev/null)" != "$hash" ]; then
  echo "bootstrap: installing $req into .venv"
  .venv/bin/python -m pip install -q --disable-pip-version-check -r "$req" 2> >(grep -v "^WARNING: Location" >&2)
  echo "$hash" > "$stamp"
fi
# Bytecode for our own code (pip compiles the packages it installs): a process that starts with
# PYTHONDONTWRITEBYTECODE set (common in containers) would otherwise compile every module from source at each start.
.venv/bin/python -m compileall -q -j 0 accounts billing calls receptionist voice >/dev/null
