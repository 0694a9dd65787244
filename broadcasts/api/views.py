"""HTTP layer of the bulk API (docs/api.md): parse, call one service or selector,
shape the answer. No business rules here."""

import gc
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from django.http import StreamingHttpResponse
from django.utils import timezone
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import (
    OpenApiExample,
    OpenApiParameter,
    OpenApiResponse,
    extend_schema,
    extend_schema_view,
)
from rest_framework import exceptions
from rest_framework.request import Request
from rest_framework.response import Response

from broadcasts import exports, previews, selectors, services
from broadcasts.api import schema as _schema  # noqa: F401  (registers the bearer scheme)
from broadcasts.api import serializers as s
from broadcasts.api.formats import RECIPIENT_FORMATS, RecipientsNegotiation, format_of
from broadcasts.api.pagination import (
    cursor_decode,
    cursor_encode,
    index_value,
    limit_parse,
    object_id_value,
    timestamp_value,
)
from broadcasts.api.progress import broadcast_progress
from broadcasts.models import BroadcastStatus, SendStatus
from core.api.base import ApiView
from core.api.parsers import json_parse
from core.errors import ApplicationError
from core.request_body import body_read

LIST_LIMIT_DEFAULT, LIST_LIMIT_MAX = 50, 100
RECIPIENTS_LIMIT_DEFAULT, RECIPIENTS_LIMIT_MAX = 100, 1000


def _errors(*codes: int) -> dict[int, OpenApiResponse]:
    described = {
        400: "Invalid request (`validation_error`, `invalid_json`, `channel_not_found`, `template_not_found`, "
        "`template_not_approved`); `details` maps each path to its messages.",
        401: "Missing, malformed, unknown, revoked or expired token (`unauthorized`).",
        403: "The token lacks the `messages:bulk` scope (`insufficient_scope`).",
        404: "No such broadcast for this organization (`not_found`).",
        409: "Not possible from the broadcast's state, or Idempotency-Key reused with another body (`conflict`).",
        413: "Body over 10 MiB (`request_too_large`).",
        415: "Content type other than application/json (`unsupported_media_type`).",
        429: "Per-token rate limit exceeded (`rate_limited`); see `Retry-After`.",
    }
    return {code: OpenApiResponse(s.ErrorEnvelopeSerializer, description=described[code]) for code in codes}


def _broadcast_body(broadcast) -> dict[str, Any]:
    return s.broadcast_representation(broadcast, selectors.counts_of(broadcast))


def _json_body(request: Request, raw: bytes) -> Any:
    media_type = (request.content_type or "").split(";", 1)[0].strip().lower()
    if media_type != "application/json":
        raise exceptions.UnsupportedMediaType(media_type or "(none)", detail="Send the body as application/json.")
    # NUL is checked field by field by the validation, which reports every bad recipient at once.
    return json_parse(raw, nul_check=False)


def _status_filter(value: str | None, allowed: list[str]) -> str | None:
    """The ``status`` query parameter in any case, as the stored (upper-case) value; 400 when it names none."""
    if value is None:
        return None
    status = value.upper()
    if status not in allowed:
        raise ApplicationError(
            "Invalid status filter.",
            details={"status": ["Must be one of: " + ", ".join(v.lower() for v in allowed) + "."]},
        )
    return status


@contextmanager
def _gc_paused() -> Iterator[None]:
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


class BulkView(ApiView):
    required_scope = "messages:bulk"


