"""Bearer token authentication and scope permission (docs/api.md), on tiny views of this module."""

from datetime import timedelta

import pytest
from django.urls import path
from django.utils import timezone
from rest_framework.response import Response
from rest_framework.test import APIClient
from rest_framework.views import APIView

from tokens.models import AccessToken
from tokens.services import token_revoke


class BulkOnlyView(APIView):
    required_scope = "messages:bulk"

    def get(self, request):
        return Response({"organization": request.user.organization.name, "token": request.auth.prefix})


class AnyTokenView(APIView):
    def get(self, request):
        return Response({"organization": request.user.organization.name})


class TwoScopesView(APIView):
    required_scope = ("messages:bulk", "webhooks:manage")

    def get(self, request):
        return Response({"ok": True})


urlpatterns = [
    path("v1/t/bulk", BulkOnlyView.as_view()),
    path("v1/t/any", AnyTokenView.as_view()),
    path("v1/t/two", TwoScopesView.as_view()),
]

pytestmark = [pytest.mark.urls(__name__), pytest.mark.django_db]


def _get(url: str, authorization: str | None = None):
    client = APIClient()
    if authorization is not None:
        client.credentials(HTTP_AUTHORIZATION=authorization)
    return client.get(url)


def _assert_401(response):
    assert response.status_code == 401
    assert response["WWW-Authenticate"] == "Bearer"
    body = response.json()
    assert body["error"]["code"] == "unauthorized"
    assert set(body["error"]) == {"code", "message", "details", "request_id"}


def test_valid_token_with_the_scope_is_let_in_as_its_organization(make_token, org):
    # given a token of Acme holding messages:bulk
    raw = make_token(scopes=["messages:bulk"])
    # when it calls a bulk endpoint
    response = _get("/v1/t/bulk", f"Bearer {raw}")
    # then it is in, as Acme
    assert response.status_code == 200
    assert response.json() == {"organization": "Acme", "token": raw[:16]}


def test_missing_header_is_401_with_bearer_challenge():
    _assert_401(_get("/v1/t/bulk"))


@pytest.mark.parametrize(
    "authorization",
    [
        "",
        "Bearer",
        "Bearer ",
        "Basic dXNlcjpwYXNz",
        "Token kbai_pk_" + "a" * 43,
        "Bearer kbai_pk_short",
        "Bearer not_a_kbai_token_" + "a" * 40,
        "Bearer kbai_pk_" + "a" * 43 + " extra",
        "Bearer kbai_pk_" + "é" * 43,
    ],
)
def test_malformed_header_is_401(authorization):
    _assert_401(_get("/v1/t/bulk", authorization))


def test_unknown_well_formed_token_is_401(token):
    _assert_401(_get("/v1/t/bulk", "Bearer kbai_pk_" + "Z" * 43))


def test_lowercase_scheme_is_accepted(token):
    assert _get("/v1/t/bulk", f"bearer {token}").status_code == 200


def test_revoked_token_is_401_at_once(make_token):
    raw = make_token()
    assert _get("/v1/t/bulk", f"Bearer {raw}").status_code == 200
    token_revoke(token_or_prefix=raw[:16])
    _assert_401(_get("/v1/t/bulk", f"Bearer {raw}"))


def test_expired_token_is_401(make_token):
    raw = make_token(expires_at=timezone.now() - timedelta(seconds=1))
    _assert_401(_get("/v1/t/bulk", f"Bearer {raw}"))


def test_token_expiring_later_is_accepted(make_token):
    raw = make_token(expires_at=timezone.now() + timedelta(hours=1))
    assert _get("/v1/t/bulk", f"Bearer {raw}").status_code == 200


def test_token_without_the_scope_is_403_insufficient_scope(make_token):
    # given a token that may only read templates
    raw = make_token(scopes=["templates:read"])
    # when it calls a bulk endpoint
    response = _get("/v1/t/bulk", f"Bearer {raw}")
    # then 403 insufficient_scope, naming the scope
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "insufficient_scope"
    assert "messages:bulk" in response.json()["error"]["message"]
    assert "WWW-Authenticate" not in response


def test_view_without_required_scope_needs_only_a_live_token(make_token):
    raw = make_token(scopes=["templates:read"])
    assert _get("/v1/t/any", f"Bearer {raw}").status_code == 200
    _assert_401(_get("/v1/t/any"))


def test_view_needing_two_scopes_needs_both(make_token):
    assert _get("/v1/t/two", f"Bearer {make_token(scopes=['messages:bulk'])}").status_code == 403
    both = make_token(scopes=["messages:bulk", "webhooks:manage"])
    assert _get("/v1/t/two", f"Bearer {both}").status_code == 200


def test_each_token_acts_for_its_own_organization(make_token, other_org):
    acme = make_token()
    globex = make_token(organization=other_org)
    assert _get("/v1/t/any", f"Bearer {acme}").json() == {"organization": "Acme"}
    assert _get("/v1/t/any", f"Bearer {globex}").json() == {"organization": "Globex"}


def test_last_used_at_is_written_once_a_minute_not_per_request(make_token, django_assert_num_queries):
    # given a fresh token never used
    raw = make_token()
    row = AccessToken.objects.get(prefix=raw[:16])
    assert row.last_used_at is None
    # when it is used, last_used_at is set
    assert _get("/v1/t/any", f"Bearer {raw}").status_code == 200
    row.refresh_from_db()
    first = row.last_used_at
    assert first is not None and timezone.now() - first < timedelta(seconds=5)
    # then further requests within the minute cost one SELECT and no write
    with django_assert_num_queries(1):
        assert _get("/v1/t/any", f"Bearer {raw}").status_code == 200
    row.refresh_from_db()
    assert row.last_used_at == first
    # and once the last use is over a minute old, the next request refreshes it
    AccessToken.objects.filter(pk=row.pk).update(last_used_at=first - timedelta(seconds=61))
    assert _get("/v1/t/any", f"Bearer {raw}").status_code == 200
    row.refresh_from_db()
    assert row.last_used_at > first
