from django.db import models
from django.db.models import Q
from django.utils import timezone

from core.ids import object_id
from templates_registry.models import Channel, Template
from tokens.models import AccessToken, Organization


class BroadcastStatus(models.TextChoices):
    PENDING = "PENDING"
    IN_PROGRESS = "IN_PROGRESS"
    PAUSED = "PAUSED"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"


FINAL_BROADCAST_STATUSES = (BroadcastStatus.COMPLETED, BroadcastStatus.FAILED, BroadcastStatus.CANCELLED)


class SendStatus(models.TextChoices):
    PENDING = "PENDING"
    SENT = "SENT"
    DELIVERED = "DELIVERED"
    READ = "READ"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"


# Broadcast's kept counts (broadcasts/counts.py moves them).
KEPT_COUNT_FIELDS = ("pending", "sent", "delivered", "read", "failed", "cancelled")
# Broadcast's kept money sums (docs/rules.md), moved only by relative UPDATEs like the counts (broadcasts/pricing.py).
KEPT_COST_FIELDS = ("billed", "posted_cost")


class WaitReason(models.TextChoices):
    """Why a PENDING send waits (``Send.wait_reason``; blank: nothing particular). The broadcast's ``waiting`` shows
    MARKETING_HOLD under ``retry``: such a send waits for a time (the end of Meta's per-user marketing limit), as a
    retry does."""

    THROUGHPUT = "throughput"
    MESSAGING_LIMIT = "messaging_limit"
    RETRY = "retry"
    MARKETING_HOLD = "marketing_hold"
    SEND_WINDOW = "send_window"


class RateCard(models.Model):
    """Meta's per-message prices as loaded by ``load_rate_card``: one currency per card. The newest card is in
    force; older ones are kept, never edited (sends' stored prices and broadcasts' estimates refer to them)."""

    loaded_at = models.DateTimeField(default=timezone.now)
    currency = models.CharField(max_length=3)  # ISO 4217

    class Meta:
        indexes = [models.Index(fields=["-loaded_at", "-id"], name="ratecard_newest")]

    def __str__(self) -> str:
        return f"rate card {self.id} ({self.currency}, {self.loaded_at:%Y-%m-%d %H:%M:%S %Z})"


class RateCardPrice(models.Model):
    """The price of one delivered message to ``country`` (ISO 3166 alpha-2, or ``*`` for every other country) in
    one template category."""

    card = models.ForeignKey(RateCard, on_delete=models.PROTECT, related_name="prices")
    country = models.CharField(max_length=2)
    category = models.CharField(max_length=16)
    price = models.DecimalField(max_digits=12, decimal_places=6)
    # What Meta charges inside the customer-service window (null: 0 for UTILITY, ``price`` otherwise).
    in_window_price = models.DecimalField(max_digits=12, decimal_places=6, null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["card", "country", "category"], name="ratecardprice_unique"),
        ]

    def __str__(self) -> str:
        return f"{self.country} {self.category} {self.price}"


