"""Response shapes of the bulk API.

The dict builders are what the views return (plain dicts rendered by orjson: a 100-row page costs
microseconds, not a DRF serializer pass). The Serializer classes below describe the same shapes
for the OpenAPI schema only; tests/broadcasts/test_api_schema.py keeps the two in step.
"""

from typing import Any

from rest_framework import serializers

from broadcasts.models import Broadcast, BroadcastStatus, SendStatus
from broadcasts.pricing import money
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
        "cost": cost_representation(broadcast),
        "send_window": broadcast.send_window,
    }


def cost_representation(broadcast: Broadcast) -> dict[str, Any]:
    """``cost`` (docs/rules.md) from the broadcast's kept fields: no query."""
    return {
        "currency": broadcast.cost_currency or None,
        "estimated": money(broadcast.cost_estimated),
        "billed": money(broadcast.billed),
        "max_cost": money(broadcast.max_cost),
    }


def pricing_representation(value: Any) -> dict[str, Any] | None:
    """Meta's ``pricing`` of the send's status webhooks, as ``{category, type, billable}``; null before any."""
    if not isinstance(value, dict):
        return None
    return {"category": value.get("category"), "type": value.get("type"), "billable": value.get("billable")}


def send_representation(row: dict[str, Any]) -> dict[str, Any]:
    error = None
    if row["error_code"]:
        error = {"code": row["error_code"], "message": row["error_message"], "retryable": row["error_retryable"]}
    to, user_id = row["to"], row.get("user_id")
    return {
        "index": row["index"],
        # A recipient given by user_id stores its BSUID in both: it has no number to show (docs/api.md).
        "to": None if user_id is not None and to == user_id else to,
        "user_id": user_id,
        "status": row["status"],
        "message_id": row["message_id"],
        "attempts": row["attempts"],
        "error": error,
        "variables": row["variables"],
        "meta_data": row["meta_data"],
        "updated_at": iso_utc(row["updated_at"]),
        "pricing": pricing_representation(row.get("pricing")),
        "meta_status": row.get("meta_status"),
        "unknown_outcomes": row.get("unknown_outcomes", 0),
    }


# --- OpenAPI shapes ----------------------------------------------------------------------------


class HeaderMediaSerializer(serializers.Serializer):
    type = serializers.ChoiceField(choices=["image", "video", "document"], help_text="The template's header format.")
    link = serializers.URLField(required=False, max_length=2048, help_text="An https URL Meta fetches (or `id`).")
    id = serializers.CharField(required=False, max_length=64, help_text="Meta's media id (or `link`).")
    filename = serializers.CharField(required=False, max_length=240, help_text="Documents only.")


class RecipientInSerializer(serializers.Serializer):
    to = serializers.CharField(
        required=False, help_text="`+` then digits, a valid number for its country (E.164). Exactly one of to, user_id."
    )
    user_id = serializers.CharField(
        required=False,
        help_text="A business-scoped user id (BSUID), e.g. `US.13491208655302741918`, sent as Meta's `recipient`. "
        "Not for AUTHENTICATION templates.",
    )
    variables = serializers.DictField(
        child=serializers.CharField(max_length=1024),
        required=False,
        help_text='Template variables by name (`"1"`, `"2"` for positional templates). Unused keys are dropped.',
    )
    meta_data = serializers.DictField(
        required=False, allow_null=True, help_text="Any JSON object (at most 4096 bytes), returned with the send."
    )
    header_media = HeaderMediaSerializer(
        required=False, allow_null=True, help_text="This recipient's media header, overriding the broadcast's."
    )
    buttons = serializers.DictField(
        child=serializers.CharField(max_length=2000),
        required=False,
        help_text='Button parameters by button index: `{"0": "<URL suffix | coupon code | one-time code>"}`.',
    )
    timezone = serializers.CharField(
        required=False,
        help_text="IANA time-zone name (`America/Mexico_City`) this recipient's send window is read in; first of "
        "the zones tried (docs/rules.md).",
    )


