#!/usr/bin/env bash
# `make run`: the whole system on one machine with no configuration: its own PostgreSQL and Redis-compatible server
# (scripts/services.py: the system's binaries, else the pip packages'; data kept in var/pg and var/redis), then
# migrate, the demo's data and token, and web + worker + beat + the local WhatsApp sandbox under honcho
# (Procfile.dev). Ctrl-C stops all of them, then the servers.
set -euo pipefail
cd "$(dirname "$0")/.."

if [[ -z "${DEMO_SERVICES_UP:-}" ]]; then
  # Demo settings only; a real deployment sets DATABASE_URL, REDIS_URL and secrets instead (see README).
  export WEB_PORT="${PORT:-8000}"
  export SANDBOX_PORT="${SANDBOX_PORT:-8099}"
  for port in "$WEB_PORT" "$SANDBOX_PORT"; do
    if python -c "import socket,sys; s=socket.socket(); sys.exit(s.connect_ex(('127.0.0.1', $port)) != 0)"; then
      echo "run-demo: port $port on 127.0.0.1 is already in use (set PORT / SANDBOX_PORT)." >&2
      exit 1
    fi
  done
  # The servers first; this script again, in the demo's environment (var/demo.env), beside them.
  PORT="$WEB_PORT" DEMO_SERVICES_UP=1 exec python scripts/services.py demo -- "$0"
fi

python manage.py migrate --noinput
python manage.py seed_demo --base-url "http://127.0.0.1:${WEB_PORT}"
echo
echo "Starting web (http://127.0.0.1:${WEB_PORT}), worker, beat and sandbox (http://127.0.0.1:${SANDBOX_PORT}); Ctrl-C stops them."
echo "Other manage.py commands meanwhile: make manage ARGS=\"...\" (or: source var/demo.env; python manage.py ...)."
exec honcho start -f Procfile.dev --no-colour
