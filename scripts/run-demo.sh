#!/usr/bin/env bash
# `make run`: the whole system on one machine with no configuration: SQLite (var/db.sqlite3), the embedded
# filesystem broker (var/broker), web + worker + beat + the local WhatsApp sandbox. Ctrl-C stops all of them.
set -euo pipefail
cd "$(dirname "$0")/.."

# Demo settings only; a real deployment sets DATABASE_URL, REDIS_URL and secrets instead (see README).
unset DATABASE_URL REDIS_URL
export DEBUG=true
export WEB_PORT="${PORT:-8000}"
export SANDBOX_PORT="${SANDBOX_PORT:-8099}"
export WHATSAPP_GRAPH_URL="http://127.0.0.1:${SANDBOX_PORT}/v23.0"
export WHATSAPP_APP_SECRET=demo-app-secret
export WHATSAPP_VERIFY_TOKEN=demo-verify-token
export WEBHOOKS_ALLOW_PRIVATE=true
export PYTHONUNBUFFERED=1

for port in "$WEB_PORT" "$SANDBOX_PORT"; do
  if python -c "import socket,sys; s=socket.socket(); sys.exit(s.connect_ex(('127.0.0.1', $port)) != 0)"; then
    echo "run-demo: port $port on 127.0.0.1 is already in use (set PORT / SANDBOX_PORT)." >&2
    exit 1
  fi
done

mkdir -p var/broker var/broker-processed var/cache
python manage.py migrate --noinput
PORT="$WEB_PORT" python manage.py seed_demo --base-url "http://127.0.0.1:${WEB_PORT}"
echo
echo "Starting web (http://127.0.0.1:${WEB_PORT}), worker, beat and sandbox (http://127.0.0.1:${SANDBOX_PORT}); Ctrl-C stops them."
exec honcho start -f Procfile.dev --no-colour