class SendWindowSerializer(serializers.Serializer):
    start = serializers.CharField(help_text='"HH:MM", the recipient\'s local time the window opens.')
    end = serializers.CharField(
        help_text='"HH:MM", when it closes; before start: the window spans midnight. Equal to start: 400.'
    )
    days = serializers.ListField(
        child=serializers.ChoiceField(choices=["mon", "tue", "wed", "thu", "fri", "sat", "sun"]),
        required=False,
        help_text="Days on which the window opens (every day when omitted).",
    )
    timezone = serializers.CharField(
        required=False, help_text="IANA zone for recipients without their own `timezone` (else the number's zone)."
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
    header_media = HeaderMediaSerializer(
        required=False, allow_null=True, help_text="For a template whose header is an image, video or document."
    )
    max_cost = serializers.CharField(
        required=False,
        allow_null=True,
        help_text='Spending cap, a decimal string > 0 with at most 6 decimals ("250.00"), in the rate card\'s '
        "currency; needs a rate card pricing every recipient. The first send that would pass it pauses the broadcast "
        "(`budget_exceeded`).",
    )
    send_window = SendWindowSerializer(
        required=False,
        allow_null=True,
        help_text="Sends leave only while the recipient's local time is inside this window (docs/rules.md).",
    )
    dry_run = serializers.BooleanField(
        required=False,
        help_text="`true`: validate exactly as a real request, store nothing, call nothing; answer 200 with the "
        "preview (cost estimate, messaging-limit outlook, eta). The Idempotency-Key is ignored.",
    )


class CountryEstimateSerializer(serializers.Serializer):
    recipients = serializers.IntegerField()
    unit_price = serializers.CharField(allow_null=True, help_text="Decimal string; null when the card has no price.")
    total = serializers.CharField()


class EstimateSerializer(serializers.Serializer):
    currency = serializers.CharField()
    total = serializers.CharField(help_text="Decimal string.")
    category = serializers.CharField()
    by_country = serializers.DictField(child=CountryEstimateSerializer(), help_text="By libphonenumber region.")
    suppressed = serializers.IntegerField(help_text="MARKETING: suppressed numbers, not sent, costing nothing.")
    blocked = serializers.IntegerField(
        help_text="MARKETING: recipients of MARKETING_BLOCKED_REGIONS, not sent, costing nothing."
    )
    frequency_capped = serializers.IntegerField(
        help_text="MARKETING: recipients the organization's marketing frequency cap would stop if posted now, "
        "costing nothing."
    )
    customer_service_window = serializers.IntegerField(
        help_text="Recipients with an open customer-service window, priced at the in-window price."
    )
    unpriced = serializers.IntegerField(help_text="Recipients the card prices neither by country nor by `*`.")


class MessagingLimitOutlookSerializer(serializers.Serializer):
    limit = serializers.IntegerField(allow_null=True, help_text="The organization's limit; null when unlimited.")
    used = serializers.IntegerField(
        allow_null=True, help_text="Numbers counted in the window now; null when unlimited (nothing is counted)."
    )
    would_wait = serializers.IntegerField()


class DryRunSerializer(serializers.Serializer):
    dry_run = serializers.BooleanField()
    total_recipients = serializers.IntegerField()
    missing_variables = serializers.IntegerField(help_text="Sends that would be stored FAILED missing_variables.")
    frequency_capped = serializers.IntegerField(
        help_text="MARKETING: sends the organization's marketing frequency cap would stop if posted now (counting "
        "sends already posted within its days), as `estimate.frequency_capped`."
    )
    estimate = EstimateSerializer(allow_null=True, help_text="Null without a rate card.")
    messaging_limit = MessagingLimitOutlookSerializer()
    eta = serializers.DateTimeField(allow_null=True)


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


class CostSerializer(serializers.Serializer):
    currency = serializers.CharField(allow_null=True, help_text="ISO 4217 code of the rate card; null without one.")
    estimated = serializers.CharField(
        allow_null=True,
        help_text="Decimal string: the sends priced at creation as a dry run would; null without a card.",
    )
    billed = serializers.CharField(help_text="Decimal string: the stored prices of the sends Meta billed, once each.")
    max_cost = serializers.CharField(allow_null=True, help_text="The spending cap of the POST, or null.")


class PricingSerializer(serializers.Serializer):
    category = serializers.CharField(allow_null=True)
    type = serializers.CharField(allow_null=True)
    billable = serializers.BooleanField(allow_null=True)


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
    cost = CostSerializer()
    send_window = SendWindowSerializer(allow_null=True, help_text="The request's send window as given, or null.")


class WaitingSerializer(serializers.Serializer):
    schedule = serializers.IntegerField(help_text="Pending sends of a broadcast whose scheduled_at is ahead.")
    throughput = serializers.IntegerField(help_text="Pending sends waiting for their turn at the channel's cap.")
    messaging_limit = serializers.IntegerField(
        help_text="Pending sends waiting for the organization's messaging-limit window to free room (docs/rules.md)."
    )
    send_window = serializers.IntegerField(
        help_text="Pending sends waiting for their send window to open in the recipient's local time."
    )
    retry = serializers.IntegerField(help_text="Pending sends waiting for another attempt after a failed one.")


class BroadcastDetailSerializer(BroadcastSerializer):
    waiting = WaitingSerializer(help_text="How many pending sends wait, and why; they add up to counts.pending.")
    eta = serializers.DateTimeField(
        allow_null=True,
        help_text="When the last pending send is expected to leave (the channel's cap, the messaging limit, the send "
        "window, retries); "
        "null when nothing is pending or the broadcast is paused.",
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
    to = serializers.CharField(allow_null=True, help_text="E.164; null for a recipient given by user_id.")
    user_id = serializers.CharField(
        allow_null=True, help_text="The BSUID given, else the one Meta named for this message, else null."
    )
    status = serializers.ChoiceField(choices=SendStatus.choices)
    message_id = serializers.CharField(allow_null=True, help_text="The wamid once sent.")
    attempts = serializers.IntegerField()
    error = SendErrorSerializer(allow_null=True)
    variables = serializers.DictField(child=serializers.CharField())
    meta_data = serializers.DictField(allow_null=True)
    updated_at = serializers.DateTimeField()
    pricing = PricingSerializer(allow_null=True, help_text="Meta's pricing from the status webhooks, or null.")
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


class RetryRequestSerializer(serializers.Serializer):
    error_codes = serializers.ListField(
        child=serializers.CharField(max_length=64),
        required=False,
        allow_null=True,
        min_length=1,
        max_length=50,
        help_text='Re-queue only FAILED sends with one of these codes (strings: `"131049"`, `"timeout"`); every '
        "retryable failure when omitted. A code nothing failed with matches nothing.",
    )
    not_before = serializers.DateTimeField(
        required=False,
        allow_null=True,
        help_text="ISO 8601 with an offset, in the future, at most 30 days ahead: the re-queued sends wait until "
        "then (`waiting.retry`) and start within 15 s after it. Omitted or null: at once.",
    )


class RetriedBroadcastSerializer(BroadcastSerializer):
    retried = serializers.IntegerField(help_text="FAILED sends now PENDING again (0: nothing changed).")
