"""Response shapes of the bulk API.

The dict builders are what the views return (plain dicts rendered by orjson: a 100-row page costs
microseconds, not a DRF serializer pass). The Serializer classes below describe the same shapes
for the OpenAPI schema only; tests/broadcasts/test_api_schema.py keeps the two in step.
"""

from typing import Any

from rest_framework import serializers

from broadcasts.models import Broadcast, BroadcastStatus, SendStatus
from broadcasts.selectors import error_rate
from core.api.serializers import ErrorBodySerializer, ErrorEnvelopeSerializer  # noqa: F401 (the API's envelope)
from core.timefmt import iso_utc


def broadcast_representation(broadcast: Broadcast, counts: dict[str, int]) -> dict[str, Any]:
    return {
        "broadcast_id": broadcast.id,
        "campaign_name": broadcast.campaign_name,
        "status": broadcast.status,
        "template_name": broadcast.template_name,
        "language": broadcast.language,
        "channel_id": broadcast.channel_id,
        "total_recipients": broadcast.total_recipients,
        "scheduled_at": iso_utc(broadcast.scheduled_at),
        "created_at": iso_utc(broadcast.created_at),
        "started_at": iso_utc(broadcast.started_at),
        "completed_at": iso_utc(broadcast.completed_at),
        "counts": counts,
        "error_rate": error_rate(counts=counts, total=broadcast.total_recipients),
        "paused_reason": broadcast.paused_reason if broadcast.status == BroadcastStatus.PAUSED else None,
        "purged_at": iso_utc(broadcast.purged_at),
    }


def send_representation(row: dict[str, Any]) -> dict[str, Any]:
    error = None
    if row["error_code"]:
        error = {"code": row["error_code"], "message": row["error_message"], "retryable": row["error_retryable"]}
    return {
        "index": row["index"],
        "to": row["to"],
        "status": row["status"],
        "message_id": row["message_id"],
        "attempts": row["attempts"],
        "error": error,
        "variables": row["variables"],
        "meta_data": row["meta_data"],
        "updated_at": iso_utc(row["updated_at"]),
        "meta_status": row.get("meta_status"),
        "unknown_outcomes": row.get("unknown_outcomes", 0),
    }


# --- OpenAPI shapes ----------------------------------------------------------------------------


class RecipientInSerializer(serializers.Serializer):
    to = serializers.CharField(help_text="`+` then digits, a valid number for its country (E.164).")
    variables = serializers.DictField(
        child=serializers.CharField(max_length=1024),
        required=False,
        help_text='Template variables by name (`"1"`, `"2"` for positional templates). Unused keys are dropped.',
    )
    meta_data = serializers.DictField(
        required=False, allow_null=True, help_text="Any JSON object (at most 4096 bytes), returned with the send."
    )


class BulkCreateSerializer(serializers.Serializer):
    template_name = serializers.CharField(max_length=512)
    language = serializers.CharField(max_length=20, help_text="Template language code: `es`, `en_US`, ...")
    channel_id = serializers.CharField(help_text="The channel's 24-hex id, or its Meta `phone_number_id`.")
    campaign_name = serializers.CharField(
        max_length=255, required=False, allow_null=True, help_text="Generated when omitted."
    )
    scheduled_at = serializers.DateTimeField(
        required=False,
        allow_null=True,
        help_text="ISO 8601 with an offset, in the future, at most 90 days ahead; null or omitted = now.",
    )
    recipients = RecipientInSerializer(many=True, help_text="1 to 5000 recipients.")


class BulkAcceptedSerializer(serializers.Serializer):
    broadcast_id = serializers.CharField()
    status = serializers.ChoiceField(choices=[BroadcastStatus.PENDING.value])
    total_recipients = serializers.IntegerField()
    scheduled_at = serializers.DateTimeField(allow_null=True)


class CountsSerializer(serializers.Serializer):
    pending = serializers.IntegerField()
    sent = serializers.IntegerField()
    delivered = serializers.IntegerField()
    read = serializers.IntegerField()
    failed = serializers.IntegerField()
    cancelled = serializers.IntegerField()


class PausedReasonSerializer(serializers.Serializer):
    code = serializers.CharField()
    message = serializers.CharField()


class BroadcastSerializer(serializers.Serializer):
    broadcast_id = serializers.CharField()
    campaign_name = serializers.CharField()
    status = serializers.ChoiceField(choices=BroadcastStatus.choices)
    template_name = serializers.CharField()
    language = serializers.CharField()
    channel_id = serializers.CharField(help_text="The channel's 24-hex id.")
    total_recipients = serializers.IntegerField()
    scheduled_at = serializers.DateTimeField(allow_null=True)
    created_at = serializers.DateTimeField()
    started_at = serializers.DateTimeField(allow_null=True)
    completed_at = serializers.DateTimeField(allow_null=True)
    counts = CountsSerializer()
    error_rate = serializers.FloatField(help_text="failed / (total - pending - cancelled), 4 decimals; 0 if none.")
    paused_reason = PausedReasonSerializer(allow_null=True, help_text="Set when PAUSED, else null.")
    purged_at = serializers.DateTimeField(
        allow_null=True,
        help_text="When retention deleted the broadcast's sends (RETENTION_DAYS after it ended): the counts stay, "
        "the recipients listing is empty. Null until then.",
    )


class BroadcastPageSerializer(serializers.Serializer):
    data = BroadcastSerializer(many=True)
    next_cursor = serializers.CharField(allow_null=True)


class SendErrorSerializer(serializers.Serializer):
    code = serializers.CharField(help_text='Meta\'s numeric code as a string ("131026") or ours ("missing_variables").')
    message = serializers.CharField()
    retryable = serializers.BooleanField(allow_null=True)


class SendSerializer(serializers.Serializer):
    index = serializers.IntegerField(help_text="Position in the request's recipients array.")
    to = serializers.CharField()
    status = serializers.ChoiceField(choices=SendStatus.choices)
    message_id = serializers.CharField(allow_null=True, help_text="The wamid once sent.")
    attempts = serializers.IntegerField()
    error = SendErrorSerializer(allow_null=True)
    variables = serializers.DictField(child=serializers.CharField())
    meta_data = serializers.DictField(allow_null=True)
    updated_at = serializers.DateTimeField()
    meta_status = serializers.CharField(
        allow_null=True,
        help_text="Meta's `message_status` from its answer: `accepted`, `held_for_quality_assessment`, `paused`.",
    )
    unknown_outcomes = serializers.IntegerField(
        help_text="Attempts whose outcome was unknown (timeout, worker killed) and that were posted again."
    )


class SendPageSerializer(serializers.Serializer):
    data = SendSerializer(many=True)
    next_cursor = serializers.CharField(allow_null=True)