class Broadcast(models.Model):
    """One bulk request: a template sent to up to 5000 recipients from one channel."""

    id = models.CharField(primary_key=True, max_length=24, default=object_id, editable=False)
    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="broadcasts")
    channel = models.ForeignKey(Channel, on_delete=models.PROTECT, related_name="broadcasts")
    template = models.ForeignKey(Template, on_delete=models.PROTECT, related_name="broadcasts")
    created_by_token = models.ForeignKey(AccessToken, null=True, blank=True, on_delete=models.SET_NULL)
    # Denormalized from the template so the API can answer without a join and history survives renames.
    template_name = models.CharField(max_length=512)
    language = models.CharField(max_length=20)
    campaign_name = models.CharField(max_length=255)
    status = models.CharField(max_length=16, choices=BroadcastStatus.choices, default=BroadcastStatus.PENDING)
    # {"code": ..., "message": ...} of the account-level error (or manual pause) that paused it.
    paused_reason = models.JSONField(null=True, blank=True)
    # {"type": "image"|"video"|"document", "link" or "id", "filename"?} for a template whose header is media
    # (docs/api.md); a send's own header_media overrides it.
    header_media = models.JSONField(null=True, blank=True)
    total_recipients = models.PositiveIntegerField()
    scheduled_at = models.DateTimeField(null=True, blank=True)
    # The request's send window as given ({start, end, days?, timezone?}), null when none: sends leave only while
    # the recipient's local time is inside it (rules/send_windows.py).
    send_window = models.JSONField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    started_at = models.DateTimeField(null=True, blank=True)
    completed_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)
    # Sends per status, kept with the sends (broadcasts/counts.py): every statement that changes a send's status
    # moves these in the same transaction, by relative increments. They add up to total_recipients and survive
    # the purge of the sends (broadcasts/retention.py).
    pending = models.IntegerField(default=0)
    sent = models.IntegerField(default=0)
    delivered = models.IntegerField(default=0)
    read = models.IntegerField(default=0)
    failed = models.IntegerField(default=0)
    cancelled = models.IntegerField(default=0)
    # When retention deleted the sends (docs/operations.md); the counts above stay.
    purged_at = models.DateTimeField(null=True, blank=True)
    # Cost (docs/rules.md). The card in force at creation prices ``cost_estimated`` (null without a card) and the
    # budget gate's reservations; ``billed`` sums the sends' stored prices (once per send); ``posted_cost`` the
    # estimated prices the budget gate reserved for the sends it let through (only with ``max_cost``).
    rate_card = models.ForeignKey(RateCard, null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    cost_currency = models.CharField(max_length=3, blank=True)
    cost_estimated = models.DecimalField(max_digits=16, decimal_places=6, null=True, blank=True)
    billed = models.DecimalField(max_digits=16, decimal_places=6, default=0)
    max_cost = models.DecimalField(max_digits=16, decimal_places=6, null=True, blank=True)
    posted_cost = models.DecimalField(max_digits=16, decimal_places=6, default=0)

    class Meta:
        indexes = [
            # GET /v1/messages/bulk: the organization's broadcasts, newest first, by cursor.
            models.Index(fields=["organization", "-created_at", "-id"], name="broadcast_org_created"),
            # Beat: due scheduled broadcasts, and broadcasts that should be moving.
            models.Index(fields=["status", "scheduled_at"], name="broadcast_status_sched"),
            # The sweeper: broadcasts that still have pending sends (a few, whatever the history).
            models.Index(fields=["status"], name="broadcast_with_pending", condition=Q(pending__gt=0)),
            # Retention: ended broadcasts whose sends are still stored, oldest first.
            models.Index(
                fields=["completed_at"],
                name="broadcast_purge_due",
                condition=Q(purged_at__isnull=True, completed_at__isnull=False),
            ),
            # The messaging limit's rebuild (broadcasts/rules/messaging_limit.py): the organization's broadcasts that
            # were running within the last window (started, and not ended before it).
            models.Index(
                fields=["organization", "completed_at"],
                name="broadcast_org_completed",
                condition=Q(started_at__isnull=False),
            ),
            # The admin overview: an organization's running, paused and scheduled broadcasts (a few, whatever the
            # history).
            models.Index(
                fields=["organization", "status", "-created_at"],
                name="broadcast_org_active",
                condition=Q(status__in=["PENDING", "IN_PROGRESS", "PAUSED"]),
            ),
        ]

    def __str__(self) -> str:
        return f"{self.campaign_name} ({self.id})"

    def save(self, *args, **kwargs) -> None:
        """Saving a loaded broadcast never writes its kept counts back: they move only by relative UPDATEs
        (broadcasts/counts.py), and an instance read a moment ago would undo the moves made meanwhile."""
        if not self._state.adding and kwargs.get("update_fields") is None:
            kwargs["update_fields"] = [
                f.name
                for f in self._meta.concrete_fields
                if not f.primary_key and f.name not in KEPT_COUNT_FIELDS and f.name not in KEPT_COST_FIELDS
            ]
        super().save(*args, **kwargs)


class Send(models.Model):
    """One recipient of a broadcast: one message to one number, and what became of it."""

    # No index of its own (nor Django's varchar_pattern_ops twin): send_unique_index_in_broadcast, led by the
    # broadcast, serves every lookup by broadcast; the two redundant btrees cost ~13 ms of PostgreSQL CPU per
    # 5,000-send COPY and two index entries per status move of a send (issue 14).
    broadcast = models.ForeignKey(Broadcast, on_delete=models.CASCADE, related_name="sends", db_index=False)
    index = models.PositiveIntegerField()  # position in the request's recipients array
    # The recipient's address: E.164, or the BSUID of a recipient given by ``user_id`` (whatsapp.numbers.is_bsuid).
    to = models.CharField(max_length=140)
    variables = models.JSONField(default=dict)
    meta_data = models.JSONField(null=True, blank=True)
    status = models.CharField(max_length=16, choices=SendStatus.choices, default=SendStatus.PENDING)
    # POSTs made to Meta for this send, the first included (at most 6).
    attempts = models.PositiveSmallIntegerField(default=0)
    # When a PENDING send may be tried (again); null = as soon as its broadcast runs.
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    # A worker holds the send until this instant; past it, the sweeper may take it back.
    lease_expires_at = models.DateTimeField(null=True, blank=True)
    # Set just before the POST may leave, cleared with its recorded outcome: a lease that expires while it is
    # set means the request may have reached Meta (an unknown outcome); unset means it never left.
    posting_at = models.DateTimeField(null=True, blank=True)
    # Attempts cut off after the request may have left (worker killed, timeout): the only
    # way a number can get a second message. Counted, never hidden.
    unknown_outcomes = models.PositiveSmallIntegerField(default=0)
    message_id = models.CharField(max_length=128, null=True, blank=True)  # wamid
    # From Meta's 200 (docs/rules.md): the number as WhatsApp knows it (`contacts[0].wa_id`, differs from E.164 in
    # Mexico, Argentina, Brazil) and `messages[0].message_status` (accepted, held_for_quality_assessment, paused).
    wa_id = models.CharField(max_length=32, null=True, blank=True)
    meta_status = models.CharField(max_length=40, null=True, blank=True)
    # The user's business-scoped user id (BSUID): the request's, else the one Meta named for this message
    # (`contacts[0].user_id` in its answer, `recipient_user_id` in a status).
    user_id = models.CharField(max_length=140, null=True, blank=True)
    # The recipient's IANA time zone for the broadcast's send window, resolved once at ingest (blank: no window).
    time_zone = models.CharField(max_length=64, blank=True, default="", db_default="")
    error_code = models.CharField(max_length=64, blank=True)
    error_title = models.CharField(max_length=255, blank=True)
    error_message = models.TextField(blank=True)
    error_retryable = models.BooleanField(null=True, blank=True)
    sent_at = models.DateTimeField(null=True, blank=True)
    delivered_at = models.DateTimeField(null=True, blank=True)
    read_at = models.DateTimeField(null=True, blank=True)
    failed_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(default=timezone.now)
    # Why a PENDING send waits (a WaitReason; blank: nothing particular), written with
    # each outcome (delivery/outcomes.py) and cleared when the send moves on; the broadcast's `waiting` counts it.
    wait_reason = models.CharField(max_length=16, blank=True, default="", db_default="")
    # Meta's latest ``pricing`` object of this message's status webhooks ({category, type, billable, ...}).
    pricing = models.JSONField(null=True, blank=True)
    # Billed once (docs/rules.md): the price of the card in force when a billable status found it DELIVERED or READ
    # (null when that card has no price for it), and when.
    price = models.DecimalField(max_digits=12, decimal_places=6, null=True, blank=True)
    billed_at = models.DateTimeField(null=True, blank=True)
    # The estimated price the budget gate reserved for this send (max_cost only); set once, so a send admitted
    # again later reserves nothing more.
    price_reserved = models.DecimalField(max_digits=12, decimal_places=6, null=True, blank=True)
    # This recipient's header media (null: the broadcast's) and button parameters by index ({"0": "suffix"}),
    # written only when the request gave them (docs/api.md).
    header_media = models.JSONField(null=True, blank=True)
    buttons = models.JSONField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["broadcast", "index"], name="send_unique_index_in_broadcast"),
        ]
        indexes = [
            # Counts per status and the recipients listing filtered by status, in request order.
            models.Index(fields=["broadcast", "status", "index"], name="send_broadcast_status_idx"),
            # Meta's status webhooks find sends by wamid.
            models.Index(fields=["message_id"], name="send_message_id", condition=Q(message_id__isnull=False)),
            # The admin finds a number's sends across broadcasts.
            models.Index(fields=["to"], name="send_to"),
            # Numbers Meta sends back are matched through the stored wa_id first (selectors.sends_by_meta_number).
            models.Index(fields=["wa_id"], name="send_wa_id", condition=Q(wa_id__isnull=False)),
            # The numbers Meta tied to a BSUID (rules/identities.numbers_of_user: a username-only webhook).
            models.Index(fields=["user_id"], name="send_user_id", condition=Q(user_id__isnull=False)),
            # Claims, dispatch and finalize: one broadcast's pending sends in id order. Led by the broadcast, so no
            # plan can scan every pending send of the table (the former send_pending_due on next_attempt_at alone
            # looked tiny to the planner after a bulk load and made a claim read all 500,000 pending sends).
            models.Index(fields=["broadcast", "id"], name="send_pending", condition=Q(status="PENDING")),
            # The sweeper: expired leases, among the leased pending sends only (O(leased), not O(pending)).
            models.Index(
                fields=["lease_expires_at"],
                name="send_leased",
                condition=Q(status="PENDING", lease_expires_at__isnull=False),
            ),
        ]

    def __str__(self) -> str:
        return f"{self.broadcast_id}#{self.index} {self.to} {self.status}"


