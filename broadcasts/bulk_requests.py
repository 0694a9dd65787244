"""A bulk request checked against what the organization has (its channel, an APPROVED template of it, the rate
card for ``max_cost``) and priced: the part of ``POST /v1/messages/bulk`` that both the real request
(services.broadcast_create) and the dry run (previews) run, so the two can never disagree."""

import logging
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.db.models import Q

from broadcasts import pricing
from broadcasts.models import RateCard
from broadcasts.rules import customer_windows, frequency_cap, marketing_regions, suppressions
from broadcasts.validation.errors import Errors
from broadcasts.validation.recipients import RecipientInput
from broadcasts.validation.request import BulkRequest, bulk_request_validate
from broadcasts.validation.template_checks import template_components_check, template_recipients_check
from core.errors import ApplicationError
from templates_registry.models import Channel, Template
from tokens.models import Organization
from whatsapp.payload import TemplateMessageBuilder

logger = logging.getLogger(__name__)

# The rules' reads an estimate needs, as callables (the dry run's tests pass fakes).
SuppressedAmong = Callable[..., set[str]]
WindowsOpen = Callable[..., set[str]]


def channel_resolve(*, organization: Organization, channel_id: str) -> Channel | None:
    """A channel of the organization by its 24-hex id or by Meta's ``phone_number_id``."""
    channels = list(
        Channel.objects.filter(organization=organization).filter(Q(id=channel_id) | Q(phone_number_id=channel_id))[:2]
    )
    # Prefer the id meaning if, absurdly, one channel's id is another's phone_number_id.
    return next((c for c in channels if c.id == channel_id), channels[0] if channels else None)


def _lookup_errors(
    *, organization: Organization, request: BulkRequest, errors: Errors
) -> tuple[str | None, Channel | None, Template | None]:
    """Resolves channel and template, adding their errors; returns (specific code, channel, template)."""
    if not request.channel_id:
        return None, None, None
    channel = channel_resolve(organization=organization, channel_id=request.channel_id)
    if channel is None:
        errors.setdefault("channel_id", []).append("No channel with this id or phone_number_id.")
        return "channel_not_found", None, None
    if not request.template_name or not request.language:
        return None, channel, None
    template = Template.objects.filter(
        waba_id=channel.waba_id, name=request.template_name, language=request.language
    ).first()
    if template is None:
        errors.setdefault("template_name", []).append(
            f"No template '{request.template_name}' in language '{request.language}' "
            "for this channel's WhatsApp Business account."
        )
        return "template_not_found", channel, None
    if template.status != Template.Status.APPROVED:
        errors.setdefault("template_name", []).append(
            f"Template '{template.name}' [{template.language}] is {template.status}, not APPROVED."
        )
        return "template_not_approved", channel, None
    return None, channel, template


def template_needed_variables(template: Template) -> list[str]:
    """The variables a recipient must supply: a media header has no text ones, and an authentication template's
    body {{1}} is its one-time code (recipients[i].buttons), as the delivery engine's builder sends them."""
    if template.components and (template.header_format or template.buttons):
        return list(TemplateMessageBuilder(template).variables)
    return template.variables


def _raise_invalid(errors: Errors, code: str | None) -> None:
    only_lookup = code is not None and set(errors) <= {"channel_id", "template_name"}
    raise ApplicationError(
        errors.get("channel_id", errors.get("template_name", ["Invalid request."]))[0]
        if only_lookup
        else "The request is invalid; see details.",
        code=code if only_lookup else "validation_error",
        details=errors,
    )


@dataclass(frozen=True, slots=True)
class CheckedRequest:
    """A bulk request that passed every rule: what creating it (or previewing it) needs."""

    request: BulkRequest
    channel: Channel
    template: Template
    card: RateCard | None  # the rate card in force (docs/rules.md), None when none was loaded


def _max_cost_errors(*, request: BulkRequest, template: Template, card: RateCard | None, errors: Errors) -> None:
    """A cap needs a price for every recipient: refused without a card, or when the card prices some recipient's
    country neither by name nor by ``*`` (such a send would pass any cap unseen)."""
    if request.max_cost is None:
        return
    if card is None:
        errors.setdefault("max_cost", []).append("No rate card is loaded: a spending cap cannot be enforced.")
        return
    # Priced per country, from the regions the phone check found (no second parse of each number).
    prices = pricing.card_prices(card.id)
    category = template.category
    priced = {
        region: pricing.unit_price(prices, country=region, category=category) is not None
        for region in {r.region for r in request.recipients}
    }
    unpriced = [i for i, r in enumerate(request.recipients) if not priced[r.region]]
    if unpriced:
        errors.setdefault("max_cost", []).append(
            f"The rate card has no {template.category} price for {len(unpriced)} recipient(s) "
            f"(first: recipients[{unpriced[0]}]); a spending cap cannot be enforced."
        )


