"""The error envelope of every API (docs/api.md), for the OpenAPI schema: shared by broadcasts and events."""

from rest_framework import serializers


class ErrorBodySerializer(serializers.Serializer):
    code = serializers.CharField()
    message = serializers.CharField()
    details = serializers.DictField(help_text="For validation errors: path -> [messages].")
    request_id = serializers.CharField(help_text="The request's `X-Request-Id`: quote it when reporting a problem.")


class ErrorEnvelopeSerializer(serializers.Serializer):
    error = ErrorBodySerializer()
