"""Meta's ``user_preferences`` updates (docs/rules.md): a user stopped or resumed marketing messages.

An update names the user by a wa_id, a BSUID or both. It applies to every address of ours that user stands for
in the organization (rules/identities.addresses_of: the BSUID, every number tied to it, the numbers of the wa_id):
"stop" puts each on the suppression list (source ``user_preferences``), "resume" takes each off unless the
customer listed it through the API.

Order: Meta may deliver an older update after a newer one, or the same one twice. The last update applied to each
address is kept (``UserPreference``, by the address's hash, with Meta's timestamp); an update changes only the
addresses whose last one is older, decided by one upsert per update and organization, so two bodies racing still
apply the newer one last. Meta stamps whole seconds: the same second with the other value counts as newer (Meta's
order), the same second with the same value is a replay. An update without a readable timestamp counts as received
now.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from django.db import connection
from django.utils import timezone

from broadcasts.models import SuppressionSource, UserPreference
from broadcasts.rules.identities import Pair, addresses_of, identities_record
from broadcasts.rules.suppressions import number_hash, suppression_add, suppression_remove
from templates_registry.models import Channel
from whatsapp.inbound.users import UserPreferenceUpdate

MARKETING = "marketing_messages"
VALUES = ("stop", "resume")
STOP_REASON = "The user stopped marketing messages."

_NEWER_SQL = f"""
    INSERT INTO {UserPreference._meta.db_table} AS p (organization_id, subject_hash, value, at)
    SELECT %s, h, %s, %s FROM unnest(%s::varchar[]) AS h ORDER BY h
    ON CONFLICT (organization_id, subject_hash) DO UPDATE SET value = EXCLUDED.value, at = EXCLUDED.at
        WHERE p.at < EXCLUDED.at OR (p.at = EXCLUDED.at AND p.value <> EXCLUDED.value)
    RETURNING p.subject_hash
"""


def _organizations_of(*, phone_number_id: str, waba_id: str) -> list[int]:
    """The organization whose channel has this phone number id, else those whose channels use the WABA."""
    if phone_number_id:
        org = Channel.objects.filter(phone_number_id=phone_number_id).values_list("organization_id", flat=True).first()
        if org is not None:
            return [org]
    if waba_id:
        return sorted(set(Channel.objects.filter(waba_id=waba_id).values_list("organization_id", flat=True)))
    return []


def _newer_among(*, organization_id: int, addresses: list[str], value: str, at: datetime) -> list[str]:
    """The addresses whose last applied update is older than ``at`` (or that have none), marked as now having
    ``value`` at ``at``: one statement, under the rows' locks."""
    by_hash = {number_hash(a): a for a in addresses}
    with connection.cursor() as cursor:
        cursor.execute(_NEWER_SQL, [organization_id, value, at, sorted(by_hash)])
        newer = {row[0] for row in cursor.fetchall()}
    return [a for h, a in by_hash.items() if h in newer]


def user_preference_apply(*, organization_id: int, wa_id: str, user_id: str, value: str, at: datetime) -> int:
    """One update for one organization; returns how many list entries changed."""
    if wa_id and user_id:
        # First, so that the numbers this very update ties to the BSUID are among its addresses.
        identities_record(pairs=[Pair(user_id=user_id, wa_id=wa_id, organization_id=organization_id)])
    addresses = addresses_of(organization_id=organization_id, wa_id=wa_id, user_id=user_id)
    if not addresses:
        return 0
    changed = 0
    for address in _newer_among(organization_id=organization_id, addresses=addresses, value=value, at=at):
        if value == "stop":
            changed += suppression_add(
                organization_id=organization_id,
                to=address,
                source=SuppressionSource.USER_PREFERENCES,
                reason=STOP_REASON,
            )[1]
        else:
            changed += suppression_remove(
                organization_id=organization_id, to=address, keep_sources=(SuppressionSource.API,)
            )
    return changed


def user_preferences_apply(*, updates: Iterable[UserPreferenceUpdate]) -> int:
    """Meta's ``user_preferences`` items (``whatsapp.inbound``) applied in order; returns the list changes made.
    Items of another category or value, or of no organization of ours, change nothing."""
    changed = 0
    now = timezone.now()
    for update in updates:
        if update.category != MARKETING or update.value not in VALUES:
            continue
        at = update.timestamp or now
        for org_id in _organizations_of(phone_number_id=update.phone_number_id, waba_id=update.waba_id):
            changed += user_preference_apply(
                organization_id=org_id, wa_id=update.wa_id, user_id=update.user_id, value=update.value, at=at
            )
    return changed
