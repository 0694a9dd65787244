"""The straightforward implementation of POST /v1/messages/bulk, kept only as the benchmark's
baseline: a nested DRF serializer validating each recipient (phonenumbers.parse per number) and
``bulk_create`` of the sends. Same rules for the happy path, same response; mounted only by
benchmarks/ingest_urls.py, never by the service.
"""

import phonenumbers
from django.db import transaction
from django.utils import timezone
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from broadcasts.bulk_requests import channel_resolve
from broadcasts.models import Broadcast, Send, SendStatus
from core.errors import ApplicationError
from core.timefmt import iso_utc
from templates_registry.models import Template


def _e164(value: str) -> str:
    try:
        number = phonenumbers.parse(value, None)
    except phonenumbers.NumberParseException:
        raise serializers.ValidationError("Not a valid E.164 phone number.") from None
    if not phonenumbers.is_valid_number(number):
        raise serializers.ValidationError("Not a valid E.164 phone number.")
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


class NaiveRecipientSerializer(serializers.Serializer):
    to = serializers.CharField(max_length=32)
    variables = serializers.DictField(child=serializers.CharField(max_length=1024), required=False)
    meta_data = serializers.JSONField(required=False, allow_null=True)

    def validate_to(self, value: str) -> str:
        return _e164(value)


class NaiveBulkSerializer(serializers.Serializer):
    template_name = serializers.CharField(max_length=512)
    language = serializers.CharField(max_length=20)
    channel_id = serializers.CharField(max_length=64)
    campaign_name = serializers.CharField(max_length=255, required=False, allow_null=True)
    scheduled_at = serializers.DateTimeField(required=False, allow_null=True)
    recipients = NaiveRecipientSerializer(many=True, allow_empty=False, max_length=5000)


class NaiveBulkApi(APIView):
    required_scope = "messages:bulk"

    def post(self, request: Request) -> Response:
        serializer = NaiveBulkSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        organization = request.user.organization
        channel = channel_resolve(organization=organization, channel_id=data["channel_id"])
        if channel is None:
            raise ApplicationError("Unknown channel.", code="channel_not_found")
        template = Template.objects.filter(
            waba_id=channel.waba_id, name=data["template_name"], language=data["language"], status="APPROVED"
        ).first()
        if template is None:
            raise ApplicationError("Unknown template.", code="template_not_found")
        now = timezone.now()
        needed = template.variables
        with transaction.atomic():
            broadcast = Broadcast.objects.create(
                organization=organization,
                channel=channel,
                template=template,
                template_name=template.name,
                language=template.language,
                campaign_name=data.get("campaign_name") or f"{template.name} {now:%Y-%m-%d %H:%M} UTC",
                total_recipients=len(data["recipients"]),
                scheduled_at=data.get("scheduled_at"),
            )
            sends = []
            for index, recipient in enumerate(data["recipients"]):
                variables = {k: v for k, v in recipient.get("variables", {}).items() if k in needed}
                missing = [k for k in needed if not variables.get(k)]
                sends.append(
                    Send(
                        broadcast=broadcast,
                        index=index,
                        to=recipient["to"],
                        variables=variables,
                        meta_data=recipient.get("meta_data"),
                        status=SendStatus.FAILED if missing else SendStatus.PENDING,
                        error_code="missing_variables" if missing else "",
                        updated_at=now,
                    )
                )
            Send.objects.bulk_create(sends)
        body = {
            "broadcast_id": broadcast.id,
            "status": "PENDING",
            "total_recipients": len(sends),
            "scheduled_at": iso_utc(broadcast.scheduled_at),
        }
        return Response(body, status=202)
