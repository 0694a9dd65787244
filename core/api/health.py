"""GET /v1/health/live: 200 whenever this process serves requests; it touches neither PostgreSQL nor Redis (no
token, no throttle, no session), so a load balancer's liveness probe never restarts web processes for an outage of
a backing service.

GET /v1/health: no token, no throttle; 200 when the database and the broker answer, else 503. Worker and beat
liveness ("ok" | "stale") is reported beside them and never makes it a 503. The 200 also names the running version
(settings.VERSION, from config/__init__.py), so a deploy can be checked from outside."""

from django.conf import settings
from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from core.errors import ApplicationError
from core.health import REQUIRED_CHECKS, health_check


class HealthApi(APIView):
    authentication_classes: list = []
    permission_classes: list = []
    throttle_classes: list = []

    @extend_schema(
        summary="Service health",
        responses={
            200: inline_serializer(
                "Health",
                fields={
                    "status": serializers.CharField(),
                    "version": serializers.CharField(),
                    "checks": serializers.DictField(child=serializers.CharField()),
                },
            )
        },
        auth=[],
    )
    def get(self, request: Request) -> Response:
        checks = health_check()
        down = {name: checks[name] for name in REQUIRED_CHECKS if checks[name] != "ok"}
        if down:
            raise ApplicationError(
                f"Unavailable: {', '.join(down)}.", code="service_unavailable", status=503, details=down
            )
        return Response({"status": "ok", "version": settings.VERSION, "checks": checks})


class HealthLiveApi(APIView):
    authentication_classes: list = []
    permission_classes: list = []
    throttle_classes: list = []

    @extend_schema(
        summary="Liveness (this process answers; the database and Redis are not consulted)",
        responses={200: inline_serializer("Liveness", fields={"status": serializers.CharField()})},
        auth=[],
    )
    def get(self, request: Request) -> Response:
        return Response({"status": "ok"})