class BroadcastCollectionApi(BulkView):
    def initial(self, request: Request, *args: Any, **kwargs: Any) -> None:
        # Size first, before authentication: a 413 must not depend on the token, and the body is
        # read (or drained) before any answer so that the client never sees a reset.
        if request.method == "POST":
            self.raw_body = body_read(request._request)
        super().initial(request, *args, **kwargs)

    @extend_schema(
        operation_id="bulk_create",
        summary="Send a template to up to 5000 recipients",
        request=s.BulkCreateSerializer,
        parameters=[
            OpenApiParameter(
                "Idempotency-Key",
                OpenApiTypes.STR,
                OpenApiParameter.HEADER,
                description="Same key + same body within 24 h replays the first 202 (`Idempotent-Replayed: true`); "
                "another body: 409.",
            )
        ],
        responses={
            202: s.BulkAcceptedSerializer,
            200: OpenApiResponse(s.DryRunSerializer, description="`dry_run: true`: the preview; nothing stored."),
            **_errors(400, 401, 403, 409, 413, 415, 429),
        },
        examples=[
            OpenApiExample(
                "Two recipients",
                request_only=True,
                value={
                    "template_name": "welcome_v2",
                    "language": "es",
                    "channel_id": "100000000000001",
                    "campaign_name": "Black Friday",
                    "scheduled_at": "2026-11-28T09:00:00-03:00",
                    "recipients": [
                        {"to": "+34612345678", "variables": {"nombre": "Ana", "monto": "10"}, "meta_data": {"id": 1}},
                        {"to": "+5511987654321", "variables": {"nombre": "Bruno", "monto": "25"}},
                    ],
                },
            ),
            OpenApiExample(
                "Accepted",
                response_only=True,
                status_codes=["202"],
                value={
                    "broadcast_id": "6746f0a1c3b2a1f0e9d8c7b6",
                    "status": "PENDING",
                    "total_recipients": 2,
                    "scheduled_at": "2026-11-28T12:00:00Z",
                },
            ),
            OpenApiExample(
                "Invalid recipients",
                response_only=True,
                status_codes=["400"],
                value={
                    "error": {
                        "code": "validation_error",
                        "message": "The request is invalid; see details.",
                        "details": {"recipients[17].to": ["Not a valid E.164 phone number."]},
                    }
                },
            ),
        ],
    )
    def post(self, request: Request) -> Response:
        # A 5000-recipient body is ~60 000 new objects, none in a reference cycle: without this
        # the cyclic GC runs full collections of the whole process mid-request (+40 ms at p50).
        with _gc_paused():
            body = _json_body(request, self.raw_body)
            if isinstance(body, dict) and body.get("dry_run") is True:
                # docs/rules.md: validated as a real request, nothing stored; the Idempotency-Key is not recorded.
                preview = previews.broadcast_preview(
                    organization=request.user.organization,
                    body=body,
                    idempotency_key=request.headers.get("Idempotency-Key"),
                )
                return Response(preview, status=200)
            result = services.broadcast_create(
                organization=request.user.organization,
                token=request.auth,
                body=body,
                idempotency_key=request.headers.get("Idempotency-Key"),
            )
        headers = {"Location": f"/v1/messages/bulk/{result.body['broadcast_id']}"}
        if result.replayed:
            headers["Idempotent-Replayed"] = "true"
        return Response(result.body, status=202, headers=headers)

    @extend_schema(
        operation_id="bulk_list",
        summary="The organization's broadcasts, newest first",
        parameters=[
            OpenApiParameter(
                "status",
                OpenApiTypes.STR,
                description="Only broadcasts in this status (any case): " + ", ".join(BroadcastStatus.values),
            ),
            OpenApiParameter("limit", OpenApiTypes.INT, description="1-100, default 50."),
            OpenApiParameter("cursor", OpenApiTypes.STR, description="`next_cursor` of the previous page."),
        ],
        responses={200: s.BroadcastPageSerializer, **_errors(400, 401, 403, 429)},
    )
    def get(self, request: Request) -> Response:
        status = _status_filter(request.query_params.get("status"), BroadcastStatus.values)
        limit = limit_parse(request.query_params.get("limit"), default=LIST_LIMIT_DEFAULT, maximum=LIST_LIMIT_MAX)
        position = cursor_decode(request.query_params.get("cursor"), kinds=(timestamp_value, object_id_value))
        after = (position[0], position[1]) if position is not None else None
        page, more = selectors.broadcast_list(
            organization=request.user.organization, limit=limit, after=after, status=status
        )
        next_cursor = cursor_encode(page[-1].created_at.isoformat(), page[-1].id) if more else None
        data = [s.broadcast_representation(b, selectors.counts_of(b)) for b in page]
        return Response({"data": data, "next_cursor": next_cursor})


class BroadcastDetailApi(BulkView):
    @extend_schema(
        operation_id="bulk_retrieve",
        summary="A broadcast with its counts per send status",
        responses={200: s.BroadcastDetailSerializer, **_errors(401, 403, 404, 429)},
    )
    def get(self, request: Request, broadcast_id: str) -> Response:
        broadcast = selectors.broadcast_get(broadcast_id=broadcast_id, organization=request.user.organization)
        return Response({**_broadcast_body(broadcast), **broadcast_progress(broadcast=broadcast, now=timezone.now())})


