"""The hourly purge of Idempotency-Key records (beat task broadcasts.idempotency_purge)."""

from datetime import timedelta

from django.conf import settings
from django.utils import timezone

from broadcasts.models import IdempotencyRecord
from broadcasts.tasks import idempotency_purge_task


def test_purge_deletes_only_records_older_than_24_hours(org):
    # given one record from 25 h ago and one from 1 h ago
    now = timezone.now()
    old = IdempotencyRecord.objects.create(organization=org, key="old", request_hash="a" * 64, response_body={})
    fresh = IdempotencyRecord.objects.create(organization=org, key="fresh", request_hash="b" * 64, response_body={})
    IdempotencyRecord.objects.filter(pk=old.pk).update(created_at=now - timedelta(hours=25))
    IdempotencyRecord.objects.filter(pk=fresh.pk).update(created_at=now - timedelta(hours=1))

    # when the beat task runs
    deleted = idempotency_purge_task()

    # then only the expired record is gone
    assert deleted == 1
    assert list(IdempotencyRecord.objects.values_list("key", flat=True)) == ["fresh"]


def test_purge_is_scheduled_by_beat():
    entry = settings.CELERY_BEAT_SCHEDULE["broadcasts-idempotency-purge"]
    assert entry["task"] == idempotency_purge_task.name
