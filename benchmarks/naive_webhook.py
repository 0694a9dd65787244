"""The straightforward Meta status webhook, kept only as bench_webhooks.py's peer: parse the body, then for each
status one ORM ``get`` of its send and one ``save``, the price looked up from the rate card (once per country and
category), the broadcast's counts recounted once per body, and the customer events written by ``bulk_create``.
Same signature check and the same statuses' effect on the happy path (delivered/read, billed on delivery); mounted
only by benchmarks/ingest_urls.py, never by the service."""

import hashlib
import hmac
from decimal import Decimal

import orjson
from django.conf import settings
from django.db import transaction
from django.db.models import Count
from django.http import HttpRequest, HttpResponse
from django.utils import timezone
from django.views.decorators.csrf import csrf_exempt

from broadcasts.models import Broadcast, RateCard, RateCardPrice, Send
from events.models import Event, EventDelivery, WebhookEndpoint

ORDER = {"sent": 1, "delivered": 2, "read": 3}


def _price(card: RateCard | None, country: str, category: str, cache: dict) -> Decimal | None:
    key = (country, category)
    if key not in cache:
        row = None
        if card is not None:
            row = (
                RateCardPrice.objects.filter(card=card, category=category, country__in=[country, "*"])
                .order_by("-country")
                .first()
            )
        cache[key] = row.price if row else None
    return cache[key]


@csrf_exempt
def naive_meta_webhook(request: HttpRequest) -> HttpResponse:
    body = request.body
    expected = "sha256=" + hmac.new(settings.WHATSAPP_APP_SECRET.encode(), body, hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected, request.headers.get("X-Hub-Signature-256", "")):
        return HttpResponse(status=401)
    payload = orjson.loads(body)
    now = timezone.now()
    card = RateCard.objects.order_by("-loaded_at").first()
    prices: dict = {}
    touched: dict[int, Broadcast] = {}
    events: list[Event] = []
    with transaction.atomic():
        for entry in payload.get("entry", []):
            for change in entry.get("changes", []):
                for status in change.get("value", {}).get("statuses", []):
                    try:
                        send = Send.objects.select_related("broadcast").get(message_id=status["id"])
                    except Send.DoesNotExist:
                        continue
                    new = status["status"]
                    if ORDER.get(new, 0) <= ORDER.get(send.status.lower(), 0):
                        continue
                    send.status = new.upper()
                    setattr(send, f"{new}_at", now)
                    pricing = status.get("pricing")
                    if pricing and pricing.get("billable") and send.billed_at is None:
                        send.pricing = pricing
                        send.price = _price(card, "ES", pricing.get("category", "").upper(), prices)
                        send.billed_at = now
                    send.save()
                    touched[send.broadcast_id] = send.broadcast
                    events.append(
                        Event(
                            organization_id=send.broadcast.organization_id,
                            type=f"message.{new}",
                            data={"broadcast_id": send.broadcast_id, "index": send.index, "status": new.upper()},
                            ordering_key=str(send.id),
                        )
                    )
        for broadcast in touched.values():
            counts = dict(
                Send.objects.filter(broadcast=broadcast).values_list("status").annotate(n=Count("id")).order_by()
            )
            for status_name in ("sent", "delivered", "read"):
                setattr(broadcast, status_name, counts.get(status_name.upper(), 0))
            broadcast.save()
        Event.objects.bulk_create(events)
        endpoints = list(
            WebhookEndpoint.objects.filter(organization_id__in={e.organization_id for e in events}, is_active=True)
        )
        EventDelivery.objects.bulk_create(
            EventDelivery(event=event, endpoint=endpoint, ordering_key=event.ordering_key)
            for event in events
            for endpoint in endpoints
            if endpoint.organization_id == event.organization_id
        )
    return HttpResponse(status=200)