class IdempotencyRecord(models.Model):
    """An ``Idempotency-Key`` seen from an organization, kept 24 h, with the answer it got."""

    organization = models.ForeignKey(Organization, on_delete=models.CASCADE)
    key = models.CharField(max_length=255)
    request_hash = models.CharField(max_length=64)
    response_body = models.JSONField()
    broadcast = models.ForeignKey(Broadcast, null=True, on_delete=models.CASCADE)
    created_at = models.DateTimeField(default=timezone.now, db_index=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["organization", "key"], name="idempotency_unique_key_per_org"),
        ]

    def __str__(self) -> str:
        return f"{self.key} ({self.organization_id})"


class UnmatchedStatus(models.Model):
    """A Meta status (delivered/read/failed) whose wamid no send carries yet.

    The delivery engine stores a wamid a fraction of a second after Meta's answer, and a fast
    webhook can arrive first: such statuses are kept and re-applied by the beat task for a few
    minutes, then dropped as unknown (``broadcasts.status_updates``).

    Moved here from ``events`` (state only): the table keeps its first name, ``events_unmatchedstatus``.
    """

    message_id = models.CharField(max_length=128)
    entry = models.JSONField()  # Meta's own status entry, as received
    received_at = models.DateTimeField(default=timezone.now, db_index=True)

    class Meta:
        db_table = "events_unmatchedstatus"

    def __str__(self) -> str:
        return f"{self.message_id} {self.entry.get('status') if isinstance(self.entry, dict) else ''}"


# What we know of a person per organization (holds, customer-service windows, consent, Meta's identities), in
# contact_models.py; imported here so that Django registers them with this app and callers find every model here.
# The admin overview's kept rollups (activity_models.py), registered with this app the same way.
from broadcasts.activity_models import ChannelMinute, FailureHour  # noqa: E402
from broadcasts.contact_models import (  # noqa: E402
    ContactIdentity,
    CustomerWindow,
    MarketingHold,
    Suppression,
    SuppressionSource,
    UserPreference,
)

__all__ = [
    "KEPT_COUNT_FIELDS",
    "Broadcast",
    "BroadcastStatus",
    "ChannelMinute",
    "ContactIdentity",
    "CustomerWindow",
    "FailureHour",
    "IdempotencyRecord",
    "MarketingHold",
    "RateCard",
    "RateCardPrice",
    "Send",
    "SendStatus",
    "Suppression",
    "SuppressionSource",
    "UnmatchedStatus",
    "UserPreference",
    "WaitReason",
]
