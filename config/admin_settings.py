"""The admin's login throttle (django-axes): docs/operations.md, "Roles and logins".

Failed logins are counted per username AND address in the database (AccessAttempt rows, the default handler): the
count survives a Redis flush and is shared by every web process. Failures count until a whole cool-off passes
without one; at AXES_FAILURE_LIMIT, that username from that address is refused, the right password included, for
the cool-off after the last failure, or until an administrator runs ``manage.py axes_reset_username NAME`` (or
``axes_reset``). Another user, or the same user from another address, is not affected: a stranger cannot lock an
operator out from anywhere but the stranger's own address.
"""

from datetime import timedelta

import environ

env = environ.Env()

AXES_FAILURE_LIMIT = env.int("ADMIN_LOGIN_FAILURE_LIMIT", default=5)
AXES_COOLOFF_TIME = timedelta(seconds=env.int("ADMIN_LOGIN_LOCKOUT_SECONDS", default=15 * 60))
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
# A good login clears the failures before it: typos spread over a working day never add up to a lockout.
AXES_RESET_ON_SUCCESS = True
# Failures while locked out do not push the end of the lockout further away (a script retrying would keep its
# victim locked for ever).
AXES_RESET_COOL_OFF_ON_FAILURE_DURING_LOCKOUT = False
AXES_LOCKOUT_TEMPLATE = "core/admin/login_locked_out.html"
AXES_HTTP_RESPONSE_CODE = 429


def _client_address(request) -> str | None:
    """The socket's peer, as for /metrics: never a forwarded-for header, which any client can write (a new
    value per try would reset its count). Behind a reverse proxy every login comes from the proxy's address, and
    the throttle becomes per username (docs/operations.md)."""
    return request.META.get("REMOTE_ADDR")


AXES_CLIENT_IP_CALLABLE = _client_address
# Successful logins are not logged to a table (AccessLog would grow without bound); failures are the attempts.
AXES_DISABLE_ACCESS_LOG = True
