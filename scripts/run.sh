#!/usr/bin/env bash
# Set up and run the product at http://127.0.0.1:${PORT:-8000}. With no DATABASE_URL/REDIS_URL: SQLite, an
# in-memory channel layer and Celery tasks run in-process; `manage.py run_periodic_tasks` runs the periodic work
# (usage sweep, reaper, …) in a process of its own. With REDIS_URL set, a Celery worker runs beside the server,
# with Celery beat inside it.
# Without OPENAI_API_KEY it runs in demo mode: the local OpenAI stand-in answers calls from a script
# (voice/fixtures/standin_demo.json), spoken with espeak-ng when it is installed, and every page says so.
# Without TWILIO_ACCOUNT_SID the local Twilio stand-in plays Twilio's REST API, so owners can get a (fictional)
# phone number in Settings → Phone number.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
export DEBUG=${DEBUG:-true}
PORT=${PORT:-8000}
export PUBLIC_BASE_URL=${PUBLIC_BASE_URL:-http://127.0.0.1:$PORT}
PY=.venv/bin/python

worker_pid="" periodic_pid="" standin_pid="" twilio_pid="" server_pid=""
stop_children() {
  local pids=() pid
  for pid in "$server_pid" "$worker_pid" "$periodic_pid" "$standin_pid" "$twilio_pid"; do
    [ -n "$pid" ] && kill "$pid" 2>/dev/null && pids+=("$pid")
  done
  for pid in "${pids[@]}"; do
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  done
  return 0
}
trap stop_children EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

$PY manage.py migrate --noinput
$PY manage.py seed_demo

if [ -z "${TWILIO_ACCOUNT_SID:-}" ]; then
  # Started now, waited for below: it boots while the OpenAI stand-in does.
  twilio_port=${DEMO_TWILIO_STANDIN_PORT:-8766}
  # Placeholders, not secrets: the stand-in accepts exactly these, and nothing reaches Twilio.
  twilio_sid="AC$(printf 'a%.0s' $(seq 32))" twilio_token=standin-auth-token-0000000000000
  $PY manage.py twilio_standin --port "$twilio_port" --account-sid "$twilio_sid" --auth-token "$twilio_token" \
    --state "${DEMO_TWILIO_STATE:-.twilio-standin.json}" &
  twilio_pid=$!
fi

if [ -z "${OPENAI_API_KEY:-}" ]; then
  standin_port=${DEMO_STANDIN_PORT:-8765}
  if ! command -v espeak-ng >/dev/null; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
      echo "demo: installing espeak-ng so the stand-in speaks its replies"
      { timeout 300 apt-get update -qq && DEBIAN_FRONTEND=noninteractive timeout 300 apt-get install -y -qq espeak-ng >/dev/null; } \
        || echo "demo: could not install espeak-ng; the stand-in answers with tones instead of speech"
    else
      echo "demo: espeak-ng is not installed; the stand-in answers with tones instead of speech"
    fi
  fi
  $PY manage.py realtime_standin --port "$standin_port" --audio espeak --script voice/fixtures/standin_demo.json &
  standin_pid=$!
  for _ in $(seq 100); do
    kill -0 "$standin_pid" 2>/dev/null || { echo "demo: the OpenAI stand-in did not start (is port $standin_port free? set DEMO_STANDIN_PORT)" >&2; exit 1; }
    (exec 3<>"/dev/tcp/127.0.0.1/$standin_port") 2>/dev/null && break
    sleep 0.2
  done
  (exec 3<>"/dev/tcp/127.0.0.1/$standin_port") 2>/dev/null || { echo "demo: the OpenAI stand-in is not listening on port $standin_port" >&2; exit 1; }
  # Not a secret: the stand-in accepts any key, and nothing reaches OpenAI.
  export OPENAI_API_KEY=demo-mode-local-standin
  export OPENAI_REALTIME_URL="ws://127.0.0.1:$standin_port/v1/realtime"
  export OPENAI_LIVE_URL="ws://127.0.0.1:$standin_port/v1/live/sessions"
  export OPENAI_BASE_URL="http://127.0.0.1:$standin_port/v1"
  export DEMO_MODE=true
  echo "Demo mode: no OPENAI_API_KEY, so calls are answered by the local stand-in on port $standin_port (simulated replies)."
  echo "           Set OPENAI_API_KEY to use OpenAI."
fi

if [ -n "$twilio_pid" ]; then
  for _ in $(seq 100); do
    kill -0 "$twilio_pid" 2>/dev/null || { echo "demo: the Twilio stand-in did not start (is port $twilio_port free? set DEMO_TWILIO_STANDIN_PORT)" >&2; exit 1; }
    (exec 3<>"/dev/tcp/127.0.0.1/$twilio_port") 2>/dev/null && break
    sleep 0.2
  done
  (exec 3<>"/dev/tcp/127.0.0.1/$twilio_port") 2>/dev/null || { echo "demo: the Twilio stand-in is not listening on port $twilio_port" >&2; exit 1; }
  export TWILIO_API_BASE_URL="http://127.0.0.1:$twilio_port" TWILIO_ACCOUNT_SID="$twilio_sid" TWILIO_AUTH_TOKEN="$twilio_token"
  echo "Demo mode: no TWILIO_ACCOUNT_SID, so phone numbers come from the local Twilio stand-in on port $twilio_port"
  echo "           (fictional 555-01xx numbers; nothing is bought). Set TWILIO_ACCOUNT_SID and TWILIO_AUTH_TOKEN to use Twilio."
fi

# Periodic work (usage sweep, reaper, …: CELERY_BEAT_SCHEDULE) runs on one machine too.
if [ -n "${REDIS_URL:-}" ]; then
  # --beat: the worker also runs Celery beat (fine for one worker; in production beat is a process of its own).
  .venv/bin/celery -A receptionist worker --beat --schedule .celerybeat-schedule \
    --loglevel=INFO --concurrency=2 &
  worker_pid=$!
else
  # No broker for beat to send to: the same schedule, run in a process of its own.
  $PY manage.py run_periodic_tasks &
  periodic_pid=$!
fi
echo "Serving on http://127.0.0.1:$PORT  (admin: create one with: .venv/bin/python manage.py createsuperuser)"
# In the background so a signal reaches the traps above at once, which then stop every child.
$PY manage.py runserver "127.0.0.1:$PORT" &
server_pid=$!
wait "$server_pid"
