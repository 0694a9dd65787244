#!/usr/bin/env bash
# Runs a command beside throwaway PostgreSQL and Redis servers: scripts/services.py's `test` mode (kept for
# scripts and habits that call this name).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
python="$root/.venv/bin/python"
[[ -x "$python" ]] || python=python3
exec "$python" "$root/scripts/services.py" test -- "$@"
