#!/usr/bin/env bash
# Set up and run the product at http://127.0.0.1:8000. With no DATABASE_URL/REDIS_URL: SQLite, an in-memory
# channel layer and Celery tasks run in-process. With REDIS_URL set, a Celery worker runs beside the server.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
export DEBUG=${DEBUG:-true}
export PUBLIC_BASE_URL=${PUBLIC_BASE_URL:-http://127.0.0.1:8000}
PY=.venv/bin/python
$PY manage.py migrate --noinput
$PY manage.py seed_demo
worker_pid=""
if [ -n "${REDIS_URL:-}" ]; then
  .venv/bin/celery -A receptionist worker --loglevel=INFO --concurrency=2 &
  worker_pid=$!
  trap '[ -n "$worker_pid" ] && kill "$worker_pid" 2>/dev/null' EXIT
fi
echo "Serving on http://127.0.0.1:8000  (admin: create one with: .venv/bin/python manage.py createsuperuser)"
$PY manage.py runserver 127.0.0.1:8000
