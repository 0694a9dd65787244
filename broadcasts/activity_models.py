"""The kept activity rollups the admin overview reads (broadcasts/rollups.py writes them, broadcasts/overview.py
reads them): POSTs per channel and second, by the minute, and failures per channel and code, by the hour. Part of
the broadcasts app (broadcasts/models.py imports them). A row per active channel and minute, a few per channel and
hour, so the overview never reads the sends; retention drops the old ones (broadcasts/retention.py)."""

from django.contrib.postgres.fields import ArrayField
from django.db import models

from templates_registry.models import Channel

SECONDS_PER_MINUTE = 60


def _empty_minute() -> list[int]:
    return [0] * SECONDS_PER_MINUTE


class ChannelMinute(models.Model):
    """POSTs made to Meta from one channel in one minute, per second of it (``per_second[i]`` = second i): the
    minute's total and its busiest second (against the channel's ``max_mps``) without a row per second. Batches
    add to it elementwise, in any order."""

    channel = models.ForeignKey(Channel, on_delete=models.CASCADE, related_name="+", db_index=False)
    minute = models.DateTimeField()
    per_second = ArrayField(models.IntegerField(), size=SECONDS_PER_MINUTE, default=_empty_minute)

    class Meta:
        constraints = [
            # The upsert's conflict target and the overview's range read (a channel's last hour).
            models.UniqueConstraint(fields=["channel", "minute"], name="channelminute_unique"),
        ]
        # Retention's DELETE of old minutes (one index entry per channel and minute: a write per minute, not per
        # batch; the batches' updates change no indexed column).
        indexes = [models.Index(fields=["minute"], name="channelminute_minute")]

    def __str__(self) -> str:
        return f"{self.channel_id} {self.minute:%Y-%m-%d %H:%M}"


class FailureHour(models.Model):
    """Sends that became FAILED with ``code`` on one channel in one hour (each failure once when it happened, a
    retried send that fails again twice: what the operator saw go wrong, not the sends' current statuses)."""

    channel = models.ForeignKey(Channel, on_delete=models.CASCADE, related_name="+", db_index=False)
    hour = models.DateTimeField()
    code = models.CharField(max_length=64)
    failed = models.IntegerField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["channel", "hour", "code"], name="failurehour_unique"),
        ]
        # The overview of all organizations (the last day's hours, whatever the channel) and retention's DELETE.
        indexes = [models.Index(fields=["hour"], name="failurehour_hour")]

    def __str__(self) -> str:
        return f"{self.channel_id} {self.hour:%Y-%m-%d %H}:00 {self.code} x{self.failed}"