def bulk_request_check(*, organization: Organization, body: Any, now: datetime) -> CheckedRequest:
    """Every rule of a bulk request (shape, channel, template, max_cost), all errors at once: ApplicationError
    (400) when any fails. Reads only; the same for a real request and a dry run."""
    request, errors = bulk_request_validate(body=body, now=now)
    if request is None:
        raise ApplicationError("The request is invalid; see details.", details=errors)
    code, channel, template = _lookup_errors(organization=organization, request=request, errors=errors)
    if template is not None and isinstance(body, dict):
        template_recipients_check(errors, recipients=body.get("recipients"), category=template.category)
    if not errors and template is not None:
        template_components_check(
            errors, request=request, header_format=template.header_format, buttons=template.buttons
        )
    card = pricing.rate_card_current()
    if template is not None:
        _max_cost_errors(request=request, template=template, card=card, errors=errors)
    if errors or channel is None or template is None:
        _raise_invalid(errors, code)
    return CheckedRequest(request=request, channel=channel, template=template, card=card)


def consent_suppressed(
    *, organization_id: int, category: str, numbers: Collection[str], suppressed_among: SuppressedAmong | None = None
) -> set[str]:
    """The numbers consent keeps a broadcast from sending to (docs/rules.md): MARKETING only; for any other category
    none, and nothing is asked. ``suppressed_among`` defaults to the organization's list, probed first (most
    organizations have no suppression at all: one probe of the index spares the 5,000-number lookup)."""
    if category != Template.Category.MARKETING or not numbers:
        return set()
    if suppressed_among is None:
        if not suppressions.organization_has_suppressions(organization_id):
            return set()
        suppressed_among = suppressions.suppressed_among
    return suppressed_among(organization_id=organization_id, numbers=set(numbers))


def frequency_capped_positions(
    *, organization_id: int, category: str, numbers: Sequence[str], suppressed: Collection[str], now: datetime
) -> set[int]:
    """The positions in ``numbers`` (request order) the marketing frequency cap would stop if posted now
    (docs/rules.md): as the gates run, only among those neither suppressed nor of a blocked region. No query for a
    non-MARKETING template; one for an organization without a cap."""
    if category != frequency_cap.CAPPED_CATEGORY or not numbers:
        return set()
    blocked = marketing_regions.blocked_among(category=category, addresses=numbers)
    candidates = [i for i, n in enumerate(numbers) if n not in suppressed and n not in blocked]
    capped = frequency_cap.preview_capped(
        organization_id=organization_id, category=category, addresses=[numbers[i] for i in candidates], now=now
    )
    return {candidates[j] for j in capped}


def broadcast_estimate(
    *,
    card: RateCard | None,
    organization_id: int,
    channel_id: str,
    category: str,
    recipients: Sequence[RecipientInput],
    now: datetime,
    suppressed: set[str] | None = None,
    capped: set[int] | None = None,
    customer_windows_open: WindowsOpen = customer_windows.customer_windows_open,
) -> pricing.Estimate | None:
    """``cost.estimated`` of a broadcast (docs/rules.md), the one computation behind the stored broadcast and the dry
    run: ``recipients`` are those that would be posted (missing variables left out), priced at ``card`` (None: no
    estimate). Suppressed numbers cost nothing for MARKETING (``suppressed`` when the caller has them, else
    ``consent_suppressed``), and so do recipients of MARKETING_BLOCKED_REGIONS; recipients with an open
    customer-service window cost the in-window price. Recipients the marketing frequency cap would stop
    (``capped``: positions in ``recipients``, else ``frequency_capped_positions``) cost nothing and are counted
    apart (``frequency_capped``)."""
    if card is None:
        return None
    numbers = [r.to for r in recipients]
    if suppressed is None:
        suppressed = consent_suppressed(organization_id=organization_id, category=category, numbers=numbers)
    if capped is None:
        capped = frequency_capped_positions(
            organization_id=organization_id, category=category, numbers=numbers, suppressed=suppressed, now=now
        )
    if capped:
        recipients = [r for i, r in enumerate(recipients) if i not in capped]
        numbers = [r.to for r in recipients]
    windows_open = customer_windows_open(channel_id=channel_id, numbers=set(numbers), now=now) if numbers else set()
    estimate = pricing.estimate(
        card=card,
        category=category,
        numbers=numbers,
        regions=[r.region for r in recipients],
        suppressed=suppressed,
        windows_open=windows_open,
        blocked_regions=marketing_regions.blocked_regions() if category == Template.Category.MARKETING else frozenset(),
    )
    estimate.frequency_capped = len(capped)
    return estimate
