#!/usr/bin/env bash
# What a newcomer does, checked end to end: a fresh clone of this commit in a scratch folder, `make run` there
# with an empty environment (no DATABASE_URL, REDIS_URL, OPENAI_API_KEY or TWILIO_*; a clean PATH and HOME)
# and a venv that scripts/bootstrap.sh builds from requirements.txt alone; then wait for /healthz/, sign in as
# the demo owner through the login form, load /dashboard/, stop the whole process group and remove the folder.
# A runtime module missing from requirements.txt fails here (migrate or the server cannot import it), which
# `make test` cannot see: it installs the test requirements too. Called by .ci/run.
#
# Only machine plumbing passes into the empty environment: CA bundles and proxies, which a newcomer's
# machine has too. Knobs: NEWCOMER_TIMEOUT_SECONDS (default 1500) bounds the whole run; NEWCOMER_KEEP=1 keeps
# the scratch folder for a look.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
timeout_s=${NEWCOMER_TIMEOUT_SECONDS:-1500}
demo_email=owner@demo.example demo_password=demo-receptionist-2026
started=$SECONDS
since() { echo $((SECONDS - $1)); }

scratch=$(mktemp -d "${TMPDIR:-/tmp}/newcomer-check.XXXXXX")
log="$scratch/make-run.log"
: >"$log"
run_pid="" run_pgid=""

stop_run() {
  [ -n "$run_pgid" ] || return 0
  kill -TERM -- "-$run_pgid" 2>/dev/null || return 0
  for _ in $(seq 100); do kill -0 -- "-$run_pgid" 2>/dev/null || return 0; sleep 0.2; done
  echo "newcomer check: the make run process group ignored SIGTERM for 20 s; killing it" >&2
  kill -KILL -- "-$run_pgid" 2>/dev/null || true
  return 1
}
cleanup() {
  stop_run || true
  if [ "${NEWCOMER_KEEP:-}" = 1 ]; then echo "newcomer check: kept $scratch"; else rm -rf "$scratch"; fi
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

fail() {
  echo "" >&2
  echo "newcomer check FAILED: $*" >&2
  echo "----- last 80 lines of \`make run\` in the fresh clone -----" >&2
  tail -n 80 "$log" >&2 || true
  echo "----- end of the log -----" >&2
  exit 1
}

# Three free ports (web server, OpenAI stand-in, Twilio stand-in) so nothing else on the machine is in the way.
read -r web_port standin_port twilio_port < <(python3 - <<'EOF'
import socket
sockets = [socket.socket() for _ in range(3)]
for s in sockets:
    s.bind(("127.0.0.1", 0))
print(*(s.getsockname()[1] for s in sockets))
EOF
)

commit=$(git -C "$repo" rev-parse HEAD)
if [ -n "$(git -C "$repo" status --porcelain --untracked-files=no)" ]; then
  echo "newcomer check: note: uncommitted changes are not part of the check; it clones commit ${commit:0:12}"
fi
t=$SECONDS
git clone -q "$repo" "$scratch/repo"
git -C "$scratch/repo" -c advice.detachedHead=false checkout -q --detach "$commit"
clone_s=$(since "$t")
echo "newcomer check: cloned ${commit:0:12} into $scratch/repo (${clone_s}s); starting \`make run\` on port $web_port"

mkdir -p "$scratch/home"
passthrough=()
for name in SSL_CERT_FILE SSL_CERT_DIR REQUESTS_CA_BUNDLE PIP_CERT http_proxy https_proxy no_proxy \
            HTTP_PROXY HTTPS_PROXY NO_PROXY; do
  if [ -n "${!name:-}" ]; then passthrough+=("$name=${!name}"); fi
done

# setsid: make run and everything it starts share one new process group, stopped together below.
t=$SECONDS
env -i HOME="$scratch/home" PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8 \
  "${passthrough[@]}" PORT="$web_port" DEMO_STANDIN_PORT="$standin_port" DEMO_TWILIO_STANDIN_PORT="$twilio_port" \
  setsid make -C "$scratch/repo" run </dev/null >"$log" 2>&1 &
run_pid=$!
run_pgid=$(ps -o pgid= -p "$run_pid" | tr -d ' ')
[ "$run_pgid" = "$run_pid" ] || fail "make run did not get its own process group"

install_s="" healthy=""
while [ $((SECONDS - started)) -lt "$timeout_s" ]; do
  if ! kill -0 "$run_pid" 2>/dev/null; then
    wait "$run_pid" && code=0 || code=$?
    fail "\`make run\` exited (status $code) before /healthz/ answered"
  fi
  # migrate prints this first thing, so the venv is built and installed by then.
  if [ -z "$install_s" ] && grep -q "^Operations to perform:" "$log"; then install_s=$(since "$t"); fi
  if python3 -c "import sys, urllib.request; sys.exit(urllib.request.urlopen(sys.argv[1], timeout=3).status != 200)" \
       "http://127.0.0.1:$web_port/healthz/" 2>/dev/null; then
    healthy=1
    break
  fi
  sleep 2
done
[ -n "$healthy" ] || fail "/healthz/ did not answer within ${timeout_s}s"
healthy_s=$(since "$t")
echo "newcomer check: /healthz/ answered ${healthy_s}s after \`make run\` started (venv + install of requirements.txt: ${install_s:-?}s)"

t=$SECONDS
python3 "$repo/scripts/newcomer_signin.py" "http://127.0.0.1:$web_port" "$demo_email" "$demo_password" \
  || fail "signing in as the demo owner and loading /dashboard/ failed"
signin_s=$(since "$t")

t=$SECONDS
stop_run || fail "\`make run\` did not stop on SIGTERM"
run_pgid=""
stop_s=$(since "$t")
echo "newcomer check passed in $(since "$started")s: clone ${clone_s}s, venv + pip install ${install_s:-?}s," \
  "up and healthy at ${healthy_s}s, sign-in + dashboard ${signin_s}s, stop ${stop_s}s"
