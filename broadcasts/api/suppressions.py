"""``/v1/suppressions`` and ``/v1/contacts/{to}`` (docs/rules.md): the organization's suppression list and the
erasure of a contact (scope ``messages:bulk``). Parse, call ``broadcasts.rules.suppressions``, shape the answer."""

from typing import Any

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response

from broadcasts.api.pagination import cursor_decode, cursor_encode, limit_parse, timestamp_value
from broadcasts.models import Suppression, SuppressionSource
from broadcasts.phones import phone_to_e164
from broadcasts.rules import suppressions
from broadcasts.validation.recipients import INVALID_PHONE
from core.api.base import ApiView
from core.api.serializers import ErrorEnvelopeSerializer
from core.errors import ApplicationError, NotFoundError
from core.timefmt import iso_utc
from tokens.scopes import MESSAGES_BULK
from whatsapp.numbers import is_bsuid

LIMIT_DEFAULT, LIMIT_MAX = 50, 100
MAX_REASON_LENGTH = 255
MAX_ROW_ID = 2**63 - 1
INVALID_BSUID = "Must be a business-scoped user id: a country code, a dot and 1-128 letters or digits."


def suppression_output(row: Suppression) -> dict[str, Any]:
    bsuid = is_bsuid(row.to)
    return {
        # null once the contact was erased (only its hash is kept), and for a BSUID entry
        "to": None if bsuid else (row.to or None),
        "user_id": row.to if bsuid else None,
        "reason": row.reason or None,
        "source": row.source,
        "created_at": iso_utc(row.created_at),
    }


def _row_id(value: Any) -> int:
    if type(value) is not int or not 0 < value <= MAX_ROW_ID:
        raise ValueError
    return value


def _path_address(to: str) -> str:
    """A path's number ("+" given as is or as %2B) or BSUID: anything else is a 404, as no entry can have it."""
    if is_bsuid(to):
        return to
    e164 = phone_to_e164(to)
    if e164 is None:
        raise NotFoundError("No such number or user_id on the suppression list.")
    return e164


class SuppressionInSerializer(serializers.Serializer):
    to = serializers.CharField(required=False, help_text="E.164 number, e.g. +34612345678 (or give `user_id`).")
    user_id = serializers.CharField(
        required=False, help_text="A business-scoped user id (BSUID), e.g. US.13491208655302741918 (or give `to`)."
    )
    reason = serializers.CharField(required=False, max_length=MAX_REASON_LENGTH, allow_null=True)


class SuppressionSerializer(serializers.Serializer):
    to = serializers.CharField(allow_null=True, help_text="E.164; null for a BSUID entry or once erased.")
    user_id = serializers.CharField(allow_null=True, help_text="The BSUID of a BSUID entry, else null.")
    reason = serializers.CharField(allow_null=True)
    source = serializers.ChoiceField(choices=SuppressionSource.values)
    created_at = serializers.DateTimeField()


class SuppressionPageSerializer(serializers.Serializer):
    data = SuppressionSerializer(many=True)
    next_cursor = serializers.CharField(allow_null=True)


def _errors(*codes: int) -> dict[int, OpenApiResponse]:
    return {code: OpenApiResponse(ErrorEnvelopeSerializer) for code in codes}


def _create_input(data: Any) -> tuple[str, str]:
    """(E.164 number or BSUID, reason) from the body: exactly one of ``to`` and ``user_id``; every error at once."""
    if not isinstance(data, dict):
        raise ApplicationError("The body must be a JSON object.", details={"body": ["Must be a JSON object."]})
    errors: dict[str, list[str]] = {}
    to, user_id, reason = data.get("to"), data.get("user_id"), data.get("reason")
    address = phone_to_e164(to) if isinstance(to, str) else None
    if to is None and user_id is None:
        errors["to"] = ["Give `to` (an E.164 number) or `user_id` (a BSUID)."]
    elif to is not None and user_id is not None:
        errors["user_id"] = ["Give `to` or `user_id`, not both."]
    elif user_id is not None:
        if not isinstance(user_id, str):
            errors["user_id"] = ["Must be a string."]
        elif not is_bsuid(user_id):
            errors["user_id"] = [INVALID_BSUID]
        else:
            address = user_id
    elif not isinstance(to, str):
        errors["to"] = ["Must be a string."]
    elif address is None:
        errors["to"] = [INVALID_PHONE]
    if reason is not None:
        if not isinstance(reason, str):
            errors["reason"] = ["Must be a string."]
        elif len(reason) > MAX_REASON_LENGTH:
            errors["reason"] = [f"At most {MAX_REASON_LENGTH} characters."]
        elif "\x00" in reason:
            errors["reason"] = ["Must not contain NUL characters."]
    if errors:
        raise ApplicationError("The request is invalid; see details.", details=errors)
    assert address is not None
    return address, reason or ""


