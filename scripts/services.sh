#!/usr/bin/env bash
# Start Redis and PostgreSQL when they are down (CI runs on a machine where they usually
# run already). Without root or the packages, say so: the tests skip locally, fail in CI.
set -uo pipefail
if ! (exec 3<>/dev/tcp/127.0.0.1/6379) 2>/dev/null; then
  if command -v redis-server >/dev/null; then
    redis-server --daemonize yes --port 6379 --save "" --appendonly no
  else
    echo "Redis is not running and redis-server is not installed" >&2
  fi
fi
if ! (exec 3<>/dev/tcp/127.0.0.1/5432) 2>/dev/null; then
  if [ -d /etc/postgresql ]; then
    pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql)" main start
  else
    echo "PostgreSQL is not running and not installed" >&2
  fi
fi
for _ in $(seq 1 30); do
  (exec 3<>/dev/tcp/127.0.0.1/6379) 2>/dev/null && (exec 3<>/dev/tcp/127.0.0.1/5432) 2>/dev/null && exit 0
  sleep 1
done
echo "services did not come up in 30 s" >&2
[ "${CI:-}" = "true" ] && exit 1
exit 0
