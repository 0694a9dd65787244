"""Meta's per-user marketing limit (error 131049, docs/rules.md): a number that failed with it gets no MARKETING
template from the organization for MARKETING_LIMIT_HOLD_SECONDS after the failure, whatever asks for it (the
engine, ``retry``, a new broadcast).

- ``holds_start`` records the hold in the transaction that records the failure, whichever way it came: the POST's
  answer (delivery/outcomes.py, hold from the answer's time) or a ``failed`` status webhook (status_updates/,
  hold from the status's timestamp). One statement for a whole batch, and none when no failure is a 131049.
- ``holds_waiting`` is the posting-time check (delivery/gate_marketing_hold.py): one probe of the unique
  (organization, to) index for a batch's numbers, timed by the database's clock.

Holds live in PostgreSQL (``MarketingHold``), durable like the sends: a Redis flush or restart loses none.

Per organization, not global: Meta counts its limit per user across every business, but the organization is the
portfolio we speak for, and one tenant's failures must not delay (or reveal anything to) another tenant. A second
organization posting to the same number simply gets its own 131049 from Meta, and then its own hold.
"""

from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta

from django.conf import settings
from django.db import connection

from broadcasts.models import Broadcast, MarketingHold, Send
from templates_registry.models import Template
from whatsapp.errors import MARKETING_LIMIT_CODE

MARKETING_LIMIT = str(MARKETING_LIMIT_CODE)
# The category whose sends the hold stops (Meta's limit is on marketing messages only).
HELD_CATEGORY = Template.Category.MARKETING


def hold_seconds() -> float:
    return float(settings.MARKETING_LIMIT_HOLD_SECONDS)


def is_marketing_limit(code: str | None) -> bool:
    """Whether a stored error code is Meta's per-user marketing limit."""
    return code == MARKETING_LIMIT


def holds_start(*, failures: Iterable[tuple[int, datetime]]) -> int:
    """Start (or extend) the hold of each send's number in its organization: ``failures`` are (send id, failure
    time) of sends that just failed with 131049. Inside the caller's transaction; an existing hold only moves later.
    Returns the number of (organization, number) holds written."""
    latest: dict[int, datetime] = {}
    for send_id, at in failures:
        if send_id not in latest or at > latest[send_id]:
            latest[send_id] = at
    if not latest:
        return 0
    length = timedelta(seconds=hold_seconds())
    table = connection.ops.quote_name(MarketingHold._meta.db_table)
    # One row per (organization, number) (ON CONFLICT may touch a row once per statement), in key order so that
    # two transactions holding the same numbers lock them in the same order.
    sql = f"""
        INSERT INTO {table} (organization_id, "to", failed_at, until)
        SELECT b.organization_id, s."to", MAX(v.failed_at), MAX(v.failed_at) + %s::interval
        FROM unnest(%s::bigint[], %s::timestamptz[]) AS v(id, failed_at)
        JOIN {Send._meta.db_table} s ON s.id = v.id
        JOIN {Broadcast._meta.db_table} b ON b.id = s.broadcast_id
        GROUP BY b.organization_id, s."to"
        ORDER BY b.organization_id, s."to"
        ON CONFLICT (organization_id, "to") DO UPDATE
            SET failed_at = GREATEST({table}.failed_at, EXCLUDED.failed_at),
                until = GREATEST({table}.until, EXCLUDED.until)
    """
    with connection.cursor() as cursor:
        cursor.execute(sql, [length, list(latest), list(latest.values())])
        return cursor.rowcount


def holds_start_for_failed(*, failures: Iterable[tuple[int, str | None, datetime | None]]) -> int:
    """The hold a failure starts, for both ways a failure comes (the POST's answer, a ``failed`` status webhook):
    ``failures`` are (send id, error code, failure time) of sends this transaction just moved to FAILED; those with
    Meta's per-user marketing limit (131049) and a time hold their number from it (``holds_start``). No query
    unless one is a 131049."""
    return holds_start(failures=[(send_id, at) for send_id, code, at in failures if is_marketing_limit(code) and at])


def holds_waiting(*, organization_id: int, numbers: Sequence[str]) -> dict[str, float]:
    """{number: seconds its hold still lasts} for the held ones among ``numbers`` (one indexed query; the
    database's clock decides, so every worker and machine agrees)."""
    wanted = sorted(set(numbers))
    if not wanted:
        return {}
    with connection.cursor() as cursor:
        cursor.execute(HOLDS_WAITING_SQL, [organization_id, wanted])
        return dict(cursor.fetchall())


# (number, seconds its hold still lasts) of the held ones among an organization's numbers (parameters: the
# organization's id, the numbers): also one part of the admission gates' one statement per batch (delivery/gate_facts).
HOLDS_WAITING_SQL = f"""
    SELECT "to", EXTRACT(EPOCH FROM (until - statement_timestamp()))::float8 AS wait
    FROM {MarketingHold._meta.db_table}
    WHERE organization_id = %s AND "to" = ANY(%s::varchar[]) AND until > statement_timestamp()
"""