class SuppressionCollectionApi(ApiView):
    required_scope = MESSAGES_BULK

    @extend_schema(
        operation_id="suppressions_list",
        summary="The organization's suppression list, newest first",
        parameters=[
            OpenApiParameter("limit", OpenApiTypes.INT, description=f"1-{LIMIT_MAX}, default {LIMIT_DEFAULT}."),
            OpenApiParameter("cursor", OpenApiTypes.STR, description="`next_cursor` of the previous page."),
        ],
        responses={200: SuppressionPageSerializer, **_errors(400, 401, 403, 429)},
    )
    def get(self, request: Request) -> Response:
        limit = limit_parse(request.query_params.get("limit"), default=LIMIT_DEFAULT, maximum=LIMIT_MAX)
        position = cursor_decode(request.query_params.get("cursor"), kinds=(timestamp_value, _row_id))
        rows, more = suppressions.suppression_list(
            organization_id=request.user.organization.id,
            limit=limit,
            after=(position[0], position[1]) if position else None,
        )
        next_cursor = cursor_encode(rows[-1].created_at.isoformat(), rows[-1].id) if more else None
        return Response({"data": [suppression_output(r) for r in rows], "next_cursor": next_cursor})

    @extend_schema(
        operation_id="suppressions_create",
        summary="Put a number or a BSUID on the suppression list (201; 200 when it is listed already)",
        description="No MARKETING template is sent to a listed number: such sends end FAILED `opted_out`. "
        "An entry added here (source `api`) is kept when the user resumes marketing messages on WhatsApp.",
        request=SuppressionInSerializer,
        responses={201: SuppressionSerializer, 200: SuppressionSerializer, **_errors(400, 401, 403, 415, 429)},
    )
    def post(self, request: Request) -> Response:
        to, reason = _create_input(request.data)
        row, added = suppressions.suppression_add(
            organization_id=request.user.organization.id, to=to, source=SuppressionSource.API, reason=reason
        )
        return Response(suppression_output(row), status=201 if added else 200)


class SuppressionDetailApi(ApiView):
    required_scope = MESSAGES_BULK

    @extend_schema(
        operation_id="suppressions_delete",
        summary="Take a number or a BSUID off the suppression list",
        parameters=[
            OpenApiParameter(
                "to", OpenApiTypes.STR, OpenApiParameter.PATH, description="E.164 (`+` or %2B) or a BSUID."
            )
        ],
        responses={204: None, **_errors(401, 403, 404, 429)},
    )
    def delete(self, request: Request, to: str) -> Response:
        address = _path_address(to)
        if not suppressions.suppression_remove(organization_id=request.user.organization.id, to=address):
            raise NotFoundError("No such number or user_id on the suppression list.")
        return Response(status=204)


class ContactDetailApi(ApiView):
    required_scope = MESSAGES_BULK

    @extend_schema(
        operation_id="contacts_erase",
        summary="Erase a number's personal data in the organization",
        description="Its sends keep their status, index and counts; their number, variables and meta_data are "
        "blanked (a PENDING send not yet being posted is CANCELLED). A suppression entry keeps only a hash of the "
        "number, so the number stays suppressed. Meta's forms of the number (its wa_ids, the BSUIDs Meta tied to "
        "it) and its marketing holds are erased too. 204 also when nothing matched.",
        parameters=[OpenApiParameter("to", OpenApiTypes.STR, OpenApiParameter.PATH, description="E.164; `+` or %2B.")],
        responses={204: None, **_errors(401, 403, 404, 429)},
    )
    def delete(self, request: Request, to: str) -> Response:
        number = phone_to_e164(to)
        if number is None:
            raise NotFoundError("Not a number: nothing to erase.")
        suppressions.contact_erase(organization_id=request.user.organization.id, to=number)
        return Response(status=204)