class BroadcastRecipientsApi(BulkView):
    content_negotiation_class = RecipientsNegotiation

    @extend_schema(
        operation_id="bulk_recipients",
        summary="The broadcast's sends in request order (a JSON page, or every one as CSV)",
        parameters=[
            OpenApiParameter(
                "status",
                OpenApiTypes.STR,
                description="Only sends in this status (any case): " + ", ".join(SendStatus.values),
            ),
            OpenApiParameter("limit", OpenApiTypes.INT, description="1-1000, default 100 (JSON pages only)."),
            OpenApiParameter("cursor", OpenApiTypes.STR, description="`next_cursor` of the previous page (JSON)."),
            OpenApiParameter(
                "format",
                OpenApiTypes.STR,
                enum=list(RECIPIENT_FORMATS),
                description="`json` (default): a page. `csv` (or `Accept: text/csv` without `format`): every "
                "matching send, streamed as `text/csv` with the "
                "header `" + ",".join(exports.CSV_HEADER) + "` (meta_data as compact JSON; a cell starting with "
                "`=`, `+`, `-`, `@`, tab or CR is prefixed with `'` against formula injection).",
            ),
        ],
        responses={
            (200, "application/json"): s.SendPageSerializer,
            (200, "text/csv"): OpenApiTypes.STR,
            **_errors(400, 401, 403, 404, 429),
        },
    )
    def get(self, request: Request, broadcast_id: str) -> Response | StreamingHttpResponse:
        params = request.query_params
        status = _status_filter(params.get("status"), SendStatus.values)
        if format_of(request) == "csv":
            return self._csv(request, broadcast_id, status)
        limit = limit_parse(params.get("limit"), default=RECIPIENTS_LIMIT_DEFAULT, maximum=RECIPIENTS_LIMIT_MAX)
        position = cursor_decode(params.get("cursor"), kinds=(index_value,))
        broadcast = selectors.broadcast_get(broadcast_id=broadcast_id, organization=request.user.organization)
        rows, more = selectors.broadcast_sends_list(
            broadcast=broadcast, limit=limit, status=status, after_index=position[0] if position else None
        )
        next_cursor = cursor_encode(rows[-1]["index"]) if more else None
        return Response({"data": [s.send_representation(r) for r in rows], "next_cursor": next_cursor})

    def _csv(self, request: Request, broadcast_id: str, status: str | None) -> StreamingHttpResponse:
        broadcast = selectors.broadcast_get(broadcast_id=broadcast_id, organization=request.user.organization)
        response = StreamingHttpResponse(
            exports.broadcast_csv_stream(broadcast=broadcast, status=status), content_type="text/csv; charset=utf-8"
        )
        suffix = f"-{status.lower()}" if status else ""
        response["Content-Disposition"] = f'attachment; filename="broadcast-{broadcast.id}-sends{suffix}.csv"'
        return response


class _BroadcastActionApi(BulkView):
    service = None

    def post(self, request: Request, broadcast_id: str) -> Response:
        broadcast = type(self).service(broadcast_id=broadcast_id, organization=request.user.organization)
        broadcast = selectors.broadcast_get(broadcast_id=broadcast.id)
        return Response(_broadcast_body(broadcast))


_ACTION_ERRORS = _errors(401, 403, 404, 409, 429)


@extend_schema_view(
    post=extend_schema(
        operation_id="bulk_cancel",
        summary="Cancel: every send still pending becomes CANCELLED",
        request=None,
        responses={200: s.BroadcastSerializer, **_ACTION_ERRORS},
    )
)
class BroadcastCancelApi(_BroadcastActionApi):
    service = staticmethod(services.broadcast_cancel)


@extend_schema_view(
    post=extend_schema(
        operation_id="bulk_pause",
        summary="Pause a PENDING or IN_PROGRESS broadcast",
        request=None,
        responses={200: s.BroadcastSerializer, **_ACTION_ERRORS},
    )
)
class BroadcastPauseApi(_BroadcastActionApi):
    service = staticmethod(services.broadcast_pause)


@extend_schema_view(
    post=extend_schema(
        operation_id="bulk_resume",
        summary="Resume a PAUSED broadcast where it stopped",
        request=None,
        responses={200: s.BroadcastSerializer, **_ACTION_ERRORS},
    )
)
class BroadcastResumeApi(_BroadcastActionApi):
    service = staticmethod(services.broadcast_resume)


@extend_schema_view(
    post=extend_schema(
        operation_id="bulk_retry",
        summary="Retry: FAILED sends with `retryable: true` (of the given codes) are pending again",
        description="Attempts start over. A COMPLETED or FAILED broadcast goes back to IN_PROGRESS (a new "
        "`broadcast.completed` follows when it ends again); a PAUSED one re-queues but stays PAUSED. A number that "
        "failed with 131049 is still not posted before MARKETING_LIMIT_HOLD_SECONDS after that failure, and the "
        "marketing frequency cap is checked again when each is posted. With `not_before` the sends wait until then "
        "(`waiting.retry`). 409 for a "
        "CANCELLED broadcast or one whose sends were purged.",
        request=s.RetryRequestSerializer,
        responses={200: s.RetriedBroadcastSerializer, **_errors(400, 401, 403, 404, 409, 413, 415, 429)},
        examples=[
            OpenApiExample("Only the marketing limit", request_only=True, value={"error_codes": ["131049"]}),
            OpenApiExample(
                "Frequency-capped sends, next week",
                request_only=True,
                value={"error_codes": ["frequency_capped"], "not_before": "2026-12-04T09:00:00+01:00"},
            ),
        ],
    )
)
class BroadcastRetryApi(BulkView):
    def initial(self, request: Request, *args: Any, **kwargs: Any) -> None:
        # As for the create: the size is checked first, and the body read before any answer.
        self.raw_body = body_read(request._request)
        super().initial(request, *args, **kwargs)

    def post(self, request: Request, broadcast_id: str) -> Response:
        body = _json_body(request, self.raw_body) if self.raw_body.strip() else None
        broadcast, retried = services.broadcast_retry(
            broadcast_id=broadcast_id, organization=request.user.organization, body=body
        )
        broadcast = selectors.broadcast_get(broadcast_id=broadcast.id)
        return Response({**_broadcast_body(broadcast), "retried": retried})
