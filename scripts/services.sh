#!/usr/bin/env bash
# Make sure PostgreSQL and Redis answer on their default local ports; start (or install) them if not.
# Sourced by the test script. With CI=true any failure is fatal; nothing falls back to SQLite.
set -euo pipefail

PG_HOST=127.0.0.1 PG_PORT=5432 REDIS_PORT=6379

pg_up() { pg_isready -q -h "$PG_HOST" -p "$PG_PORT" 2>/dev/null; }
redis_up() { redis-cli -h 127.0.0.1 -p "$REDIS_PORT" ping 2>/dev/null | grep -q PONG; }

need=()
command -v pg_ctlcluster >/dev/null || command -v pg_isready >/dev/null || need+=(postgresql)
command -v redis-server >/dev/null || need+=(redis-server)
if ((${#need[@]})) && ! { pg_up && redis_up; }; then
  echo "services: installing ${need[*]}"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi

if ! pg_up; then
  echo "services: starting PostgreSQL"
  version=$(ls /etc/postgresql | sort -V | tail -1)
  pg_ctlcluster --skip-systemctl-redirect "$version" main start || true
  for _ in $(seq 50); do pg_up && break; sleep 0.2; done
fi
if ! redis_up; then
  echo "services: starting Redis"
  mkdir -p /var/lib/redis /var/log/redis 2>/dev/null || true
  redis-server --daemonize yes --bind 127.0.0.1 --port "$REDIS_PORT" --save "" --appendonly no \
    --dir /tmp --logfile /tmp/redis-receptionist.log
  for _ in $(seq 50); do redis_up && break; sleep 0.1; done
fi

# Debian's default is password auth on TCP: make the documented test login work (a no-op under trust auth).
if ! PGPASSWORD=postgres psql -h "$PG_HOST" -p "$PG_PORT" -U postgres -d postgres -tAc "select 1" >/dev/null 2>&1; then
  su postgres -c "psql -qc \"ALTER USER postgres PASSWORD 'postgres'\"" >/dev/null 2>&1 || true
fi

pg_up || { echo "services: PostgreSQL is not answering on $PG_HOST:$PG_PORT" >&2; exit 1; }
redis_up || { echo "services: Redis is not answering on 127.0.0.1:$REDIS_PORT" >&2; exit 1; }
echo "services: PostgreSQL and Redis are up"
