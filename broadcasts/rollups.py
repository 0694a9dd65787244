"""The overview's kept rollups, moved with the sends (docs/operations.md): POSTs per channel and second, by the
minute (``ChannelMinute``), and failures per channel and code, by the hour (``FailureHour``).

Every writer that records a POST's outcome or a send's failure (delivery/outcomes.py, status_updates/apply.py,
delivery/recovery.py, services.py) calls ``activity_add`` once per batch, in the transaction that moved the sends:
ONE statement (an upsert of each table, as two CTE-joined INSERTs when both have rows), no statement when the batch
posted and failed nothing (a body of delivered/read statuses costs nothing more). Rows are added relatively
(``per_second`` elementwise, ``failed`` by sum), so concurrent batches never lose one another's counts; each statement
takes its rows in key order, and writers call it last in their transaction (after the broadcast locks of
broadcasts/counts.py), so two writers cannot wait for each other in a cycle.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from datetime import UTC, datetime

import orjson
from django.db import connection

from broadcasts.activity_models import SECONDS_PER_MINUTE, ChannelMinute, FailureHour

_MINUTES = connection.ops.quote_name(ChannelMinute._meta.db_table)
_HOURS = connection.ops.quote_name(FailureHour._meta.db_table)

# The channel is the caller's, else the one of ``broadcast`` (a journal entry written without it).
_POSTS_SQL = f"""
INSERT INTO {_MINUTES} (channel_id, minute, per_second)
SELECT c.id, v.minute, v.per_second
FROM (SELECT COALESCE(NULLIF(%s, ''), (SELECT channel_id FROM broadcasts_broadcast WHERE id = %s)) AS id) AS c,
     json_to_recordset(%s::json) AS v(minute timestamptz, per_second int[])
WHERE c.id IS NOT NULL
ORDER BY v.minute
ON CONFLICT (channel_id, minute) DO UPDATE SET per_second = ARRAY(
    SELECT a + b FROM unnest({_MINUTES}.per_second, EXCLUDED.per_second) WITH ORDINALITY AS x(a, b, i) ORDER BY i
)
"""

# Each broadcast's channel by its primary key; one row per (channel, code) of the batch.
_FAILURES_SQL = f"""
INSERT INTO {_HOURS} (channel_id, hour, code, failed)
SELECT b.channel_id, %s, v.code, SUM(v.n)
FROM json_to_recordset(%s::json) AS v(broadcast_id text, code text, n int)
JOIN broadcasts_broadcast AS b ON b.id = v.broadcast_id
GROUP BY b.channel_id, v.code
ORDER BY b.channel_id, v.code
ON CONFLICT (channel_id, hour, code) DO UPDATE SET failed = {_HOURS}.failed + EXCLUDED.failed
"""


def minute_of(at: datetime) -> datetime:
    return at.astimezone(UTC).replace(second=0, microsecond=0)


def hour_of(at: datetime) -> datetime:
    return at.astimezone(UTC).replace(minute=0, second=0, microsecond=0)


def _minutes(posted: Iterable[datetime]) -> list[dict]:
    """The POSTs' instants as one row per minute: ``{"minute", "per_second": [60 counts]}``."""
    rows: dict[datetime, list[int]] = {}
    for at in posted:
        at = at.astimezone(UTC)
        rows.setdefault(minute_of(at), [0] * SECONDS_PER_MINUTE)[at.second] += 1
    return [{"minute": minute, "per_second": seconds} for minute, seconds in sorted(rows.items())]


def activity_add(
    *,
    now: datetime,
    posted: Iterable[datetime] = (),
    channel_id: str = "",
    broadcast_id: str = "",
    failures: Iterable[tuple[str, str]] = (),
) -> None:
    """Add a batch to the rollups: ``posted``, the instants of the POSTs one channel made (``channel_id``, else the
    channel of ``broadcast_id``); ``failures``, one (broadcast id, error code) per send that became FAILED (counted
    in the hour of ``now``). One statement, none for an empty batch."""
    minutes = _minutes(posted)
    failed = Counter(failures)
    sql: list[str] = []
    params: list = []
    if minutes:
        sql.append(_POSTS_SQL)
        params += [channel_id, broadcast_id, orjson.dumps(minutes).decode()]
    if failed:
        sql.append(_FAILURES_SQL)
        rows = [{"broadcast_id": b, "code": code, "n": n} for (b, code), n in sorted(failed.items())]
        params += [hour_of(now), orjson.dumps(rows).decode()]
    if not sql:
        return
    # Both tables in one round trip: the posts as a data-modifying CTE of the failures' INSERT.
    statement = f"WITH posted AS ({sql[0]}) {sql[1]}" if len(sql) == 2 else sql[0]
    with connection.cursor() as cursor:
        cursor.execute(statement, params)
